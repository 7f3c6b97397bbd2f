"""End to end: the real `dvc repro` on a copy of the project with shrunken params."""
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

from benchmarks.project import project_copy, tool_env


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
    assert list(metrics)[:5] == ["roc_auc", "pr_auc", "f1", "n_flagged", "threshold"]
    # It detects: the primary score (latent_residual_knn), the negative ELBO and the
    # reconstruction error rank the test set's 15 % anomalies well above chance (0.5), and
    # the threshold flags some rows.
    assert set(metrics["scores"]) == {"latent_residual_knn", "negative_elbo", "reconstruction_mse"}
    assert metrics["roc_auc"] > 0.65 and metrics["pr_auc"] > 0.3
    assert metrics["scores"]["negative_elbo"]["roc_auc"] > 0.65
    assert metrics["scores"]["reconstruction_mse"]["roc_auc"] > 0.75
    assert 0 < metrics["n_flagged"] < metrics["n"] == 400 and metrics["precision"] > 0.3
    assert set(metrics["baselines"]) == {"iforest", "ecod", "knn", "autoencoder", "vae"}
    assert metrics["reconstruction"]["mse_normal"] > 0 and metrics["reconstruction"]["n_normal"] == 340
    assert metrics["latent"]["latent_dim"] == 4 and metrics["latent"]["w2_normal_anomaly"] > 0
    per_type = json.loads((project / "reports/per_type.json").read_text())
    assert set(per_type) == {"mean_shift", "correlation_break", "variance_explosion"}
    train = json.loads((project / "reports/train_metrics.json").read_text())
    assert (train["device"], train["torch"]) == ("cpu", torch.__version__)
    for png in ("roc_pr.png", "score_histogram.png", "loss.png"):
        assert (project / "reports/figures" / png).stat().st_size > 0
    assert (project / "reports/curves/roc.csv").read_text().startswith("fpr,tpr\n")

    again = dvc("repro", cwd=project)
    assert "Running stage" not in again


def test_exp_show_leads_with_the_headline(project):
    (row, *_) = dvc_api.exp_show(repo=str(project))
    metrics = [k for k in row if k not in ("Experiment", "rev", "typ", "Created", "parent", "State", "Executor")]
    assert metrics[:5] == ["roc_auc", "pr_auc", "f1", "n_flagged", "threshold"]
    assert [k for k in row if k.endswith("threshold")] == ["threshold"]  # one, not one per file
    assert not any(k in row for k in ("n_features", "test.n", "mean_shift.roc_auc", "per_type.mean_shift.roc_auc"))
    # What a 120-column terminal shows of the table (`less -S`, DVC's pager, cuts the rest).
    header = next(line for line in dvc("exp", "show", cwd=project).splitlines() if "Experiment" in line)
    assert "roc_auc" in header[:120] and "n_flagged" in header[:120]


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


def test_predict_on_the_test_rows_gives_the_score_stages_scores(project):
    """A user's view: after `dvc repro`, the test split's rows in their original units, as a
    .csv, scored by `python -m vae_anomaly predict` with data/detector."""
    dvc("repro", cwd=project)  # up to date when the test above ran first
    with np.load(project / "data/prepared/features.npz") as features, \
            np.load(project / "data/prepared/scaling.npz") as scaling:
        rows = features["test"].astype(np.float64) * scaling["std"] + scaling["mean"]
    with np.load(project / "data/scores/test.npz") as scores:
        expected = dict(scores)
    header = ",".join(f"x{j}" for j in range(rows.shape[1]))
    np.savetxt(project / "new.csv", rows, delimiter=",", header=header, comments="", fmt="%.17g")
    run([sys.executable, "-m", "vae_anomaly", "predict", "--detector", "data/detector",
         "--input", "new.csv", "--output", "new_scores.csv"], project)
    got = np.genfromtxt(project / "new_scores.csv", delimiter=",", names=True)
    score = yaml.safe_load((project / "params.yaml").read_text())["score"]
    assert got.dtype.names == (*score["names"], "anomaly")
    for name, values in expected.items():
        np.testing.assert_allclose(got[name], values, rtol=1e-5)
    threshold = json.loads((project / "reports/threshold.json").read_text())["threshold"]
    np.testing.assert_array_equal(got["anomaly"], expected[score["primary"]] > threshold)


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
