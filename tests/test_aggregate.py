"""scripts/aggregate.py on small fabricated `dvc.api.exp_show()` rows (DVC 3.x)."""
import json

import pytest

from scripts.aggregate import aggregate, collect_runs, main
from vae_anomaly.io import UserError


def row(name, kind, beta, latent, seed, roc_auc=None, mse=None, w2=None, state="Success",
        schedule="constant", source="mnist"):
    """One row as dvc.api.exp_show() gives it: flat columns, numbers as floats, lists and
    missing values as text, "file:key" where two files share a key."""
    r = {"Experiment": name, "rev": name[:7], "typ": "branch_commit", "State": state,
         "model.kind": kind, "model.beta": float(beta), "model.latent_dim": float(latent),
         "model.hidden_dims": "[8]", "train.seed": float(seed), "train.kl_schedule": schedule,
         "data.source": source, "data.classes": "[0, 9]", "data/model.pt": "b5e04c93012b34034e930f119fb533cc",
         "reports/threshold.json:threshold": 3.0, "reports/metrics.json:threshold": 2.0}
    if roc_auc is None:  # not run yet, or failed
        return {**r, "roc_auc": "None", "reconstruction.mse_normal": "None"}
    return {**r, "roc_auc": roc_auc, "pr_auc": roc_auc / 2, "scores.negative_elbo.roc_auc": roc_auc,
            "scores.reconstruction_mse.roc_auc": 1 - roc_auc, "per_type.0 - zero.roc_auc": roc_auc,
            "latent.w2_normal_anomaly": w2, "latent.active_dims": float(latent),
            "reconstruction.mse_normal": mse, "reconstruction.ssim_normal": "None", "epochs_run": 30.0}


@pytest.fixture
def rows():
    return [
        {**row("b1-s0", "vae", 1, 2, 0, 0.6, 0.10, 1.0), "Experiment": None, "rev": "workspace", "typ": "baseline", "State": None},
        row("main", "vae", 1, 2, 0, state=None) | {"Experiment": None, "typ": "baseline"},  # committed, no metrics
        row("study-b1-s0", "vae", 1, 2, 0, 0.6, 0.10, 1.0),
        row("study-b1-s1", "vae", 1, 2, 1, 0.8, 0.30, 2.0),
        row("study-b10-s0", "vae", 10, 2, 0, 0.9, 1.0, 3.0),
        row("study-b10-s1", "vae", 10, 2, 1, 0.9, 1.0, 3.0),
        row("study-sparse-s0", "sparse", 1, 2, 0, 0.75, 0.2, 0.5),
        row("study-ae-s0", "ae", 1, 2, 0, 0.5, 0.05, 0.4),
        row("study-queued", "vae", 100, 2, 0, state="Queued"),
        # a running experiment shows the committed metrics of its workspace, not its own
        row("study-running", "vae", 100, 2, 1, 0.783, 0.04, 1.0, state="Running"),
        row("study-broken", "vae", 100, 2, 2, state="Failed"),
        row("other-b1-s0", "vae", 1, 2, 0, 0.99, 0.5, 9.0, source="fashion_mnist"),
    ]


def test_collect_runs_keeps_one_study_and_finished_runs_once(rows):
    runs, skipped = collect_runs(rows, prefix="study-")
    assert sorted(r.name for r in runs) == ["study-ae-s0", "study-b1-s0", "study-b1-s1", "study-b10-s0",
                                            "study-b10-s1", "study-sparse-s0"]
    assert skipped == {"another name": 3, "queued": 1, "running": 1, "failed": 1}
    run = next(r for r in runs if r.name == "study-b1-s0")
    assert run.params["model.beta"] == 1.0 and run.metrics["latent.w2_normal_anomaly"] == 1.0
    assert run.metrics["per_type.0 - zero.roc_auc"] == 0.6
    assert run.params["data.source"] == "mnist" and run.params["threshold.k"] is None  # not in the row


def test_collect_runs_by_params_and_without_a_filter(rows):
    runs, skipped = collect_runs(rows, where={"data.source": "fashion_mnist"})
    assert [r.name for r in runs] == ["other-b1-s0"]
    runs, _ = collect_runs(rows, where={"model.beta": "10", "data.classes": "[0,9]"})
    assert sorted(r.name for r in runs) == ["study-b10-s0", "study-b10-s1"]
    runs, _ = collect_runs(rows)  # the workspace equals study-b1-s0: counted once, by that name
    assert sum(r.name == "study-b1-s0" for r in runs) == 1 and "workspace" not in {r.name for r in runs}


