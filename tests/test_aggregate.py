"""scripts/aggregate.py on small fabricated rows of `dvc exp show` (as dvc.api.exp_show gives
them: one flat row per workspace, commit and experiment)."""
import csv

import pytest

from scripts.aggregate import aggregate, collect_runs, main
from vae_anomaly.io import UserError


def row(name, kind, beta, latent, seed, roc_auc=None, mse=None, w2=None, alpha_dims=None,
        typ="branch_commit", state="Success"):
    """One row: params and dependency hashes; metrics where evaluate has run (``roc_auc``)."""
    out = {"Experiment": name, "rev": (name or "main")[:7], "typ": typ, "Created": None, "parent": None,
           "State": state, "Executor": None,
           "model.kind": kind, "model.beta": beta, "model.latent_dim": latent,
           "model.hidden_dims": [8], "train.seed": seed, "train.kl_schedule": "constant",
           "baselines.names": ["knn"],  # a params section that reports/metrics.json has too
           "stages/train.py": "0f3a", "roc_auc": None, "n_flagged": None}
    if roc_auc is not None:
        out.update({"roc_auc": roc_auc, "pr_auc": roc_auc / 2, "n_flagged": 10,
                    "baselines.knn.roc_auc": 0.5 + seed,  # differs by seed: a metric, not a param
                    "latent.latent_dim": latent, "latent.w2_normal_anomaly": w2,
                    "latent.active_dims": latent, "latent.active_dims_alpha": alpha_dims,
                    "reconstruction.mse_normal": mse, "reconstruction.n_normal": 10,
                    "reports/train_metrics.json:epochs_run": 3})
    return out


@pytest.fixture
def rows():
    workspace = row("b1-s0", "vae", 1.0, 2, 0, roc_auc=0.6, mse=0.10, w2=1.0, typ="baseline", state=None)
    workspace.update(Experiment=None, rev="workspace")
    return [
        workspace,
        row(None, "vae", 1.0, 2, 0, typ="baseline", state=None),  # a commit without metrics
        row("b1-s0", "vae", 1.0, 2, 0, roc_auc=0.6, mse=0.10, w2=1.0),
        row("b1-s1", "vae", 1.0, 2, 1, roc_auc=0.8, mse=0.30, w2=2.0),
        row("b10-s0", "vae", 10.0, 2, 0, roc_auc=0.9, mse=1.0, w2=3.0),
        row("b10-s1", "vae", 10.0, 2, 1, roc_auc=0.9, mse=1.0, w2=3.0),
        row("sparse-s0", "sparse", 1.0, 2, 0, roc_auc=0.75, mse=0.2, w2=0.5, alpha_dims=1),
        row("queued", "vae", 100.0, 2, 0, state="Queued"),
        row("broken", "vae", 100.0, 2, 1, state="Failed"),
    ]


def test_collect_runs_keeps_finished_runs_once(rows):
    runs, skipped = collect_runs(rows)
    assert sorted(r.name for r in runs) == ["b1-s0", "b1-s1", "b10-s0", "b10-s1", "sparse-s0"]
    assert skipped == {"no metrics": 1, "queued": 1, "failed": 1}
    first = next(r for r in runs if r.name == "b1-s0")
    assert first.params["model.beta"] == 1.0 and first.params["baselines.names"] == ["knn"]
    assert "baselines.knn.roc_auc" not in first.params and "stages/train.py" not in first.params
    assert first.metrics["latent.w2_normal_anomaly"] == 1.0


def test_aggregate_writes_table_and_figures(rows, tmp_path):
    table = aggregate(rows, tmp_path, "roc_auc")
    lines = [" ".join(line.split()) for line in table.splitlines()]  # tabulate pads the cells
    assert lines[0] == ("| kind | beta | latent | seeds | roc_auc | PR-AUC | MSE normal | latent W2 "
                        "| active dims | active dims (alpha) |")  # no SSIM: no run has it
    assert lines[2] == "| sparse | 1 | 2 | 1 | 0.75 | 0.375 | 0.2 | 0.5 | 2 | 1 |"
    assert lines[3] == "| vae | 1 | 2 | 2 | 0.7 ± 0.14 | 0.35 ± 0.071 | 0.2 ± 0.14 | 1.5 ± 0.71 | 2 ± 0 | – |"
    assert lines[4] == "| vae | 10 | 2 | 2 | 0.9 ± 0 | 0.45 ± 0 | 1 ± 0 | 3 ± 0 | 2 ± 0 | – |"
    assert (tmp_path / "table.md").read_text() == table
    for png in ("tradeoff.png", "seed_variability.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_main_reads_a_saved_csv(rows, tmp_path, capsys):
    path = tmp_path / "exps.csv"
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as fh:  # as `dvc exp show --csv` writes it
        writer = csv.DictWriter(fh, columns)
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in r.items()} for r in rows)
    main(["--input", str(path), "--out", str(tmp_path / "study"),
          "--detection", "latent.w2_normal_anomaly"])
    out = capsys.readouterr().out.splitlines()
    assert out[0].split("|")[5].strip() == "latent.w2_normal_anomaly"
    assert [" ".join(line.split()) for line in out[2:5]] == [
        "| sparse | 1 | 2 | 1 | 0.5 | 0.375 | 0.2 | 0.5 | 2 | 1 |",
        "| vae | 1 | 2 | 2 | 1.5 ± 0.71 | 0.35 ± 0.071 | 0.2 ± 0.14 | 1.5 ± 0.71 | 2 ± 0 | – |",
        "| vae | 10 | 2 | 2 | 3 ± 0 | 0.45 ± 0 | 1 ± 0 | 3 ± 0 | 2 ± 0 | – |",
    ]


def test_no_experiments_says_so(rows, tmp_path):
    with pytest.raises(UserError, match="no experiment with reports/metrics.json found.*dvc exp run --queue"):
        aggregate([rows[1]], tmp_path, "roc_auc")
    with pytest.raises(UserError, match="not found"):
        main(["--input", str(tmp_path / "missing.csv")])
    assert not (tmp_path / "table.md").exists()
