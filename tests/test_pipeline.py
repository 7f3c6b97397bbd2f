"""End to end: the real `dvc repro` on a copy of the project with shrunken params."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import ROOT

PROJECT_FILES = ["dvc.yaml", "params.yaml", "stages", "vae_anomaly"]


def shrink(params: dict) -> dict:
    syn = params["data"]["synthetic"]
    syn.update(n_train=300, n_val=100, n_test=200)
    params["model"]["hidden_dims"] = [16, 8]
    params["model"]["latent_dim"] = 2
    params["train"].update(epochs=3, kl_warmup_epochs=1, device="cpu")
    params["score"]["elbo_samples"] = 2
    return params


def run(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """Run with this interpreter's folder first on PATH, so `python` in dvc.yaml is ours."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
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
    ``extra``), params shrunk, one commit."""
    for name in (*PROJECT_FILES, *extra):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, root / name)
    params = shrink(yaml.safe_load((root / "params.yaml").read_text()))
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], root)
    run(["git", "config", "user.email", "test@example.com"], root)
    run(["git", "config", "user.name", "test"], root)
    dvc("init", "-q", cwd=root)
    dvc("config", "core.analytics", "false", cwd=root)
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "project"], root)
    return root


def test_repro_writes_metrics_and_is_then_up_to_date(project):
    log = dvc("repro", cwd=project)
    for stage in ("prepare", "train", "score", "threshold", "detector", "evaluate", "plot"):
        assert f"Running stage '{stage}'" in log
    metrics = json.loads((project / "reports/metrics.json").read_text())
    for key in ("roc_auc", "pr_auc", "precision", "recall", "f1", "n_flagged", "threshold"):
        assert key in metrics
    assert set(metrics["per_type"]) == {"mean_shift", "correlation_break", "variance_explosion"}
    assert set(metrics["scores"]) == {"latent_residual_knn", "negative_elbo", "reconstruction_mse"}
    assert metrics["reconstruction"]["mse_normal"] > 0 and metrics["reconstruction"]["n_normal"] > 0
    assert metrics["latent"]["latent_dim"] == 2 and metrics["latent"]["w2_normal_anomaly"] > 0
    assert 0 <= metrics["latent"]["active_dims"] <= 2
    for png in ("roc_pr.png", "score_histogram.png", "loss.png"):
        assert (project / "reports/figures" / png).stat().st_size > 0
    assert (project / "reports/curves/roc.csv").read_text().startswith("fpr,tpr\n")

    again = dvc("repro", cwd=project)
    assert "Running stage" not in again

    first = (project / "reports/metrics.json").read_text()
    dvc("repro", "--force", cwd=project)
    assert (project / "reports/metrics.json").read_text() == first  # same seed, same metrics


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
    assert got.dtype.names == ("negative_elbo", "reconstruction_mse", "anomaly")
    for name, values in expected.items():
        np.testing.assert_allclose(got[name], values, rtol=1e-5)
    threshold = json.loads((project / "reports/threshold.json").read_text())["threshold"]
    np.testing.assert_array_equal(got["anomaly"], expected["negative_elbo"] > threshold)


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