def test_aggregate_writes_table_notes_and_figures(rows, tmp_path):
    text = aggregate(rows, tmp_path, "roc_auc", prefix="study-")
    lines = [" ".join(line.split()) for line in text.splitlines()]  # tabulate pads the cells
    assert lines[0] == ("| variant | beta | latent | seeds | roc_auc | ROC-AUC, recon. error | roc_auc, 0 - zero "
                        "| PR-AUC | MSE normal | latent W2 | active dims | epochs |")  # no SSIM: no run has it
    assert lines[2] == "| AE (β → 0) | – | 2 | 1 | 0.5 | 0.5 | 0.5 | 0.25 | 0.05 | 0.4 | 2 | 30 |"
    assert lines[3] == "| Sparse VAE | 1 | 2 | 1 | 0.75 | 0.25 | 0.75 | 0.375 | 0.2 | 0.5 | 2 | 30 |"
    assert lines[4] == ("| β-VAE | 1 | 2 | 2 | 0.7 ± 0.14 | 0.3 ± 0.14 | 0.7 ± 0.14 | 0.35 ± 0.071 | 0.2 ± 0.14 "
                        "| 1.5 ± 0.71 | 2 ± 0 | 30 ± 0 |")
    assert lines[5].startswith("| β-VAE | 10 | 2 | 2 | 0.9 ± 0 |")
    # b1's seeds: the one with the larger W2 detects better; b10's are equal
    assert "- within configurations (each run's deviation from its configuration's mean over seeds, pooled): " \
           "ρ = 1.00 (p = 0, 4 runs)" in text
    assert "- across configurations (every run; W2 is in each model's own latent units): ρ = 0.94 (p = 0.0051, 6 runs)" in text
    assert ("- latent size 2: best roc_auc at β = 10 (0.900); best reconstruction at β = 1 (MSE 0.2)") in text
    assert (tmp_path / "table.md").read_text() == text
    for png in ("tradeoff.png", "seed_variability.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_save_and_read_back_give_the_same_table(rows, tmp_path, capsys):
    saved = tmp_path / "runs.json"
    text = aggregate(rows, tmp_path / "a", "scores.reconstruction_mse.roc_auc", prefix="study-", save=saved)
    assert len(json.loads(saved.read_text())) == 6
    main(["--input", str(saved), "--out", str(tmp_path / "b"), "--detection", "scores.reconstruction_mse.roc_auc"])
    assert capsys.readouterr().out == text
    assert "best scores.reconstruction_mse.roc_auc at β = 1 (0.300)" in text


def test_nothing_to_aggregate_says_why(rows, tmp_path):
    with pytest.raises(UserError, match="no finished experiment .* matches --prefix nope-.*dvc exp run --queue"):
        aggregate(rows, tmp_path, "roc_auc", prefix="nope-")
    with pytest.raises(UserError, match="--detection 'f1': no run has it"):
        aggregate(rows, tmp_path, "f1", prefix="study-")
    with pytest.raises(UserError, match="not found"):
        main(["--input", str(tmp_path / "missing.json")])
    with pytest.raises(UserError, match="--where 'model.bta=1': expected KEY=VALUE with a params key"):
        main(["--where", "model.bta=1"])
    assert not (tmp_path / "table.md").exists()


def test_with_detail_reads_reports_detail_json_at_each_finished_runs_revision(monkeypatch):
    """DVC's exp_show() has only dvc.yaml's metrics; the per-score and model detail the study
    reads comes from reports/detail.json at each run's revision (the workspace's from disk)."""
    import dvc.api

    from scripts.aggregate import with_detail

    def metrics_show(path, rev=None):
        assert path == "reports/detail.json"
        if rev == "old":
            raise FileNotFoundError(path)  # a commit from before the file
        return {"scores": {"negative_elbo": {"roc_auc": 0.7}}, "reconstruction": {"mse_normal": 0.1 if rev else 0.2}}

    monkeypatch.setattr(dvc.api, "metrics_show", metrics_show)
    rows = with_detail([{"rev": "workspace"}, {"rev": "abc1234"}, {"rev": "old"}, {"rev": "q", "State": "Queued"}])
    assert rows[0]["reports/detail.json:reconstruction.mse_normal"] == 0.2
    assert rows[1]["reports/detail.json:scores.negative_elbo.roc_auc"] == 0.7
    assert rows[2:] == [{"rev": "old"}, {"rev": "q", "State": "Queued"}]
    detail = {"reconstruction.mse_normal": 0.3, "scores.iwae.roc_auc": 0.9}
    runs, _ = collect_runs([{**row("s-b1", "vae", 1, 2, 0, 0.6, 0.1, 1.0),
                             **{f"reports/detail.json:{k}": v for k, v in detail.items()}}])
    assert runs[0].metrics["reconstruction.mse_normal"] == 0.3 and runs[0].metrics["scores.iwae.roc_auc"] == 0.9
