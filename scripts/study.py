"""The reconstruction-detection trade-off study on images, run in process, resumable.

    python -m scripts.study --dataset mnist --data-root ../shared/datasets --jobs 2
    python -m scripts.study --dataset fashion_mnist --data-root ../shared/datasets --jobs 2
    python -m scripts.study --dataset mnist --data-root ../shared/datasets --dry-run

The grid of Senellart, Solal, Allassonnière & Burgos (ISBI 2026) on the MLP VAE of the MNIST
reference experiment (experiments/mnist.yaml: 784-400-z, Bernoulli likelihood, Adam 1e-3,
batch 128), trained on every class but the held-out ones (``HELD_OUT``, fixed before any
run), scaled down to fit two CPU cores (docs/study-images.md says what and why). Three phases:

1. ``grid``: the β-VAE, constant β ∈ {0.1, 1, 10, 100} × latent size ∈ {20, 64, 256} × seeds
   0-4; the plain autoencoder (the β → 0 end) × latent size × seeds.
2. ``follow-up``: at each latent size, at the β where the phase-1 β-VAE detects best by the
   reconstruction error (the paper's reading) and the one where it reconstructs best (read
   from runs.csv): β scheduling (monotonic warm-up, cyclical) and the Sparse VAE, × seeds.
3. ``report``: scripts.aggregate of runs.csv into the same folder (tables, figures, the
   paper's four claims, summary.json).

Each run trains and reads one model in a worker process (vae_anomaly.studies.study); its params and
metrics become a row of reports/study/<dataset>/runs.csv as soon as it finishes, and a rerun
skips every run already there, so a study cut short goes on where it stopped, and a finished
one only rebuilds the report. Every run reads detection two ways: the reconstruction error
and the project's recommended image score for the study's Bernoulli model (score.primary
"auto": ``combined``, of smoothed_reconstruction_mse, ssim_error, hog_error and latent_knn;
params.AUTO_SCORES; reports/study was measured before ssim_error and hog_error joined it, with
the first and the last).
"""
from __future__ import annotations

import argparse
import copy
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scripts import aggregate
from vae_anomaly.cli import run_main
from vae_anomaly.errors import ParamsError, UserError
from vae_anomaly.io import write_json
from vae_anomaly.params import AUTO, SCORES, load_params, resolve_auto, set_dotted, validate
from vae_anomaly.studies import study

log = logging.getLogger(__name__)

BETAS = (0.1, 1.0, 10.0, 100.0)
LATENT_SIZES = (20, 64, 256)
SCHEDULES = ("monotonic", "cyclical")
SEEDS = 5  # phase 1, as the paper
FOLLOW_UP_SEEDS = 3  # phase 2: the fewest that give a spread; five do not fit the budget (docs/study-images.md)
# The anomalies, held out of training together, fixed before any run: class 1 is the held-out
# class of the reference experiments 4 and 5; 7 is the second, the same index in both datasets
# so that neither choice is tuned to its data (MNIST: the digits 1 and 7; Fashion-MNIST:
# trouser and sneaker). Each run also reports each class's ROC-AUC.
HELD_OUT = {"mnist": [1, 7], "fashion_mnist": [1, 7]}
ARCHITECTURES: dict[str, dict[str, Any]] = {
    # experiments/mnist.yaml's 784-400-z: cheap enough for a CPU thread (its cost: docs/study-images.md)
    "mlp": {"model.architecture": "mlp", "model.hidden_dims": [400]},
    # for a GPU: two stride-2 convolutions, then 128-64-z (too slow a run for two CPU cores:
    # docs/study-images.md)
    "conv": {"model.architecture": "conv", "model.conv_channels": [32, 64], "model.hidden_dims": [128, 64]},
}
STUDY_PARAMS: dict[str, Any] = {  # experiments/mnist.yaml's training, the held-out protocol
    "data.protocol": "held_out",
    "model.likelihood": "bernoulli",
    "train.lr": 0.001,
    "train.batch_size": 128,
    "baselines.names": [],
}
RECONSTRUCTION = "reconstruction_mse"  # the paper's reading of detection
ALSO_RECORDED = "negative_elbo"
# Phase 2's β: the best by the paper's reading (phase 2 tests the paper's remedies).
CHOOSE_BY = f"scores.{RECONSTRUCTION}.roc_auc"


