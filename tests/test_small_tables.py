"""Real tables as they come: every stage run, in order, on small generated tables with the
default params (data.source: file), and a baseline that raises left out of the comparison
while the VAE's scores, threshold, metrics and figures are complete."""
import importlib
import json
import logging

import numpy as np
import pytest
import yaml
from conftest import ROOT

from vae_anomaly.errors import UserError
from vae_anomaly.evaluation import baselines as baselines_module
from vae_anomaly.evaluation.baselines import baseline_scores

STAGES = ("prepare", "baselines", "train", "score", "threshold", "detector", "evaluate", "plot")


def table(n_normal: int, n_anomaly: int, n_features: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Normal rows near a 1-D line, anomalies off it; then a binary and a constant column."""
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=n_features)
    normal = rng.normal(size=(n_normal, 1)) * direction + 0.1 * rng.normal(size=(n_normal, n_features))
    anomalies = rng.normal(size=(n_anomaly, 1)) * direction + 3.0 * rng.normal(size=(n_anomaly, n_features))
    x = np.concatenate([normal, anomalies])
    if n_features >= 3:
        x[:, -2] = rng.integers(0, 2, len(x))  # binary
        x[:, -1] = 7.0  # constant
    return x, np.r_[np.zeros(n_normal), np.ones(n_anomaly)]


def run_stages(tmp_path, monkeypatch, x, y, **overrides) -> dict:
    """Every stage's main() in order, in ``tmp_path``, with the default params.yaml but
    data.source: file on the table (x, y), and ``overrides`` ({"section.key": value});
    returns the reports that name adaptations and failures."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"]["source"] = "file"
    params["data"]["file"]["path"] = "table.npz"
    for key, value in overrides.items():
        section, name = key.split(".")
        params[section][name] = value
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CI", "1")  # no progress bars
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    np.savez(tmp_path / "table.npz", X=x, y=y)
    # The baselines in this process: a detector broken by monkeypatch is not broken in a worker.
    monkeypatch.setattr(importlib.import_module("stages.baselines"), "JOBS", 1)
    for stage in STAGES:
        importlib.import_module(f"stages.{stage}").main()
    reports = tmp_path / "reports"
    return {name: json.loads((reports / f"{name}.json").read_text())
            for name in ("data_summary", "baselines", "train_metrics", "threshold", "metrics", "detail")}


def assert_complete(reports: dict, tmp_path) -> None:
    """The VAE's part of the run is all there: threshold, metrics, figures."""
    assert np.isfinite(reports["threshold"]["threshold"]) and reports["threshold"]["n_fit"] >= 10
    assert 0 <= reports["metrics"]["roc_auc"] <= 1 and reports["detail"]["primary"]["n_anomalies"] > 0
    for png in ("roc_pr.png", "score_histogram.png", "loss.png"):
        assert (tmp_path / "reports/figures" / png).read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "reports/figures_data/examples.png").is_file()
    assert (tmp_path / "data/detector/detector.json").is_file()


@pytest.mark.parametrize("n_normal, n_anomaly, n_features, adapted", [
    # the smallest table that runs with defaults: 39 normal rows give 20 for training and
    # validation, which are the minimum 10 + 10
    (39, 1, 5, {"data.val_fraction": (2, 10), "train.batch_size": (128, 10)}),
    (90, 10, 1, {"data.val_fraction": (4, 10), "train.batch_size": (128, 35)}),
    (180, 20, 1500, {"data.val_fraction": (9, 10), "train.batch_size": (128, 80)}),
])
def test_a_small_table_runs_end_to_end_with_default_params(tmp_path, monkeypatch, n_normal, n_anomaly, n_features, adapted):
    reports = run_stages(tmp_path, monkeypatch, *table(n_normal, n_anomaly, n_features))
    assert_complete(reports, tmp_path)
    recorded = {
        **reports["data_summary"]["adaptations"], **reports["train_metrics"]["adaptations"],
        **reports["baselines"]["adaptations"],
    }
    assert {param: (r["asked"], r["used"]) for param, r in recorded.items()} == adapted
    assert all(r["why"] for r in recorded.values())
    assert reports["baselines"]["failed"] == {}
    assert set(reports["detail"]["baselines"]) == {"iforest", "ecod", "knn", "autoencoder", "vae"}
    for name, m in reports["detail"]["baselines"].items():
        assert 0 <= m["roc_auc"] <= 1, name


def test_knn_k_is_adapted_to_the_training_rows_and_recorded(tmp_path, monkeypatch):
    reports = run_stages(tmp_path, monkeypatch, *table(39, 1, 5), **{"baselines.knn_neighbors": 10})
    assert reports["baselines"]["adaptations"]["baselines.knn_neighbors"] == {
        "asked": 10, "used": 9, "why": "only 10 training rows; k must be below that",
    }
    assert "roc_auc" in reports["detail"]["baselines"]["knn"]


