"""The package's shape, as docs/architecture.md draws it: at most 8 modules at the top, the
concerns in subpackages that each say in a line what lives there, no import circle, no layer
that imports one above it, and the modules that need no torch importing none."""
import pkgutil
import subprocess
import sys

import vae_anomaly

from conftest import ROOT
from support import imported_modules

PACKAGE = ROOT / "vae_anomaly"
# The layers, lowest first: a module may import its own unit (its subpackage, or itself) and
# the units of lower layers, never a higher one. data and model share a layer and know
# nothing of each other.
LAYERS = [
    {"errors"},
    {"io", "cli"},
    {"parallel"},
    {"data", "model"},
    {"scoring"},
    {"evaluation"},
    {"params"},
    {"pipeline"},
    {"detector"},
    {"studies"},
    {"__init__", "__main__"},
]
RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}
# Imported by the stages that draw, threshold, evaluate and package without a model: no torch.
TORCH_FREE = (
    "errors", "io", "cli", "parallel", "params", "data.splits", "data.sources", "data.synthetic", "data.images",
    "data.tables", "data.sizing", "data.figures", "model.schedules", "scoring.registry", "scoring.combination",
    "scoring.thresholds", "scoring.complexity", "scoring.latent", "evaluation.metrics", "evaluation.plots",
    "evaluation.baselines", "evaluation.pixel", "data.folders", "detector.folder",
)


def modules() -> dict[str, set[str]]:
    """Each module of the package (dotted, below vae_anomaly) and the package modules it imports
    anywhere in it (in functions and for type checking too); a package's __init__ is not an
    edge, since importing any module of a package loads it."""
    files = {p.relative_to(ROOT).with_suffix("").as_posix().replace("/", "."): p for p in PACKAGE.rglob("*.py")}
    own = {name.removesuffix(".__init__") for name in files}
    graph = {}
    for name, path in files.items():
        short = name.removeprefix("vae_anomaly.")
        targets = {t for t in imported_modules(path) if t in own and t in files and t != name}
        graph[short] = {t.removeprefix("vae_anomaly.") for t in targets}
    return graph


def unit(module: str) -> str:
    return module.split(".")[0]


def test_the_top_holds_at_most_8_modules_and_the_concerns_are_subpackages_that_say_what_they_hold():
    top = [m for m in pkgutil.iter_modules(vae_anomaly.__path__) if not m.ispkg]
    packages = [m.name for m in pkgutil.iter_modules(vae_anomaly.__path__) if m.ispkg]
    assert len(top) <= 8, [m.name for m in top]
    assert len(packages) >= 4
    for name in packages:
        init = (PACKAGE / name / "__init__.py").read_text().strip()
        assert init.startswith('"""') and init.endswith('"""') and init.count("\n") == 0, f"{name}/__init__.py"
    assert set(packages) | {m.name for m in top} == set(RANK) - {"__init__"}, "a unit without a layer"


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{source} imports {target}" for source, targets in graph.items() for target in targets
                  if unit(source) != unit(target) and RANK[unit(target)] >= RANK[unit(source)])


def test_no_layer_imports_a_higher_one():
    assert not upward_imports(modules())


def test_the_import_graph_has_no_circle():
    graph = modules()
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                raise AssertionError("import circle: " + " -> ".join([*path[path.index(target):], target]))
            if target not in state:
                visit(target, [*path, target])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


def test_the_modules_that_need_no_model_import_no_torch():
    code = ("import sys\n" + "".join(f"import vae_anomaly.{m}\n" for m in TORCH_FREE)
            + "print(','.join(m for m in ('torch', 'pyod') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == ""


def test_the_layer_rule_sees_an_upward_import_and_a_sibling_import():
    """The check can fail: data importing the Detector, or model importing data."""
    graph = {"data.splits": {"detector.detector", "data.sizing"}, "model.vae": {"data.splits"}}
    assert upward_imports(graph) == ["data.splits imports detector.detector", "model.vae imports data.splits"]