def base_params(args: argparse.Namespace, params_path: Path = Path("params.yaml")) -> dict[str, Any]:
    """params.yaml with the study's settings: every run's params but the VARYING ones."""
    overrides = {
        "data.source": args.dataset, "data.classes": HELD_OUT[args.dataset], **STUDY_PARAMS,
        **ARCHITECTURES[args.architecture],
        "train.epochs": args.epochs, "train.patience": args.patience,
        # params.yaml's 10 epochs of warm-up and 4 cycles, fewer in a short smoke run
        "train.kl_warmup_epochs": min(10, args.epochs // 2),
        "train.kl_cycles": max(1, min(4, args.epochs // 2)),
        # "auto": the project's recommended image score for the study's model (params.AUTO_SCORES),
        # and the scores it is made of; the paper's reading, reconstruction_mse, is among them
        "score.names": AUTO if args.image_score is None else list(dict.fromkeys([RECONSTRUCTION, ALSO_RECORDED, args.image_score])),
        "score.primary": AUTO if args.image_score is None else args.image_score,
        "score.elbo_samples": args.elbo_samples,
    }
    if args.data_root is not None:
        overrides.update({"data.root": str(args.data_root.resolve()), "data.download": False})
    params = load_params(params_path, resolve=False)
    for key, value in overrides.items():
        set_dotted(params, key, value, what="study setting", known_only=True)
    try:
        return resolve_auto(validate(params))
    except ParamsError as err:
        raise UserError(f"the study's settings: {err}") from err


def with_overrides(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    params = copy.deepcopy(base)
    for key, value in overrides.items():
        set_dotted(params, key, value, what="study run", known_only=True)
    return resolve_auto(validate(params))


def vae(beta: float, latent: int, seed: int, schedule: str = "constant", kind: str = "vae") -> dict[str, Any]:
    return {"model.kind": kind, "model.beta": float(beta), "model.latent_dim": latent,
            "train.kl_schedule": schedule, "train.seed": seed}


def grid_runs(latent_sizes: list[int], seeds: int) -> list[dict[str, Any]]:
    """Phase 1: the β-VAE over the paper's grid, then the plain autoencoder (its β unused)."""
    return ([vae(b, z, s) for b in BETAS for z in latent_sizes for s in range(seeds)]
            + [vae(1.0, z, s, kind="ae") for z in latent_sizes for s in range(seeds)])


def follow_up_runs(betas: dict[int, list[float]], seeds: int) -> list[dict[str, Any]]:
    """Phase 2: at each latent size's chosen β, the two schedules and the Sparse VAE."""
    return [run for z, bs in betas.items() for b in bs for s in range(seeds)
            for run in [*(vae(b, z, s, schedule) for schedule in SCHEDULES), vae(b, z, s, kind="sparse")]]


def check_every_model_gives_the_scores(base: dict[str, Any], recommended: str) -> None:
    """Before any run: every kind of run the study makes (β-VAE, autoencoder, schedules, Sparse
    VAE) is valid, its scores included; a recommended score that a model cannot give (one that
    needs another likelihood, or a Gaussian posterior) is named with what to do."""
    problems = []
    for overrides in [vae(1.0, 20, 0), vae(1.0, 20, 0, kind="ae"), *(vae(1.0, 20, 0, s) for s in SCHEDULES),
                      vae(1.0, 20, 0, kind="sparse")]:
        try:
            with_overrides(base, overrides)
        except ParamsError as err:
            problems.append(f"{overrides['model.kind']} {overrides['train.kl_schedule']}: {err}")
    if not problems:
        return
    text = "; ".join(problems)
    if "score.names" in text:
        raise UserError(
            f"the study cannot read every run with score.names = {base['score']['names']} (score.primary "
            f"{recommended!r}): {text}. Pass --image-score with a score every model of the study gives "
            f"(e.g. latent_knn)")
    raise UserError(f"the study's settings make invalid runs: {text}")


def plan(base: dict[str, Any], runs: list[dict[str, Any]], limits: dict[str, int]) -> list[study.Planned]:
    planned = []
    for overrides in runs:
        params = with_overrides(base, overrides)
        planned.append(study.Planned(params, study.run_key(params, limits)))
    return planned


def check_setup(out: Path, base: dict[str, Any], limits: dict[str, int], table: study.RunsTable, write: bool) -> None:
    """runs.csv only holds runs of one setup (setup.json beside it): another setup stops here,
    naming the settings that differ, before its rows could mix with the table's."""
    path, wanted = out / "setup.json", json.loads(json.dumps(study.setup(base, limits)))
    if not table.rows:
        if write:
            write_json(path, wanted)
        return
    if not path.is_file():
        raise UserError(f"{table.path} holds runs but {path} is missing, so their setup is unknown; "
                        "restore it (git checkout), or move runs.csv away to start again")
    have = json.loads(path.read_text())
    keys = sorted(k for k in {**wanted["params"], **have["params"]} if wanted["params"].get(k) != have["params"].get(k))
    keys += [f"--max-{k}" for k in sorted(wanted["limits"]) if wanted["limits"][k] != have["limits"].get(k)]
    if keys:
        raise UserError(
            f"{table.path} holds {len(table.rows)} runs made with other settings ({', '.join(keys)}; see {path}); "
            f"rerun with the same options to finish that study, or pass another --out (or move it away) to start a new one"
        )


def describe(names: list[str]) -> Callable[[dict[str, Any]], str]:
    """A finished run in one log line: each score's ROC-AUC, the MSE, epochs, seconds."""

    def line(metrics: dict[str, Any]) -> str:
        aucs = ", ".join(f"{n} {metrics[f'scores.{n}.roc_auc']:.3f}" for n in names)
        return (f"ROC-AUC {aucs}; MSE {metrics['reconstruction.mse_normal']:.4g}; {metrics['epochs_run']} epochs; "
                f"{metrics['seconds.train'] + metrics['seconds.score']:.0f} s")
    return line


def finished_runs(table: study.RunsTable, planned: list[study.Planned]) -> list[aggregate.Run]:
    keys = {p.key for p in planned}
    return [r for r in aggregate.runs_from_table(table.rows) if r.name in keys]


def chosen_betas(table: study.RunsTable, grid: list[study.Planned]) -> dict[int, list[float]]:
    """Per latent size, the β of best detection (by CHOOSE_BY) and of best reconstruction among
    phase 1's constant-β VAE runs, every one of which must be finished (one β when both agree)."""
    betas = [p for p in grid if p.params["model"]["kind"] == "vae"]
    runs = finished_runs(table, betas)
    if len(runs) < len(betas):
        raise UserError(f"phase 1 has {len(runs)} of its {len(betas)} β-VAE runs in {table.path}; "
                        "finish it first (--phase grid): phase 2's β are chosen from all of them")
    configs, _ = aggregate.group_runs(runs)
    best = aggregate.best_beta_by_latent(configs, CHOOSE_BY)
    return {int(z): sorted({b["detection_beta"], b["reconstruction_beta"]}) for z, b in best.items()}


def do_phase(name: str, planned: list[study.Planned], table: study.RunsTable, args: argparse.Namespace,
             load: Callable[[], study.StudyData], names: list[str]) -> None:
    """Run the planned runs not yet in the table (--dry-run: print them); stop if any failed."""
    done = table.done()
    todo = [p for p in planned if p.key not in done]
    log.info("%s: %d runs, %d already in %s, %d to run", name, len(planned), len(planned) - len(todo), table.path, len(todo))
    if args.dry_run:
        for p in todo:
            print(f"{name}: {study.run_label(p.params)}")
        return
    failed = study.run_all(todo, table, load, args.jobs, describe(names))
    if failed:
        raise UserError(f"{len(failed)} runs of {name} failed (the others are in {table.path}; a rerun "
                        f"retries only these): " + "; ".join(failed))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, choices=sorted(HELD_OUT))
    parser.add_argument("--data-root", type=Path, help="torchvision root holding MNIST/ or "
                        "FashionMNIST/ (default: $VAE_ANOMALY_DATA_ROOT, else data/raw)")
    parser.add_argument("--phase", choices=["grid", "follow-up", "report", "all"], default="all")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time, each in a worker process "
                        "with one torch thread (default 2, for 2 cores)")
    parser.add_argument("--dry-run", action="store_true", help="print the runs still to do, and how many are done; run nothing")
    parser.add_argument("--out", type=Path, help="folder of runs.csv and the report (default reports/study/<dataset>)")
    budget = parser.add_argument_group("budget (what docs/study-images.md measured; changing one starts another study)")
    budget.add_argument("--architecture", choices=sorted(ARCHITECTURES), default="mlp",
                        help="mlp (default), or conv for a GPU")
    budget.add_argument("--max-train", type=int, default=10_000, help="training images per run, a seeded subsample (0 = all)")
    budget.add_argument("--max-val", type=int, default=1_000, help="validation images per run (0 = all)")
    budget.add_argument("--max-test", type=int, default=0, help="test images (0 = all 10,000)")
    budget.add_argument("--epochs", type=int, default=30, help="at most this many epochs (early stopping)")
    budget.add_argument("--patience", type=int, default=5, help="epochs without validation improvement before stopping")
    budget.add_argument("--elbo-samples", type=int, default=1, help="posterior samples of the negative ELBO score")
    budget.add_argument("--image-score", choices=SCORES, help="read detection with this score instead of "
                        "the recommended image score for the study's model (score.primary: auto)")
    grid = parser.add_argument_group("grid (smaller for a smoke run; the runs it keeps are the full study's)")
    grid.add_argument("--latent-sizes", type=int, nargs="+", default=list(LATENT_SIZES), metavar="Z")
    grid.add_argument("--seeds", type=int, default=SEEDS, help="phase-1 seeds (0 to N-1)")
    grid.add_argument("--follow-up-seeds", type=int, default=FOLLOW_UP_SEEDS, help="phase-2 seeds")
    args = parser.parse_args(argv)
    if args.jobs < 1 or min(args.seeds, args.follow_up_seeds, args.epochs, args.patience, args.elbo_samples) < 1:
        raise UserError("--jobs, --seeds, --follow-up-seeds, --epochs, --patience and --elbo-samples must be at least 1")
    if min(args.max_train, args.max_val, args.max_test) < 0:
        raise UserError("--max-train, --max-val and --max-test must be 0 (all) or more")
    if args.data_root is not None and not args.data_root.is_dir():
        raise UserError(f"--data-root {args.data_root}: no such folder; give the folder that holds "
                        "MNIST/ and FashionMNIST/ (e.g. ../shared/datasets)")
    started = time.perf_counter()
    out = args.out or Path("reports/study") / args.dataset
    table = study.RunsTable(out / "runs.csv")
    if args.phase != "report":
        base = base_params(args)
        check_every_model_gives_the_scores(base, base["score"]["primary"])
        limits = {"train": args.max_train, "val": args.max_val, "test": args.max_test}
        check_setup(out, base, limits, table, write=not args.dry_run)
        data: list[study.StudyData] = []  # loaded at the first run, then kept

        def load() -> study.StudyData:
            if not data:
                data.append(study.load_data(base["data"], limits))
            return data[0]

        names = base["score"]["names"]
        grid_plan = plan(base, grid_runs(args.latent_sizes, args.seeds), limits)
        if args.phase in ("grid", "all"):
            do_phase("phase 1 (grid)", grid_plan, table, args, load, names)
        if args.phase in ("follow-up", "all"):
            try:
                betas = chosen_betas(table, grid_plan)
            except UserError:
                if not args.dry_run:
                    raise
                print(f"phase 2 (follow-up): chosen once phase 1 is finished; up to "
                      f"{len(follow_up_runs({z: [0, 1] for z in args.latent_sizes}, args.follow_up_seeds))} runs")
            else:
                log.info("phase 2 β per latent size (best detection by the reconstruction error, best reconstruction): %s", betas)
                do_phase("phase 2 (follow-up)", plan(base, follow_up_runs(betas, args.follow_up_seeds), limits),
                         table, args, load, names)
    if args.phase in ("report", "all") and not args.dry_run:
        if not table.rows:
            raise UserError(f"{table.path}: no finished run to report; run the study first (--phase grid)")
        sys.stdout.write(aggregate.aggregate(aggregate.runs_from_table(table.rows), out))
        log.info("study of %s done in %.0f s (this invocation)", args.dataset, time.perf_counter() - started)


if __name__ == "__main__":
    run_main(main)
