"""pyproject.toml: the package's declared dependencies are the pinned, tested set of
requirements.txt (as floors), and the command line answers without a model."""
import subprocess
import sys
import tomllib

from packaging.requirements import Requirement

from conftest import ROOT

NOT_IMPORTED_BY_THE_PACKAGE = {"dvc", "dvclive", "tabulate", "ray", "pytest", "hypothesis"}  # the pipeline's and the tests' extras


def pinned() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            requirement = Requirement(line)
            pins[requirement.name.lower()] = str(requirement.specifier).removeprefix("==")
    return pins


def test_every_pinned_requirement_is_declared_with_its_pin_as_the_floor():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = [Requirement(r) for r in project["dependencies"]]
    declared += [Requirement(r) for extra in project["optional-dependencies"].values() for r in extra]
    floors = {r.name.lower(): str(r.specifier).removeprefix(">=") for r in declared}
    assert floors == pinned()
    assert {r.name.lower() for r in map(Requirement, project["dependencies"])}.isdisjoint(NOT_IMPORTED_BY_THE_PACKAGE)


def test_the_command_line_lists_predict():
    done = subprocess.run([sys.executable, "-m", "vae_anomaly", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0 and "predict" in done.stdout
