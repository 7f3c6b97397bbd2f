"""End to end: the real `dvc repro` on a copy of the project with shrunken params; dvc.yaml's
dependencies against the code each stage imports."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import dvc.api as dvc_api
import numpy as np
import pytest
import torch
import yaml
from conftest import ROOT
from support import imported_modules, module_file

from benchmarks.project import project_copy, tool_env
from vae_anomaly.data.columns import read_encoding
from vae_anomaly.params import load_params


def shrink() -> dict:
    """The default experiment, smaller, as dotted-key updates of params.yaml: 2,000 training
    rows and 20 epochs, enough for the VAE to detect (ROC-AUC about 0.75 against 0.78 at full
    size) in a few seconds."""
    return {
        "data.synthetic.n_train": 2000, "data.synthetic.n_val": 200, "data.synthetic.n_test": 400,
        "model.hidden_dims": [32, 16], "model.latent_dim": 4,
        "train.epochs": 20, "train.lr": 0.003, "train.kl_warmup_epochs": 3, "train.device": "cpu",
        "score.elbo_samples": 2,
    }


def run(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """Run with this interpreter's folder first on PATH (benchmarks.project.tool_env), so
    `python` in dvc.yaml is ours; asserts on failure when ``check``."""
    done = subprocess.run(cmd, cwd=cwd, env=tool_env(), capture_output=True, text=True)
    if check:
        assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}"
    return done


def dvc(*args: str, cwd: Path) -> str:
    done = run([sys.executable, "-m", "dvc", *args], cwd)
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return make_project(tmp_path_factory.mktemp("project"))


def make_project(root: Path, extra: tuple[str, ...] = ()) -> Path:
    """A git + DVC repository in ``root`` holding a copy of the project (PROJECT_FILES and
    ``extra``), params shrunk, one commit: benchmarks.project.project_copy, as the benchmarks
    make theirs."""
    return project_copy(root, shrink(), extra)


def test_repro_detects_and_is_then_up_to_date(project):
    log = dvc("repro", cwd=project)
    for stage in ("prepare", "baselines", "train", "score", "threshold", "detector", "evaluate", "plot"):
        assert f"Running stage '{stage}'" in log
    metrics = json.loads((project / "reports/metrics.json").read_text())
    assert list(metrics) == ["roc_auc", "pr_auc", "f1", "n_flagged", "threshold"]
    detail = json.loads((project / "reports/detail.json").read_text())
    # It detects: the primary score (joint_knn), latent_residual_knn, the negative ELBO and the
    # reconstruction error rank the test set's 15 % anomalies well above chance (0.5), and
    # the threshold flags some rows.
    assert set(detail["scores"]) == {"joint_knn", "latent_residual_knn", "negative_elbo", "reconstruction_mse"}
    assert metrics["roc_auc"] == detail["scores"]["joint_knn"]["roc_auc"] > 0.65 and metrics["pr_auc"] > 0.3
    assert detail["scores"]["latent_residual_knn"]["roc_auc"] > 0.65
    assert detail["scores"]["negative_elbo"]["roc_auc"] > 0.65
    assert detail["scores"]["reconstruction_mse"]["roc_auc"] > 0.75
    assert 0 < metrics["n_flagged"] < detail["primary"]["n"] == 400 and detail["primary"]["precision"] > 0.3
    assert set(detail["baselines"]) == {"iforest", "ecod", "knn", "autoencoder", "vae"}
    assert detail["reconstruction"]["mse_normal"] > 0 and detail["reconstruction"]["n_normal"] == 340
    assert detail["latent"]["latent_dim"] == 4 and detail["latent"]["w2_normal_anomaly"] > 0
    per_type = json.loads((project / "reports/per_type.json").read_text())
    assert set(per_type) == {"mean_shift", "correlation_break", "variance_explosion"}
    train = json.loads((project / "reports/train_metrics.json").read_text())
    assert (train["device"], train["torch"]) == ("cpu", torch.__version__)
    for png in ("roc_pr.png", "score_histogram.png", "score_histogram_negative_elbo.png", "loss.png"):
        assert (project / "reports/figures" / png).stat().st_size > 0
    assert (project / "reports/curves/roc.csv").read_text().startswith("fpr,tpr\n")
    # DVCLive's log of training: a row per epoch, the latest epoch as a metric.
    latest = json.loads((project / "reports/train/metrics.json").read_text())
    assert latest["step"] == train["epochs_run"] and latest["val"]["loss"] > 0
    val_loss = (project / "reports/train/plots/metrics/val/loss.tsv").read_text().splitlines()
    assert val_loss[0] == "step\tloss" and len(val_loss) == 1 + train["epochs_run"]  # no timestamp column

    again = dvc("repro", cwd=project)
    assert "Running stage" not in again


def test_exp_show_leads_with_the_headline(project):
    (row, *_) = dvc_api.exp_show(repo=str(project))
    metrics = [k for k in row if k not in ("Experiment", "rev", "typ", "Created", "parent", "State", "Executor")]
    assert metrics[:5] == ["roc_auc", "pr_auc", "f1", "n_flagged", "threshold"]
    assert [k for k in row if k.endswith("threshold")] == ["threshold"]  # one, not one per file
    assert not any(k in row for k in ("n_features", "test.n", "mean_shift.roc_auc", "per_type.mean_shift.roc_auc",
                                      "scores.negative_elbo.roc_auc", "baselines.ecod.roc_auc"))
    # What a 120-column terminal shows of the table (`less -S`, DVC's pager, cuts the rest).
    header = next(line for line in dvc("exp", "show", cwd=project).splitlines() if "Experiment" in line)
    assert "roc_auc" in header[:120] and "n_flagged" in header[:120]


def test_exp_show_without_a_pager_in_a_120_column_terminal_shows_roc_auc(project):
    """`COLUMNS=120 dvc exp show --no-pager` with an experiment beside the workspace shows the
    ROC-AUC, name and values. DVC hides columns from the right to fit, yet each hidden one
    still costs about a character: with a few metrics, params or dependencies more (three,
    at this writing) even the first metric shows as "…"."""
    dvc("repro", cwd=project)
    name = "jumpy-aune"  # as long as every name DVC makes up (adjective-noun, 5 + 1 + 4)
    dvc("exp", "save", "-n", name, cwd=project)
    try:
        shown = subprocess.run([sys.executable, "-m", "dvc", "exp", "show", "--no-pager"], cwd=project,
                               env={**tool_env(), "COLUMNS": "120"}, capture_output=True, text=True).stdout
        columns = dvc("exp", "show", "--csv", cwd=project).splitlines()[0].count(",") + 1
    finally:
        dvc("exp", "remove", name, cwd=project)
    roc_auc = json.loads((project / "reports/metrics.json").read_text())["roc_auc"]
    lines = shown.splitlines()
    header = next(line for line in lines if "Experiment" in line)
    row = next(line for line in lines if f"[{name}]" in line)
    assert "roc_auc" in header.split() and f"{roc_auc:.5g}" in row.split(), (columns, shown)


def test_identical_runs_write_identical_files_and_checkout_restores_them(project):
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "run"], project)
    model = (project / "data/model.pt").read_bytes()
    dvc("repro", "--force", cwd=project)
    # Every stage ran again: dvc.lock (the hash of each output, model and figures included)
    # and the committed reports are byte for byte what the first run wrote.
    assert run(["git", "status", "--porcelain"], project).stdout == ""
    (project / "data/model.pt").unlink()
    shutil.rmtree(project / "reports/figures")
    dvc("checkout", cwd=project)
    assert (project / "data/model.pt").read_bytes() == model
    assert (project / "reports/figures/roc_pr.png").is_file()
    assert "up to date" in dvc("status", cwd=project)


RUN_STAGES = """
import runpy, sys
for stage in sys.argv[1:]:
    sys.argv = [stage]
    runpy.run_module(f"stages.{stage}", run_name="__main__")
