"""The reconstruction-detection trade-off study on images, as queued DVC experiments.

    python -m scripts.study --dataset mnist --data-root ../shared/datasets --jobs 4
    python -m scripts.study --dataset fashion_mnist --data-root ../shared/datasets --jobs 4
    python -m scripts.study --dataset mnist --dry-run         # print the dvc commands only

The grid of Senellart, Solal, Allassonnière & Burgos (ISBI 2026), on a conv VAE trained on
every class but the held-out ones (``HELD_OUT``, chosen before any run of the study), to
convergence (at most ``train.epochs`` = 100, early stopping after 10 epochs without validation
improvement). Three phases, each a set of `dvc exp run --queue -n NAME -S ...` calls run with
`dvc exp run --run-all -j JOBS`; every experiment is named ``study-<dataset>-...`` so
`python -m scripts.aggregate --prefix study-<dataset>-` reads this study and nothing else:

1. ``grid``: the β-VAE, constant β ∈ {0.1, 1, 10, 100} × latent size ∈ {20, 64, 256} × seeds
   0-4; the plain autoencoder (the β → 0 end) × latent size × seeds.
2. ``follow-up``: at each latent size, at the β where the phase-1 β-VAE detects best and the
   one where it reconstructs best (read from the finished phase-1 runs): β scheduling
   (monotonic warm-up, cyclical) and the Sparse VAE (constant β), × seeds.
3. ``report``: scripts.aggregate into reports/study/<dataset>/ (table, figures).

``--phase all`` (the default) runs the three in order; a phase whose experiments already exist
is not queued again. ``--max-train N`` is the documented CPU reduction: a seeded subsample of
N training images for every run (never fewer grid points).
"""
from __future__ import annotations

import argparse
import itertools
import os
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scripts import aggregate
from scripts.experiment import committed_params, override_arg
from vae_anomaly.io import UserError, log, run_main
from vae_anomaly.params import ParamsError, load_params

BETAS = (0.1, 1, 10, 100)
LATENT_SIZES = (20, 64, 256)
SEEDS = range(5)
SCHEDULES = ("monotonic", "cyclical")
# The anomalies, held out of training together, fixed before any run: class 1 is the held-out
# class of the reference experiments 4 and 5; 7 is the second, the same index in both datasets
# so that neither choice is tuned to its data (MNIST: the digits 1 and 7; Fashion-MNIST:
# trouser and sneaker). evaluate also reports each class's ROC-AUC (per_type).
HELD_OUT = {"mnist": [1, 7], "fashion_mnist": [1, 7]}
STUDY_PARAMS: dict[str, Any] = {
    "data.protocol": "held_out",
    "model.architecture": "conv",
    "model.likelihood": "bernoulli",
    "train.epochs": 100,
    "train.patience": 10,
    "score.names": ["negative_elbo", "reconstruction_mse"],
    "score.primary": "negative_elbo",
    "score.elbo_samples": 4,
    "baselines.names": [],
}
STAGES = ["evaluate"]  # no figures per run: the study's figures are the aggregate's
DETECTION = "roc_auc"  # of score.primary, the negative ELBO; aggregate adds reconstruction's


@dataclass
class Sweep:
    """One `dvc exp run --queue -n NAME`: fixed overrides, and the params it sweeps (every
    combination, DVC naming the runs NAME-1, NAME-2, ...)."""

    name: str
    fixed: dict[str, Any]
    swept: dict[str, list[Any]]

    def set_args(self) -> list[str]:
        """The values of the sweep's -S arguments: fixed ones, then swept value lists."""
        sets = [override_arg(k, v) for k, v in self.fixed.items()]
        return sets + [f"{k}={','.join(override_arg(k, x).split('=', 1)[1] for x in xs)}"
                       for k, xs in self.swept.items()]

    def command(self) -> list[str]:
        return ["dvc", "exp", "run", "--queue", "-n", self.name,
                *(a for s in self.set_args() for a in ("-S", s)), *STAGES]

    def runs(self) -> list[dict[str, Any]]:
        """The overrides of every run of the sweep."""
        return [{**self.fixed, **dict(zip(self.swept, combo))} for combo in itertools.product(*self.swept.values())]


def prefix(dataset: str) -> str:
    return f"study-{dataset}-"


def base_params(dataset: str, max_train: int) -> dict[str, Any]:
    return {"data.source": dataset, "data.classes": HELD_OUT[dataset], "data.max_train": max_train, **STUDY_PARAMS}


def grid_sweeps(dataset: str, max_train: int) -> list[Sweep]:
    base, name, seeds = base_params(dataset, max_train), prefix(dataset), list(SEEDS)
    return [
        Sweep(name + "beta", {**base, "model.kind": "vae", "train.kl_schedule": "constant"},
              {"model.beta": list(BETAS), "model.latent_dim": list(LATENT_SIZES), "train.seed": seeds}),
        Sweep(name + "ae", {**base, "model.kind": "ae", "train.kl_schedule": "constant"},
              {"model.latent_dim": list(LATENT_SIZES), "train.seed": seeds}),
    ]


def chosen_betas(rows: list[dict[str, Any]], dataset: str) -> dict[int, list[float]]:
    """Per latent size, the β of best detection and of best reconstruction among the finished
    phase-1 runs (one β when both are the same); every latent size of the grid must have them."""
    runs, _ = aggregate.collect_runs(rows, prefix(dataset) + "beta-")
    configs, _ = aggregate.group_runs(runs) if runs else ([], [])
    best = aggregate.best_beta_by_latent(configs, DETECTION)
    missing = [z for z in LATENT_SIZES if float(z) not in best]
    if missing:
        raise UserError(f"no finished phase-1 runs ({prefix(dataset)}beta-*) at latent size "
                        f"{', '.join(map(str, missing))}: run --phase grid first, and check `dvc queue status`")
    return {z: sorted({best[float(z)]["detection_beta"], best[float(z)]["reconstruction_beta"]})
            for z in LATENT_SIZES}


