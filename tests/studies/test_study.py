"""scripts/study.py and vae_anomaly/study.py: the paper's grid, the recommended image score of
its model ("auto"), and the whole study end to end on tiny MNIST files (never ../shared),
killed mid-way and resumed."""
import argparse
import csv
from pathlib import Path

import pytest

from scripts import aggregate
from scripts import study as cli
from vae_anomaly.errors import UserError
from vae_anomaly.studies import study

from conftest import ROOT


def options(**changes):
    defaults = dict(dataset="mnist", data_root=None, image_score=None, architecture="mlp", epochs=30,
                    patience=5, elbo_samples=1)
    return argparse.Namespace(**{**defaults, **changes})


@pytest.fixture
def combined_spec(monkeypatch):
    """Runs from the project root, whose params.yaml leaves the image score "auto"."""
    monkeypatch.chdir(ROOT)


def test_grid_is_the_papers_and_every_run_is_valid(combined_spec):
    base = cli.base_params(options())
    runs = cli.grid_runs(list(cli.LATENT_SIZES), cli.SEEDS)
    assert len(runs) == 4 * 3 * 5 + 3 * 5
    planned = cli.plan(base, runs, {"train": 10_000, "val": 1_000, "test": 0})
    assert len({p.key for p in planned}) == len(runs)  # each run its own identity
    first = planned[0].params
    assert first["data"]["classes"] == [1, 7] and first["data"]["protocol"] == "held_out"
    assert (first["model"]["architecture"], first["model"]["hidden_dims"], first["model"]["likelihood"]) == ("mlp", [400], "bernoulli")
    # the recommended image score of a Bernoulli model, with what it is made of and the paper's reading
    assert first["score"]["names"] == ["combined", "smoothed_reconstruction_mse", "ssim_error", "hog_error", "latent_knn",
                                       "negative_elbo", "reconstruction_mse"]
    assert (first["score"]["primary"], first["score"]["combine"]) == ("combined", ["smoothed_reconstruction_mse", "ssim_error", "hog_error", "latent_knn"])
    cli.check_every_model_gives_the_scores(base, "combined")


def test_a_score_the_models_cannot_give_stops_before_any_run(monkeypatch):
    monkeypatch.chdir(ROOT)
    with pytest.raises(UserError, match=r"the study's settings: .*'complexity_corrected'.*discretized_logistic"):
        cli.base_params(options(image_score="complexity_corrected"))
    base = cli.base_params(options(image_score="kl_to_prior"))  # fine for the β-VAE, not the others
    with pytest.raises(UserError, match=r"'kl_to_prior'.*model.kind = 'ae'.*--image-score"):
        cli.check_every_model_gives_the_scores(base, "kl_to_prior")
    base = cli.base_params(options(image_score="latent_knn"))  # the way out it names
    assert base["score"]["primary"] == "latent_knn"
    cli.check_every_model_gives_the_scores(base, "latent_knn")


def test_follow_up_takes_the_best_betas_from_runs_csv(combined_spec, tmp_path):
    base = cli.base_params(options())
    limits = {"train": 0, "val": 0, "test": 0}
    grid = cli.plan(base, cli.grid_runs([20, 64], 2), limits)
    table = study.RunsTable(tmp_path / "runs.csv")
    # by the reconstruction error: z=20 detects best at β=10 and reconstructs best at 0.1;
    # z=64 does both best at β=1 (one β)
    auc = {(20, 0.1): 0.6, (20, 1.0): 0.7, (20, 10.0): 0.8, (20, 100.0): 0.5,
           (64, 0.1): 0.6, (64, 1.0): 0.9, (64, 10.0): 0.7, (64, 100.0): 0.5}
    mse = {0.1: 0.01, 1.0: 0.02, 10.0: 0.05, 100.0: 0.09}
    with pytest.raises(UserError, match="phase 1 has 0 of its 16 β-VAE runs.*--phase grid"):
        cli.chosen_betas(table, grid)
    for p in grid:
        beta, z = p.params["model"]["beta"], p.params["model"]["latent_dim"]
        metrics = {"scores.reconstruction_mse.roc_auc": auc[(z, beta)], "reconstruction.mse_normal":
                   0.001 if (z, beta) == (64, 1.0) else mse[beta]}
        table.add(p.params, p.key, metrics)
    assert cli.chosen_betas(table, grid) == {20: [0.1, 10.0], 64: [1.0]}
    follow = cli.follow_up_runs({20: [0.1, 10.0], 64: [1.0]}, 3)
    assert len(follow) == (2 + 1) * 3 * 3  # (β per latent size) × (2 schedules + Sparse VAE) × seeds
    assert {(r["model.kind"], r["train.kl_schedule"]) for r in follow} == {
        ("vae", "monotonic"), ("vae", "cyclical"), ("sparse", "constant")}
    # the table was rewritten after each run, whole, in a fixed order
    rows = list(csv.DictReader(open(tmp_path / "runs.csv")))
    assert len(rows) == len(grid) and [r["run"] for r in rows] == [r["run"] for r in table.rows]


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def without_times(rows):
    return [{k: v for k, v in r.items() if not k.startswith("seconds.")} for r in rows]