"""


def test_labels_reach_only_evaluate_and_plot(project):
    labels = project / "data/prepared/labels.npz"
    saved = labels.read_bytes()
    try:
        # DVC's view: with the labels changed, which stages would re-run for it.
        with np.load(labels) as npz:
            changed = {k: npz[k] for k in npz.files}
        changed["test_label"] = 1 - changed["test_label"]
        labels.unlink()
        np.savez(labels, **changed)
        status = json.loads(dvc("status", "--json", cwd=project).strip().splitlines()[-1])
        readers = {stage for stage, changes in status.items()
                   if any(str(labels.relative_to(project)) in c.get("changed deps", {}) for c in changes)}
        assert readers == {"evaluate", "plot"}
        # The stages before evaluate run with no labels at all (in one process: one import of torch).
        labels.unlink()
        run([sys.executable, "-c", RUN_STAGES, "baselines", "train", "score", "threshold"], project)
    finally:
        labels.write_bytes(saved)
    assert "up to date" in dvc("status", cwd=project)  # and they wrote what they wrote before


def test_plot_of_a_table_imports_neither_scikit_learn_nor_scipy_nor_torch(project):
    """Their imports would cost the plot stage more than its drawing: the evaluate stage
    computes the ROC and PR curves, matplotlib's GaussianKDE the densities, and tables have
    no images for the model to draw."""
    dvc("repro", cwd=project)  # up to date when the tests above ran first
    imported = "print(sorted(m for m in ('sklearn', 'scipy', 'torch') if m in sys.modules))"
    done = run([sys.executable, "-c", RUN_STAGES + imported, "plot"], project)
    assert done.stdout.splitlines()[-1] == "[]"
    assert (project / "reports/figures/roc_pr.png").is_file()


def original_units(project: Path, x: np.ndarray) -> np.ndarray:
    """Prepared (standardised) rows back in the units of the table they came from."""
    columns = read_encoding(project / "data/prepared/features.npz").columns
    mean, std = (np.array([getattr(c, key) for c in columns]) for key in ("mean", "std"))
    return x.astype(np.float64) * std + mean


def test_predict_on_the_test_rows_gives_the_score_stages_scores(project):
    """A user's view: after `dvc repro`, the test split's rows in their original units, as a
    .csv, scored by `python -m vae_anomaly predict` with data/detector."""
    dvc("repro", cwd=project)  # up to date when the test above ran first
    with np.load(project / "data/prepared/features.npz") as features:
        rows = original_units(project, features["test"])
    with np.load(project / "data/scores/test.npz") as scores:
        expected = dict(scores)
    header = ",".join(f"x{j}" for j in range(rows.shape[1]))
    np.savetxt(project / "new.csv", rows, delimiter=",", header=header, comments="", fmt="%.17g")
    run([sys.executable, "-m", "vae_anomaly", "predict", "--detector", "data/detector",
         "--input", "new.csv", "--output", "new_scores.csv"], project)
    got = np.genfromtxt(project / "new_scores.csv", delimiter=",", names=True)
    score = load_params(project / "params.yaml")["score"]  # "auto" resolved, as the stages see it
    assert got.dtype.names == (*score["names"], "anomaly")
    for name, values in expected.items():
        np.testing.assert_allclose(got[name], values, rtol=1e-5)
    threshold = json.loads((project / "reports/threshold.json").read_text())["threshold"]
    np.testing.assert_array_equal(got["anomaly"], expected[score["primary"]] > threshold)


def test_a_registered_detector_is_fetched_by_name_and_loads(project, tmp_path):
    """dvc.yaml's artifact: a version tagged as `gto register` tags it, fetched as DVC's model
    registry fetches it (`dvc artifacts get`), and scored with."""
    from vae_anomaly import Detector

    dvc("repro", cwd=project)
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "run", "--allow-empty"], project)
    run(["git", "tag", "-a", "detector@v0.1.0", "-m", "Registering artifact detector version v0.1.0"], project)
    dvc("artifacts", "get", ".", "detector", "-o", str(tmp_path / "detector"), cwd=project)
    detector = Detector.load(tmp_path / "detector", "cpu")
    with np.load(project / "data/prepared/features.npz") as features:
        rows = original_units(project, features["test"][:50])
    with np.load(project / "data/scores/test.npz") as scores:
        np.testing.assert_allclose(detector.decision_function(rows), scores[detector.primary][:50], rtol=1e-5)


def test_bad_param_stops_the_stage_with_a_clear_message(project):
    params_path = project / "params.yaml"
    good = params_path.read_text()
    params = yaml.safe_load(good)
    params["model"]["beta"] = -1
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        done = run([sys.executable, "-m", "stages.train"], project, check=False)
    finally:
        params_path.write_text(good)
    assert done.returncode == 2
    assert "model.beta = -1 is not allowed; expected a number >= 0" in done.stderr
    assert "Traceback" not in done.stderr


def import_closure(module: str, root: Path = ROOT) -> set[Path]:
    """The project's files that running ``python -m module`` imports, directly or not."""
    todo, seen = [module, *(".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1))], set()
    while todo:
        path = module_file(todo.pop(), root)
        if path is not None and path not in seen:
            seen.add(path)
            todo.extend(imported_modules(path, root))
    return seen


def stage_closures(root: Path = ROOT) -> dict[str, set[str]]:
    """Each stage of dvc.yaml: the project files its command imports, relative to ``root``."""
    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    closures = {}
    for name, stage in stages.items():
        assert stage["cmd"].startswith("python -m stages."), stage["cmd"]
        module = stage["cmd"].split()[2]
        closures[name] = {p.relative_to(root).as_posix() for p in import_closure(module, root)}
    return closures


def covered(path: str, deps: list) -> bool:
    """Whether a dependency of dvc.yaml is ``path`` or a folder holding it."""
    return any(path == dep or path.startswith(dep.rstrip("/") + "/") for dep in deps if isinstance(dep, str))


def test_every_module_a_stage_imports_is_one_of_its_dependencies():
    closures = stage_closures()
    # the derivation sees what the issue found missed: score runs training.py through
    # pipeline.py, every stage imports schedules.py through params.py
    assert {"vae_anomaly/pipeline.py", "vae_anomaly/model/training.py", "vae_anomaly/data/sizing.py"} <= closures["score"]
    assert all({"stages/__init__.py", "vae_anomaly/model/schedules.py"} <= c for c in closures.values())
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    missing = {name: sorted(p for p in closure if not covered(p, stages[name]["deps"]))
               for name, closure in closures.items()}
    assert not any(missing.values()), f"dvc.yaml misses modules its stages import: {missing}"


def test_editing_a_module_a_stage_imports_makes_dvc_status_report_the_stage(project):
    """The promise of dvc.yaml's code dependencies, kept for real: schedules.py, which every
    stage imports only through params.py, and a stage's own script."""
    dvc("repro", cwd=project)
    closures = stage_closures(project)
    for module in ("vae_anomaly/model/schedules.py", "stages/threshold.py"):
        path = project / module
        source = path.read_text()
        path.write_text(source + "\n# edited\n")
        try:
            status = json.loads(dvc("status", "--json", cwd=project).strip().splitlines()[-1])
        finally:
            path.write_text(source)
        importers = {stage for stage, closure in closures.items() if module in closure}
        assert importers and importers <= set(status), (module, sorted(status))
    assert "up to date" in dvc("status", cwd=project)
