"""scripts/aggregate.py on small fabricated `dvc.api.exp_show()` rows (DVC 3.x) and study runs,
and the paper's four claims answered by their stated rules."""
import json

import numpy as np
import pytest

from scripts.aggregate import (
    Run,
    aggregate,
    claims,
    collect_runs,
    default_readings,
    group_runs,
    main,
    runs_from_table,
)
from vae_anomaly.errors import UserError


def row(name, kind, beta, latent, seed, roc_auc=None, mse=None, w2=None, state="Success",
        schedule="constant", source="mnist"):
    """One row as dvc.api.exp_show() gives it: flat columns, numbers as floats, lists and
    missing values as text, "file:key" where two files share a key."""
    r = {"Experiment": name, "rev": name[:7], "typ": "branch_commit", "State": state,
         "model.kind": kind, "model.beta": float(beta), "model.latent_dim": float(latent),
         "model.hidden_dims": "[8]", "train.seed": float(seed), "train.kl_schedule": schedule,
         "score.primary": "negative_elbo",
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


def study_runs(rows):
    return collect_runs(rows, prefix="study-")[0]


def test_aggregate_writes_table_notes_and_figures(rows, tmp_path):
    runs = study_runs(rows)
    assert default_readings(runs) == ["scores.reconstruction_mse.roc_auc", "scores.negative_elbo.roc_auc"]
    text = aggregate(runs, tmp_path)
    lines = [" ".join(line.split()) for line in text.splitlines()]  # tabulate pads the cells
    assert lines[0] == ("| variant | beta | latent | seeds | ROC-AUC, reconstruction error | ROC-AUC, negative_elbo "
                        "| MSE normal | latent W2 | active dims | epochs |")  # no SSIM, no seconds: no run has them
    assert lines[2] == "| AE (β → 0) | – | 2 | 1 | 0.5 | 0.5 | 0.05 | 0.4 | 2 | 30 |"
    assert lines[3] == "| Sparse VAE | 1 | 2 | 1 | 0.25 | 0.75 | 0.2 | 0.5 | 2 | 30 |"
    assert lines[4] == "| β-VAE | 1 | 2 | 2 | 0.3 ± 0.14 | 0.7 ± 0.14 | 0.2 ± 0.14 | 1.5 ± 0.71 | 2 ± 0 | 30 ± 0 |"
    assert lines[5].startswith("| β-VAE | 10 | 2 | 2 | 0.1 ± 0 | 0.9 ± 0 |")
    # per held-out class: score.primary's, from per_type.json's keys
    assert "| variant | beta | latent | seeds | 0 - zero, negative_elbo |" in lines
    assert "| β-VAE | 1 | 2 | 2 | 0.7 ± 0.14 |" in lines
    # b1's seeds: the one with the larger W2 detects better (by negative_elbo); b10's are equal
    assert "- within configurations (each run's deviation from its configuration's mean over seeds, pooled): " \
           "ρ = 1.00 (p = 0, 4 runs)" in text
    assert "- across configurations (every run; W2 is in each model's own latent units): ρ = 0.94 (p = 0.0051, 6 runs)" in text
    assert "- latent size 2: best scores.negative_elbo.roc_auc at β = 10 (0.900); best reconstruction at β = 1 (MSE 0.2)" in text
    assert "- latent size 2: best scores.reconstruction_mse.roc_auc at β = 1 (0.300); best reconstruction at β = 1 (MSE 0.2)" in text
    assert text.count("4. The Sparse VAE detects better at high reconstruction quality: **") == 2  # once per reading
    assert (tmp_path / "table.md").read_text() == text
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["runs"] == 6 and summary["readings"] == default_readings(runs)
    assert summary["configurations"][2]["mean"]["scores.negative_elbo.roc_auc"] == 0.7
    assert set(summary["claims"]["by_reading"]["scores.negative_elbo.roc_auc"]) == {"1", "2", "3", "4"}
    for png in ("tradeoff.png", "seed_variability.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_save_and_read_back_give_the_same_table(rows, tmp_path, capsys):
    saved = tmp_path / "runs.json"
    main(["--prefix", "study-", "--input", str(_saved_rows(rows, tmp_path)), "--out", str(tmp_path / "a"),
          "--save", str(saved), "--detection", "scores.reconstruction_mse.roc_auc"])
    text = capsys.readouterr().out
    assert len(json.loads(saved.read_text())) == 6
    main(["--input", str(saved), "--out", str(tmp_path / "b"), "--detection", "scores.reconstruction_mse.roc_auc"])
    assert capsys.readouterr().out == text
    assert "best scores.reconstruction_mse.roc_auc at β = 1 (0.300)" in text
    assert (tmp_path / "a" / "tradeoff.png").read_bytes() == (tmp_path / "b" / "tradeoff.png").read_bytes()


def _saved_rows(rows, tmp_path):
    path = tmp_path / "exp_show.json"
    path.write_text(json.dumps(rows))
    return path


def test_nothing_to_aggregate_says_why(rows, tmp_path):
    saved = str(_saved_rows(rows, tmp_path))
    with pytest.raises(UserError, match="no finished experiment .* matches --prefix nope-.*dvc exp run --queue"):
        main(["--input", saved, "--prefix", "nope-", "--out", str(tmp_path)])
    with pytest.raises(UserError, match="--detection 'f1': no run has it"):
        aggregate(study_runs(rows), tmp_path, ["f1"])
    with pytest.raises(UserError, match="not found"):
        main(["--input", str(tmp_path / "missing.json")])
    with pytest.raises(UserError, match="--where 'model.bta=1': expected KEY=VALUE with a params key"):
        main(["--where", "model.bta=1"])
    with pytest.raises(UserError, match="--runs reads a study's table; --input, --prefix"):
        main(["--runs", "runs.csv", "--prefix", "study-"])
    assert not (tmp_path / "table.md").exists()


def test_with_detail_reads_reports_detail_json_at_each_finished_runs_revision(monkeypatch):
    """DVC's exp_show() has only dvc.yaml's metrics; the per-score and model detail and the
    training run the study reads come from reports/detail.json and reports/train_metrics.json
    at each run's revision (the workspace's from disk)."""
    import dvc.api

    from scripts.aggregate import with_detail

    def metrics_show(path, rev=None):
        if rev == "old":
            raise FileNotFoundError(path)  # a commit from before the file
        if path == "reports/train_metrics.json":
            return {"epochs_run": 30 if rev else 40}
        assert path == "reports/detail.json"
        return {"scores": {"negative_elbo": {"roc_auc": 0.7}}, "reconstruction": {"mse_normal": 0.1 if rev else 0.2}}

    monkeypatch.setattr(dvc.api, "metrics_show", metrics_show)
    rows = with_detail([{"rev": "workspace"}, {"rev": "abc1234"}, {"rev": "old"}, {"rev": "q", "State": "Queued"}])
    assert rows[0]["reports/detail.json:reconstruction.mse_normal"] == 0.2
    assert rows[0]["reports/train_metrics.json:epochs_run"] == 40
    assert rows[1]["reports/detail.json:scores.negative_elbo.roc_auc"] == 0.7
    assert rows[2:] == [{"rev": "old"}, {"rev": "q", "State": "Queued"}]
    detail = {"reconstruction.mse_normal": 0.3, "scores.iwae.roc_auc": 0.9}
    runs, _ = collect_runs([{**row("s-b1", "vae", 1, 2, 0, 0.6, 0.1, 1.0),
                             **{f"reports/detail.json:{k}": v for k, v in detail.items()},
                             "reports/train_metrics.json:epochs_run": 12}])
    assert runs[0].metrics["reconstruction.mse_normal"] == 0.3 and runs[0].metrics["scores.iwae.roc_auc"] == 0.9
    assert runs[0].metrics["epochs_run"] == 12


def test_runs_csv_rows_become_runs():
    runs = runs_from_table([{"run": "ab12", "score.primary": "combined", "model.kind": "vae", "model.beta": "0.1",
                             "model.latent_dim": "20", "train.seed": "3", "scores.combined.roc_auc": "0.91",
                             "latent.active_dims": "", "latent.active_dims_rule": "KL > 0.01 nats"}])
    assert runs == [Run("ab12", {"score.primary": "combined", "model.kind": "vae", "model.beta": 0.1,
                                 "model.latent_dim": 20.0, "train.seed": 3.0},
                        {"scores.combined.roc_auc": 0.91, "latent.active_dims": None,
                         "latent.active_dims_rule": "KL > 0.01 nats"})]
    assert default_readings(runs) == ["scores.combined.roc_auc"]  # no reconstruction error in these


# --- the claims, on fabricated study runs -------------------------------------------------------

DET, MSE = "scores.combined.roc_auc", "reconstruction.mse_normal"


def fake_run(kind, beta, latent, seed, det, mse, w2=1.0, schedule="constant"):
    params = {"model.kind": kind, "model.beta": float(beta), "model.latent_dim": float(latent),
              "train.seed": float(seed), "train.kl_schedule": schedule}
    return Run(f"{kind}-{schedule}-{beta}-{latent}-{seed}", params,
               {DET: det, MSE: mse, "latent.w2_normal_anomaly": w2})


def grid(detection_of_beta, latents=(20, 64), seeds=5):
    """Constant-β VAE runs: detection by β (per latent size), MSE rising with β, seed noise
    in detection that follows W2 (the larger W2, the better)."""
    runs = []
    for z in latents:
        for b in (0.1, 1, 10, 100):
            for s in range(seeds):
                noise = 0.002 * (s - 2)
                runs.append(fake_run("vae", b, z, s, detection_of_beta(z, b) + noise, 0.01 * (1 + np.log10(b) + 2) + 0.0001 * s,
                                     w2=1.0 + 0.1 * s))
    return runs


def answers(runs):
    configs, variant_keys = group_runs(runs)
    return claims(configs, DET, variant_keys)


def test_claim_one_tradeoff_yes_partly_no():
    rising = grid(lambda z, b: 0.6 + 0.05 * np.log10(b))
    assert answers(rising)["1"]["verdict"] == "yes"
    one_latent = grid(lambda z, b: 0.6 + 0.05 * np.log10(b) * (1 if z == 20 else -1))
    assert answers(one_latent)["1"]["verdict"] == "partly"
    falling = grid(lambda z, b: 0.6 - 0.05 * np.log10(b))
    result = answers(falling)["1"]
    assert result["verdict"] == "no" and result["by_latent"][0]["reconstructs_worse"]


def test_claim_two_seed_variability_follows_the_latent_distance():
    follows = grid(lambda z, b: 0.7)  # each seed's detection rises with its W2
    assert answers(follows)["2"]["verdict"] == "yes"
    shuffled = [fake_run("vae", 1, 20, s, 0.7 + 0.002 * ((3 * s) % 5), 0.01, w2=1.0 + 0.1 * s) for s in range(5)]
    shuffled += [fake_run("vae", 10, 20, s, 0.7 + 0.002 * ((2 * s) % 5), 0.02, w2=1.0 + 0.1 * (4 - s)) for s in range(5)]
    assert answers(shuffled)["2"]["verdict"] == "no"


def test_claims_three_and_four_compare_at_the_same_beta_beyond_the_seed_spread():
    base = grid(lambda z, b: 0.7, latents=(20,), seeds=3)
    better_mse = [fake_run("vae", 10, 20, s, 0.7, 0.02, schedule="monotonic") for s in range(3)]  # MSE 0.04 -> 0.02
    worse_det = [fake_run("vae", 10, 20, s, 0.6, 0.04, schedule="cyclical") for s in range(3)]
    result = answers(base + better_mse + worse_det)["3"]
    assert [(p["variant"], p["softens"]) for p in result["pairs"]] == [("cyclical", False), ("monotonic", True)]  # only the schedule varies
    assert result["verdict"] == "partly"
    sparse = [fake_run("sparse", 10, 20, s, 0.75, 0.04, w2=1.0 + 0.1 * s) for s in range(3)]
    assert answers(base + sparse)["4"]["verdict"] == "yes"
    within_noise = [fake_run("sparse", 10, 20, s, 0.698 + 0.001 * s, 0.04) for s in range(3)]
    assert answers(base + within_noise)["4"]["verdict"] == "no"
    assert answers(base)["3"]["verdict"] == "not answered"  # no schedule ran