class Broken:
    """A detector that fails as PyOD's deep detectors did on a small table."""

    def __init__(self, *args, **kwargs):
        pass

    def fit(self, x):
        raise UnboundLocalError("cannot access local variable 'loss'\nwhere it is not associated with a value")


def break_baseline(monkeypatch, name: str) -> None:
    real = baselines_module.build_detector
    monkeypatch.setattr(baselines_module, "build_detector",
                        lambda n, *args: Broken() if n == name else real(n, *args))


def test_a_baseline_that_raises_is_recorded_and_the_run_completes(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="vae_anomaly")
    break_baseline(monkeypatch, "autoencoder")
    reports = run_stages(tmp_path, monkeypatch, *table(90, 10, 4))
    assert_complete(reports, tmp_path)
    error = "UnboundLocalError: cannot access local variable 'loss' where it is not associated with a value"
    assert reports["baselines"]["failed"] == {"autoencoder": error}
    assert reports["detail"]["baselines"]["autoencoder"] == {"error": error}
    assert set(reports["detail"]["baselines"]) == {"iforest", "ecod", "knn", "autoencoder", "vae"}
    # one line where it failed, and the last line of evaluate names it again
    messages = [r.getMessage() for r in caplog.records]
    assert sum("baseline autoencoder failed" in m for m in messages) == 1
    evaluate_last = [r for r in caplog.records if r.module == "evaluate"][-1]
    assert evaluate_last.levelno == logging.WARNING
    assert "4 baselines scored; FAILED: autoencoder (UnboundLocalError" in evaluate_last.getMessage()


def test_on_error_stop_makes_a_failing_baseline_fatal_in_one_line(monkeypatch, params):
    break_baseline(monkeypatch, "ecod")
    x, y = table(60, 0, 4)
    p = {**params, "baselines": {**params["baselines"], "names": ["iforest", "ecod"], "on_error": "stop"}}
    with pytest.raises(UserError) as err:
        baseline_scores({"train": x, "val": x, "test": x}, p)
    assert str(err.value) == (
        "baseline ecod failed: UnboundLocalError: cannot access local variable 'loss' where it is not "
        "associated with a value (baselines.on_error: stop; set it to record to go on without it, "
        "or remove ecod from baselines.names)"
    )


def test_a_baseline_with_non_finite_scores_counts_as_failed(monkeypatch, params):
    class NaNScores(Broken):
        def fit(self, x):
            return self

        def decision_function(self, x):
            return np.full(len(x), np.nan)

    real = baselines_module.build_detector
    monkeypatch.setattr(baselines_module, "build_detector",
                        lambda n, *args: NaNScores() if n == "ecod" else real(n, *args))
    x, _ = table(60, 0, 4)
    p = {**params, "baselines": {**params["baselines"], "names": ["iforest", "ecod"]}}
    scores, record, _ = baseline_scores({"train": x, "val": x, "test": x[:7]}, p)
    assert list(scores) == ["iforest"]
    assert record["failed"] == {"ecod": "ValueError: 7 of its 7 test scores are NaN or infinite"}


def test_deep_baselines_train_on_fewer_rows_than_one_batch(params):
    """The failure of the issue: PyOD drops the incomplete last batch, so 66 rows in batches
    of 128 never trained (UnboundLocalError). Capped at the rows, they train."""
    x, _ = table(66, 0, 6)
    p = {**params, "baselines": {**params["baselines"], "names": ["autoencoder", "vae"]},
         "train": {**params["train"], "epochs": 2}}
    scores, record, _ = baseline_scores({"train": x, "val": x, "test": x}, p)
    assert record["failed"] == {} and set(scores) == {"autoencoder", "vae"}
    assert record["adaptations"]["train.batch_size"]["used"] == 66


def test_review_names_failed_baselines(tmp_path):
    from scripts.review import failed_baselines

    detail = tmp_path / "detail.json"
    assert failed_baselines(detail) == ""  # no run yet
    detail.write_text(json.dumps({"baselines": {"ecod": {"roc_auc": 0.7, "pr_auc": 0.5}}}))
    assert failed_baselines(detail) == ""
    detail.write_text(json.dumps({"baselines": {
        "ecod": {"roc_auc": 0.7, "pr_auc": 0.5}, "vae": {"error": "ValueError: bad"},
    }}))
    assert failed_baselines(detail) == "`vae` (ValueError: bad)"


def test_a_table_without_anomalies_runs_through_with_no_curves(tmp_path, monkeypatch):
    """A test set of one class has no ROC or PR curve: evaluate writes the curve tables empty
    and the plot stage draws every other figure."""
    reports = run_stages(tmp_path, monkeypatch, *table(90, 0, 4))
    assert reports["metrics"]["roc_auc"] is None
    assert (tmp_path / "reports/curves/roc.csv").read_text() == "fpr,tpr\n"
    assert (tmp_path / "reports/curves/pr.csv").read_text() == "recall,precision\n"
    figures = {p.name for p in (tmp_path / "reports/figures").iterdir()}
    assert "roc_pr.png" not in figures and {"loss.png", "score_histogram.png"} <= figures