TOY = ["--dataset", "mnist", "--jobs", "1", "--latent-sizes", "2", "--seeds", "2", "--follow-up-seeds", "1",
       "--epochs", "3", "--patience", "2"]


def test_the_study_end_to_end_killed_and_resumed(combined_spec, tiny_root, tmp_path, monkeypatch, capsys):  # noqa: F811
    out = tmp_path / "study"
    args = [*TOY, "--data-root", str(tiny_root), "--out", str(out)]
    real_run, calls = study.run_one, []

    def killed_at_the_fourth_run(params, data):
        if len(calls) == 3:
            raise KeyboardInterrupt  # Ctrl-C, or a closed terminal, in the middle of a run
        calls.append(study.run_label(params))
        return real_run(params, data)

    monkeypatch.setattr(study, "run_one", killed_at_the_fourth_run)
    with pytest.raises(KeyboardInterrupt):
        cli.main(args)
    assert len(read_rows(out / "runs.csv")) == 3  # every finished run, whole
    assert sorted(p.name for p in out.iterdir()) == ["runs.csv", "setup.json"]  # no temporary file left

    # the rerun goes on where it stopped: phase 1's other 7 runs, then phase 2
    calls.clear()
    monkeypatch.setattr(study, "run_one", lambda params, data: calls.append(study.run_label(params)) or real_run(params, data))
    cli.main(args)
    rows = read_rows(out / "runs.csv")
    phase2 = [r for r in rows if r["model.kind"] == "sparse" or r["train.kl_schedule"] != "constant"]
    assert len(rows) == 4 * 2 + 2 + len(phase2) and len(phase2) in (3, 6)
    assert len(calls) == len(rows) - 3 and len({r["run"] for r in rows}) == len(rows)
    assert {r["score.primary"] for r in rows} == {"combined"}
    run = rows[0]
    assert set(run) >= {"scores.reconstruction_mse.roc_auc", "scores.combined.roc_auc", "scores.negative_elbo.roc_auc",
                        "scores.combined.per_type.1 - one.roc_auc", "scores.reconstruction_mse.per_type.7 - seven.roc_auc",
                        "reconstruction.mse_normal", "reconstruction.ssim_normal", "latent.w2_normal_anomaly",
                        "latent.active_dims", "latent.active_dims_rule", "epochs_run", "seconds.train", "seconds.score"}
    table = (out / "table.md").read_text()
    assert "ROC-AUC, reconstruction error" in table and "ROC-AUC, combined" in table
    assert "1. Larger β detects better and reconstructs worse: **" in table
    assert capsys.readouterr().out.endswith(table)  # printed too

    # a finished study: no training at all, only the report again, the same bytes
    report = {p.name: p.read_bytes() for p in out.iterdir()}
    monkeypatch.setattr(study, "run_one", lambda params, data: pytest.fail("a finished run ran again"))
    cli.main(args)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == report

    # phase 1 again in one go, in two worker processes: the same numbers (same params and seeds)
    monkeypatch.setattr(study, "run_one", real_run)
    cli.main([*TOY, "--data-root", str(tiny_root), "--out", str(tmp_path / "again"), "--phase", "grid", "--jobs", "2"])
    assert without_times(read_rows(tmp_path / "again" / "runs.csv")) == without_times([r for r in rows if r not in phase2])

    # and the aggregate rebuilds the report from runs.csv alone, byte for byte
    aggregate.main(["--runs", str(out / "runs.csv"), "--out", str(tmp_path / "rebuilt")])
    for name in ("table.md", "summary.json", "tradeoff.png", "seed_variability.png"):
        assert (tmp_path / "rebuilt" / name).read_bytes() == report[name], name


def test_another_setup_does_not_mix_into_a_table(combined_spec, tiny_root, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "study"
    args = [*TOY, "--seeds", "1", "--data-root", str(tiny_root), "--out", str(out), "--phase", "grid"]
    cli.main(args)
    assert len(read_rows(out / "runs.csv")) == 5
    with pytest.raises(UserError, match=r"holds 5 runs made with other settings \(train.epochs.*--max-val"):
        cli.main([*args, "--epochs", "4", "--max-val", "12"])
    capsys.readouterr()
    cli.main([*args, "--seeds", "2", "--dry-run"])  # more seeds: the same study, grown
    printed = capsys.readouterr().out.splitlines()
    assert printed == [f"phase 1 (grid): {label}" for label in
                       [f"vae β={b} latent=2 constant seed=1" for b in ("0.1", "1", "10", "100")] + ["ae latent=2 seed=1"]]