def follow_up_sweeps(dataset: str, max_train: int, betas: dict[int, list[float]]) -> list[Sweep]:
    base, name, seeds, sweeps = base_params(dataset, max_train), prefix(dataset), list(SEEDS), []
    for z, bs in betas.items():
        fixed = {**base, "model.latent_dim": z}
        sweeps.append(Sweep(f"{name}schedule-z{z}", {**fixed, "model.kind": "vae"},
                            {"train.kl_schedule": list(SCHEDULES), "model.beta": bs, "train.seed": seeds}))
        sweeps.append(Sweep(f"{name}sparse-z{z}", {**fixed, "model.kind": "sparse", "train.kl_schedule": "constant"},
                            {"model.beta": bs, "train.seed": seeds}))
    return sweeps


def check(sweeps: list[Sweep], params_text: str) -> None:
    """Every run of every sweep, as DVC will make it (its own -S parser applied to a copy of
    params.yaml), against the params schema, before anything is queued."""
    from dvc.utils.cli_parse import to_path_overrides
    from dvc.utils.hydra import apply_overrides, get_hydra_sweeps

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "params.yaml"
        for sweep in sweeps:
            for run_overrides in get_hydra_sweeps(to_path_overrides(sweep.set_args())):
                path.write_text(params_text)
                apply_overrides(path, run_overrides["params.yaml"])
                try:
                    load_params(path)
                except ParamsError as err:
                    raise UserError(f"sweep {sweep.name}: {err}") from err


def existing_names(rows: list[dict[str, Any]]) -> set[str]:
    return {r["Experiment"] for r in rows if r.get("Experiment")}


def read_rows() -> list[dict[str, Any]]:
    return aggregate.read_rows(None, all_commits=False)


def run(cmd: list[str], env: dict[str, str]) -> None:
    log.info("$ %s", shlex.join(cmd))
    if subprocess.run([sys.executable, "-m", *cmd], env=env).returncode:
        raise UserError(f"`{' '.join(cmd)}` failed (see its output above)")


def queue_and_run(sweeps: list[Sweep], env: dict[str, str], jobs: int, dry_run: bool) -> None:
    """Queue the sweeps that have no experiments yet, then run the queue to its end."""
    check(sweeps, committed_params())
    have = set() if dry_run else existing_names(read_rows())
    todo = [s for s in sweeps if not any(n.startswith(s.name + "-") for n in have)]
    if len(todo) < len(sweeps):
        log.info("%d of %d sweeps already have experiments; not queued again", len(sweeps) - len(todo), len(sweeps))
    log.info("queueing %d runs in %d sweeps", sum(len(s.runs()) for s in todo), len(todo))
    for sweep in todo:
        print(shlex.join(sweep.command())) if dry_run else run(sweep.command(), env)
    start = ["dvc", "exp", "run", "--run-all", "-j", str(jobs)]
    print(shlex.join(start)) if dry_run else run(start, env)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, choices=sorted(HELD_OUT))
    parser.add_argument("--data-root", type=Path, help="torchvision root holding MNIST/ or "
                        "FashionMNIST/ (default: $VAE_ANOMALY_DATA_ROOT, else data/raw)")
    parser.add_argument("--phase", choices=["grid", "follow-up", "report", "all"], default="all")
    parser.add_argument("--jobs", type=int, default=2, help="queue workers; on a GPU several "
                        "share it (with OMP_NUM_THREADS = cores / jobs)")
    parser.add_argument("--max-train", type=int, default=0, help="CPU reduction: at most this many "
                        "training images per run, a seeded subsample (0 = all)")
    parser.add_argument("--dry-run", action="store_true", help="print the dvc commands, run nothing "
                        "(the follow-up's β are read from the finished phase-1 runs)")
    args = parser.parse_args(argv)
    if args.jobs < 1 or args.max_train < 0:
        raise UserError("--jobs must be at least 1 and --max-train at least 0")
    env = dict(os.environ)
    if args.data_root is not None:
        if not args.data_root.is_dir():
            raise UserError(f"--data-root {args.data_root}: no such folder; give the folder that "
                            f"holds MNIST/ and FashionMNIST/ (e.g. ../shared/datasets)")
        env["VAE_ANOMALY_DATA_ROOT"] = str(args.data_root.resolve())  # queued runs start elsewhere
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // args.jobs)))
    if args.phase in ("grid", "all"):
        queue_and_run(grid_sweeps(args.dataset, args.max_train), env, args.jobs, args.dry_run)
    if args.phase in ("follow-up", "all"):
        if args.dry_run and args.phase == "all":
            print(f"# then, with the β chosen per latent size from the finished runs: "
                  f"python -m scripts.study --dataset {args.dataset} --phase follow-up")
        else:
            betas = chosen_betas(read_rows(), args.dataset)
            log.info("follow-up β per latent size (best detection, best reconstruction): %s", betas)
            queue_and_run(follow_up_sweeps(args.dataset, args.max_train, betas), env, args.jobs, args.dry_run)
    if args.phase in ("report", "all") and not args.dry_run:
        out = Path("reports/study") / args.dataset
        sys.stdout.write(aggregate.aggregate(read_rows(), out, DETECTION, prefix=prefix(args.dataset)))


if __name__ == "__main__":
    run_main(main)
