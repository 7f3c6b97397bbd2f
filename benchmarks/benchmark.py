"""Performance benchmark (issue #6): how far training and scoring are from the compute floor,
how we compare with PyOD's VAE, peak memory of a training stage, and DVC wall times.

    python -m benchmarks.benchmark [--quick] [--data-root DIR] [--threads N] [--out reports/benchmark.json]

Prints a table and writes the measurements as JSON. Everything runs in one go on one machine:

- Matrix rate: the best float32 n x n product rate, measured here (before and after the rest;
  the higher is used). The compute floor of a workload is its matrix-product and convolution
  FLOPs, counted by PyTorch's ``FlopCounterMode`` from the model's layer sizes, at that rate.
  Elementwise work (activations, losses, Adam) is not in the floor, so it is a true lower bound.
- Training: the MLP VAE 784-400-20 (Bernoulli) and the conv VAE, trained by the project's
  ``fit`` on N images with a tenth as many validation images (``fit`` checks them every epoch,
  so their forward pass is in the floor too), batch 128. One epoch's time is
  (t(3 epochs) - t(1 epoch)) / 2 (conv: t(2) - t(1)), each the best of the repeats, after an
  untimed run: setup and warm-up cancel.
- PyOD: ``pyod.models.vae.VAE`` with the same layers (784-400-20-400-784), latent size, batch
  and learning rate, timed the same way in the same process with the same thread count (the
  difference also cancels the scoring pass its ``fit`` ends with): once as PyOD ships it
  (dropout 0.2, per-sample standardisation in its data loader, Adam weight decay 1e-5; the
  target is about this one), once without dropout and standardisation, which ours does not
  have. Its loss is MSE, ours Bernoulli (slightly more elementwise work for us).
- Oversubscription check: the MLP epoch again on one thread. Where that is faster, other work
  holds the cores and every multi-threaded figure of the run is skewed: PyTorch's threads
  wait for each other at every operation, and a descheduled one stalls them all (on the
  2-core machine under load we saw epochs 10-30 times slower on 2 threads than on 1).
  ``--threads N`` sets PyTorch's threads here and, through OMP_NUM_THREADS, in every stage.
- Scoring: ``negative_elbo`` with 100 posterior samples and ``iwae`` with K = 100 over N images,
  through the score stage's ``compute_scores`` with its ``score.batch_size``; floor = N encoder
  passes + N*K decoder passes.
- Peak memory: the real train stage (``python -m stages.train``) of a temporary copy of the
  project on Fashion-MNIST (MLP 784-400-20, Bernoulli), its peak resident set size read from
  ``wait4``. With no local data, the stage trains on random images of Fashion-MNIST's shape and
  split sizes instead, which take the same memory.
- DVC: in a temporary git + DVC copy of the project, a clean ``dvc repro`` on the default params,
  then a second (no-op) one; then four short experiments (different ``train.seed``) run one
  after another with ``dvc exp run``, against four more queued and run by
  ``dvc queue start -j 2``. The queue workers inherit the environment of ``dvc queue start``
  (DVC spawns them from it), which sets OMP_NUM_THREADS=1 so that two workers share two cores
  instead of fighting over them; the sequential runs keep the benchmark's thread count. The
  queue's end is the moment the fourth experiment's git ref appears.

Data: real MNIST images when a local torchvision root is given (``--data-root`` or
$VAE_ANOMALY_DATA_ROOT; the md5-checked loader of ``vae_anomaly.datasets``), else uniform random
pixels of the same shape. The output says which. ``--quick`` shrinks every size for a smoke
run; its figures are not comparable to a full run's.
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

from vae_anomaly import datasets
from vae_anomaly.io import log, run_main, write_json
from vae_anomaly.models import VAE, VAEConfig, build_model
from vae_anomaly.scores import compute_scores
from vae_anomaly.training import fit, seed_everything

ROOT = Path(__file__).resolve().parents[1]
PROJECT_FILES = ("dvc.yaml", "params.yaml", "stages", "vae_anomaly")
IMAGE_SHAPE = [1, 28, 28]
# pytorch/examples vae's MNIST model, and the conv VAE with the project's default channels.
MLP_VAE = VAEConfig(IMAGE_SHAPE, [400], 20, likelihood="bernoulli")
CONV_VAE = VAEConfig(IMAGE_SHAPE, [400], 20, "conv", [32, 64], "bernoulli")
BATCH_SIZE = 128
LEARNING_RATE = 1e-3
SCORE_SAMPLES = 100  # K of iwae, and the posterior samples of negative_elbo
# Fashion-MNIST with the default held_out protocol (one class of ten held out): 54,000 normal
# training images, 10 % of them for validation; 10,000 test images.
FASHION_SPLITS = {"train": 48_600, "val": 5_400, "test": 10_000}
TARGETS = {
    "mlp_epoch_vs_floor": 1.5,
    "pyod_vs_ours": 5.0,
    "iwae_vs_floor": 2.0,
    "fashion_train_peak_rss_mb": 1000.0,
    "dvc_repro_s": 60.0,
    "dvc_repro_noop_s": 5.0,
    "queue_vs_sequential": 0.7,
}


@dataclass(frozen=True)
class Sizes:
    n_train: int  # training images per epoch (validation: a tenth as many)
    n_score: int  # images scored
    matmul_n: int  # side of the square matrices of the rate measurement
    repeats: int  # timings per measurement; the best is kept
    fashion_scale: float  # share of Fashion-MNIST's split sizes (random data only)
    shrink_pipeline: bool  # dvc runs on tiny params, as tests/test_pipeline.py does
    sweep_epochs: int  # train.epochs of each sweep experiment


FULL = Sizes(10_000, 10_000, 2048, 2, 1.0, False, 10)
QUICK = Sizes(1_000, 500, 1024, 1, 0.1, True, 2)


# ---------------------------------------------------------------------------------------------
# Floors: FLOP counts from the model's layers, and the machine's matrix rate
# ---------------------------------------------------------------------------------------------

def flop_count(run: Callable[[], Any]) -> int:
    """FLOPs of the matrix products and convolutions ``run`` executes, forward and backward.

    PyTorch's FlopCounterMode reads the shapes of every matmul and convolution call, including
    those autograd makes; gradients autograd never computes (the input's) are not counted.
    """
    with FlopCounterMode(display=False) as counter:
        run()
    return counter.get_total_flops()


def training_flop_per_sample(model: VAE, batch: int = 8) -> float:
    """FLOPs of one training step (loss forward and backward), per sample."""
    x = torch.rand(batch, *model.config.input_shape)

    def step() -> None:
        recon, kl = model.loss_terms(x)
        (recon + kl).mean().backward()

    flops = flop_count(step)
    model.zero_grad(set_to_none=True)
    return flops / batch


@torch.no_grad()
def forward_flop_per_sample(model: VAE, batch: int = 8) -> float:
    """FLOPs of one loss evaluation without gradients (fit's validation pass), per sample."""
    x = torch.rand(batch, *model.config.input_shape)
    return flop_count(lambda: model.loss_terms(x)) / batch


def epoch_floor_flop(model: VAE, n_train: int, n_val: int) -> float:
    """Matrix FLOPs of one epoch of ``fit``: a training step per sample, a validation pass."""
    return n_train * training_flop_per_sample(model) + n_val * forward_flop_per_sample(model)


@torch.no_grad()
def scoring_floor_flop(model: VAE, n: int, k: int, batch: int = 8) -> float:
    """Matrix FLOPs of scoring ``n`` samples with ``k`` posterior samples each: one encoder
    pass per sample and ``k`` decoder passes."""
    x = torch.rand(batch, *model.config.input_shape)
    z = torch.randn(batch, model.config.latent_dim)
    encoder = flop_count(lambda: model.encode(x)) / batch
    decoder = flop_count(lambda: model.decode(z)) / batch
    return n * (encoder + k * decoder)


def best_seconds(run: Callable[[], Any], repeats: int) -> float:
    """The shortest of ``repeats`` timed runs: on a shared machine the best run is the one
    least disturbed by other work."""
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def matmul_rate(n: int, repeats: int) -> float:
    """The best float32 n x n matrix-product rate, in FLOP/s (2 n^3 FLOP per product)."""
    a, b = torch.rand(n, n), torch.rand(n, n)
    a @ b  # warm-up: thread pool and allocator
    return 2 * n**3 / best_seconds(lambda: a @ b, max(3, repeats))


def epoch_timing(train: Callable[[int], Any], repeats: int, few: int = 1, many: int = 3) -> dict[str, float]:
    """``epoch_s`` = (t(many) - t(few)) / (many - few) for ``train(epochs)``, each the best of
    ``repeats``: what is done once per call (model and data set-up, warm-up, a final scoring
    pass) cancels. Also the whole calls' times, and the first call's, untimed in the difference:
    what a process does once (importing the library; PyTorch's optimizers import
    ``torch._dynamo`` on their first step) would otherwise land in one side only."""
    start = time.perf_counter()
    train(few)
    first = time.perf_counter() - start
    t_few = best_seconds(lambda: train(few), repeats)
    t_many = best_seconds(lambda: train(many), repeats)
    return {"epoch_s": (t_many - t_few) / (many - few), f"fit_{few}_epochs_s": t_few,
            f"fit_{many}_epochs_s": t_many, f"first_fit_{few}_epochs_s": first}


# ---------------------------------------------------------------------------------------------
# Workloads
# ---------------------------------------------------------------------------------------------

def root_source(data_root: str) -> str:
    """Where the torchvision root came from, for reports/benchmark.json: the flag or the
    variable, not the folder, which is a path on one machine only."""
    return "a local torchvision root (" + ("--data-root" if data_root else f"${datasets.DATA_ROOT_ENV}") + ")"


def mnist_like(data_root: str, sizes: Sizes) -> tuple[dict[str, np.ndarray], str]:
    """Train, validation and scoring images, float32 (N, 1, 28, 28) in [0, 1]: MNIST from a
    local torchvision root when one is given, else uniform random pixels; and which it is."""
    n_train, n_val, n_score = sizes.n_train, sizes.n_train // 10, sizes.n_score
    root = data_root or os.environ.get(datasets.DATA_ROOT_ENV, "")
    if root:
        images = datasets.load_torchvision("mnist", root, allow_download=False)
        train = images.train_images
        arrays = {
            "train": train[:n_train],
            "val": train[n_train : n_train + n_val],
            "score": images.test_images[:n_score],
        }
        return arrays, f"MNIST from {root_source(data_root)}"
    rng = np.random.default_rng(0)
    arrays = {
        name: rng.random((n, *IMAGE_SHAPE), dtype=np.float32)
        for name, n in (("train", n_train), ("val", n_val), ("score", n_score))
    }
    return arrays, "random pixels of MNIST's shape (no --data-root or $VAE_ANOMALY_DATA_ROOT)"


def train_params(epochs: int) -> dict[str, Any]:
    """params.yaml's train section for a timed ``fit``: constant KL weight, no early stop."""
    train = yaml.safe_load((ROOT / "params.yaml").read_text())["train"]
    return {
        **train, "seed": 0, "epochs": epochs, "batch_size": BATCH_SIZE, "lr": LEARNING_RATE,
        "kl_schedule": "constant", "patience": epochs + 1, "device": "cpu",
    }


def fit_ours(config: VAEConfig, data: dict[str, np.ndarray], epochs: int) -> None:
    seed_everything(0)
    model = build_model(config)
    fit(model, data["train"], data["val"], 1.0, train_params(epochs), torch.device("cpu"))


def fit_pyod(data: dict[str, np.ndarray], epochs: int, matched: bool) -> None:
    """PyOD's VAE with our layers, latent size, batch and learning rate; otherwise as PyOD
    ships it (dropout 0.2, per-sample standardisation in its data loader), or, ``matched``,
    without those two, which our model does not have."""
    from pyod.models.vae import VAE as PyODVAE  # imported here: pyod takes seconds to import

    hidden, latent = MLP_VAE.hidden_dims, MLP_VAE.latent_dim
    extra = {"dropout_rate": 0.0, "preprocessing": False} if matched else {}
    detector = PyODVAE(
        encoder_neuron_list=hidden, decoder_neuron_list=list(reversed(hidden)),
        latent_dim=latent, batch_size=BATCH_SIZE, epoch_num=epochs, lr=LEARNING_RATE,
        verbose=0, random_state=0, device="cpu", **extra,
    )
    detector.fit(data["train"].reshape(len(data["train"]), -1))


def score_seconds(model: VAE, x: np.ndarray, name: str, batch_size: int, repeats: int) -> float:
    """Best wall time of scoring every row of ``x`` with the score ``name`` through the score
    stage's ``compute_scores``, K = 100 samples per image."""
    return best_seconds(
        lambda: compute_scores(model, x, {
            "names": [name], "batch_size": batch_size, "elbo_samples": SCORE_SAMPLES,
            "iwae_samples": SCORE_SAMPLES, "complexity_codec": "jpeg2000", "knn_neighbors": 5,
            "regret_steps": 20, "regret_lr": 0.1, "combine": [],
        }, seed=0),
        repeats,
    )


# ---------------------------------------------------------------------------------------------
# Subprocesses: a temporary project, peak memory, DVC
# ---------------------------------------------------------------------------------------------

def tool_env(**extra: str) -> dict[str, str]:
    """This environment with our interpreter's folder first on PATH (``python`` in dvc.yaml)."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    return {**os.environ, "PATH": path, "DVC_NO_ANALYTICS": "1", **extra}


def run_tool(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(cmd, cwd=cwd, env=env or tool_env(), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` failed in {cwd}:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def dvc_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "dvc", *args]


def set_params(params: dict[str, Any], updates: dict[str, Any]) -> dict[str, Any]:
    """Set dotted keys (``"train.epochs"``) in the nested params dict, in place."""
    for dotted, value in updates.items():
        *sections, key = dotted.split(".")
        node = params
        for section in sections:
            node = node[section]
        if key not in node:
            raise KeyError(f"params.yaml has no key {dotted!r}")
        node[key] = value
    return params


def shrunk_pipeline() -> dict[str, Any]:
    """Tiny default-pipeline params for --quick (as tests/test_pipeline.py shrinks them)."""
    return {
        "data.synthetic.n_train": 300, "data.synthetic.n_val": 100, "data.synthetic.n_test": 200,
        "model.hidden_dims": [16, 8], "model.latent_dim": 2,
        "train.epochs": 3, "train.kl_warmup_epochs": 1, "score.elbo_samples": 2,
    }


def project_copy(dest: Path, updates: dict[str, Any]) -> Path:
    """A git + DVC repository at ``dest`` holding the project with ``updates`` to its params,
    committed."""
    dest.mkdir(parents=True)
    for name in PROJECT_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, dest / name)
    params = set_params(yaml.safe_load((dest / "params.yaml").read_text()), updates)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run_tool(["git", "init", "-q"], dest)
    run_tool(["git", "config", "user.email", "benchmark@example.com"], dest)
    run_tool(["git", "config", "user.name", "benchmark"], dest)
    run_tool(dvc_cmd("init", "-q"), dest)
    run_tool(dvc_cmd("config", "core.analytics", "false"), dest)
    commit(dest, "project")
    return dest


def commit(project: Path, message: str) -> None:
    run_tool(["git", "add", "-A"], project)
    run_tool(["git", "commit", "-qm", message], project)


# Runs the command given in argv[2:] and writes its peak RSS (KiB) to the file argv[1]. A child
# forked from a large process inherits that process's high-water mark across exec (Linux keeps
# the larger of the old and new address space's), so the stage is started from this small
# interpreter rather than from the benchmark, and ``wait4`` reports that one child alone.
PEAK_RSS_LAUNCHER = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
open(sys.argv[1], "w").write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def peak_rss_bytes(cmd: list[str], cwd: Path) -> int:
    """Run ``cmd`` in ``cwd`` and return its peak resident set size in bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "maxrss"
        run_tool([sys.executable, "-c", PEAK_RSS_LAUNCHER, str(report), *cmd], cwd)
        return int(report.read_text()) * 1024  # Linux reports KiB


def fashion_train_peak_rss(workdir: Path, data_root: str, sizes: Sizes) -> tuple[int, str]:
    """Peak RSS of the train stage on Fashion-MNIST (MLP 784-400-20, 2 epochs, constant KL
    weight so the best weights are copied too), and which data it trained on."""
    updates = {
        "model.architecture": "mlp", "model.hidden_dims": MLP_VAE.hidden_dims,
        "model.latent_dim": MLP_VAE.latent_dim, "model.likelihood": "bernoulli",
        "train.epochs": 2, "train.kl_schedule": "constant", "train.device": "cpu",
    }
    root = data_root or os.environ.get(datasets.DATA_ROOT_ENV, "")
    if root:
        updates.update({"data.source": "fashion_mnist", "data.root": str(Path(root).resolve()),
                        "data.download": False})
    project = project_copy(workdir / "fashion", updates)
    if root:
        run_tool([sys.executable, "-m", "stages.prepare"], project)
        source = f"Fashion-MNIST from {root_source(data_root)}"
    else:
        rng = np.random.default_rng(0)
        arrays = {
            name: rng.random((int(n * sizes.fashion_scale), *IMAGE_SHAPE), dtype=np.float32)
            for name, n in FASHION_SPLITS.items()
        }
        (project / "data/prepared").mkdir(parents=True)
        with open(project / "data/prepared/features.npz", "wb") as fh:
            np.savez(fh, **arrays)
        source = "random pixels of Fashion-MNIST's shape and split sizes"
    return peak_rss_bytes([sys.executable, "-m", "stages.train"], project), source


def timed_tool(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    run_tool(cmd, cwd, env)
    return time.perf_counter() - start


def experiment_refs(project: Path) -> set[str]:
    """Git refs of finished DVC experiments (cheap to poll, unlike `dvc queue status`)."""
    out = run_tool(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], project)
    return set(out.split())


def wait_for_experiments(project: Path, known: set[str], count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while len(experiment_refs(project) - known) < count:
        if time.monotonic() > deadline:
            status = subprocess.run(dvc_cmd("queue", "status"), cwd=project, env=tool_env(),
                                    capture_output=True, text=True)
            raise RuntimeError(f"the queue did not finish {count} experiments in {timeout:.0f} s:\n"
                               f"{status.stdout}{status.stderr}")
        time.sleep(0.5)


def stop_queue_workers(project: Path, timeout: float = 120.0) -> None:
    """Ask the queue's workers to stop and wait until their processes are gone (they are
    detached, so we read their pids from the files DVC's task runner keeps)."""
    run_tool(dvc_cmd("queue", "stop"), project)
    pidfiles = list((project / ".dvc/tmp/exps/celery").glob("dvc-exp-worker-*.pid"))
    pids = [int(f.read_text()) for f in pidfiles if f.read_text().strip().isdigit()]
    deadline = time.monotonic() + timeout
    while any(is_queue_worker(pid) for pid in pids):
        if time.monotonic() > deadline:
            log.warning("queue workers %s of %s still running after %.0f s", pids, project, timeout)
            return
        time.sleep(0.5)


def is_queue_worker(pid: int) -> bool:
    try:
        return b"queue-worker" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def dvc_timings(workdir: Path, sizes: Sizes) -> dict[str, Any]:
    """Clean and no-op `dvc repro`, then the sweep: four experiments in sequence vs queued."""
    base = shrunk_pipeline() if sizes.shrink_pipeline else {}
    project = project_copy(workdir / "pipeline", base)
    repro = timed_tool(dvc_cmd("repro"), project)
    noop = timed_tool(dvc_cmd("repro"), project)
    commit(project, "pipeline run")  # dvc.lock, so experiments restore prepare from the cache

    def experiment(seed: int) -> list[str]:
        # A one-epoch warm-up, so the KL weight reaches beta within the few epochs (params refuse
        # a schedule that never does); the work per epoch is the same.
        return ["-S", f"train.seed={seed}", "-S", f"train.epochs={sizes.sweep_epochs}",
                "-S", "train.kl_warmup_epochs=1"]

    # Different seeds in the two halves: the same params again would be a run-cache hit.
    sequential_seeds, queued_seeds = [1, 2, 3, 4], [5, 6, 7, 8]
    start = time.perf_counter()
    for seed in sequential_seeds:
        run_tool(dvc_cmd("exp", "run", *experiment(seed)), project)
    sequential = time.perf_counter() - start

    for seed in queued_seeds:
        run_tool(dvc_cmd("exp", "run", "--queue", *experiment(seed)), project)
    known = experiment_refs(project)
    start = time.perf_counter()
    run_tool(dvc_cmd("queue", "start", "-j", "2"), project, tool_env(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1"))
    try:
        wait_for_experiments(project, known, len(queued_seeds), timeout=max(120.0, 4 * sequential))
        queued = time.perf_counter() - start
    finally:
        stop_queue_workers(project)
    return {
        "repro_s": repro,
        "repro_noop_s": noop,
        "sweep": {
            "experiments": len(queued_seeds),
            "overrides": f"train.seed=<seed>, train.epochs={sizes.sweep_epochs}, train.kl_warmup_epochs=1",
            "sequential_s": sequential,
            "queue_j2_s": queued,
            "queue_threads_per_worker": 1,
        },
        "params": "shrunk (--quick)" if sizes.shrink_pipeline else "default params.yaml",
    }


# ---------------------------------------------------------------------------------------------
# The run and its report
# ---------------------------------------------------------------------------------------------

def machine() -> dict[str, Any]:
    cpu = platform.processor()
    cpuinfo = Path("/proc/cpuinfo")
    for line in cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []:
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {
        "cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__, "python": platform.python_version(),
    }


def training_section(data: dict[str, np.ndarray], sizes: Sizes) -> dict[str, Any]:
    n_train, n_val = len(data["train"]), len(data["val"])
    training: dict[str, Any] = {}
    for name, config in (("mlp_784_400_20", MLP_VAE), ("conv", CONV_VAE)):
        log.info("training epoch: %s", name)
        many = 3 if name.startswith("mlp") else 2  # a conv epoch is ten times longer
        training[name] = {
            **epoch_timing(lambda e: fit_ours(config, data, e), sizes.repeats, many=many),
            "n_train": n_train, "n_val": n_val,
            "floor_flop": epoch_floor_flop(build_model(config), n_train, n_val),
        }
    # The same epoch on one thread: faster than on all of them means other work occupies the
    # cores, and every thread-parallel figure of this run is then skewed (threads wait for
    # each other at every operation).
    threads = torch.get_num_threads()
    if threads > 1:
        log.info("training epoch: mlp_784_400_20 on 1 thread")
        torch.set_num_threads(1)
        try:
            one = epoch_timing(lambda e: fit_ours(MLP_VAE, data, e), sizes.repeats)["epoch_s"]
        finally:
            torch.set_num_threads(threads)
        training["mlp_784_400_20"]["epoch_s_1_thread"] = one
    for name, matched in (("pyod_vae", False), ("pyod_vae_matched", True)):
        log.info("training epoch: %s", name)
        training[name] = {**epoch_timing(lambda e: fit_pyod(data, e, matched), sizes.repeats),
                          "n_train": n_train}
    return training


def scoring_section(data: dict[str, np.ndarray], sizes: Sizes) -> dict[str, Any]:
    model = build_model(MLP_VAE)  # untrained: the cost of scoring does not depend on the weights
    batch = yaml.safe_load((ROOT / "params.yaml").read_text())["score"]["batch_size"]
    scoring = {}
    for name in ("negative_elbo", "iwae"):
        log.info("scoring: %s, K = %d", name, SCORE_SAMPLES)
        scoring[name] = {
            "k": SCORE_SAMPLES, "n": len(data["score"]), "batch_size": batch,
            "floor_flop": scoring_floor_flop(model, len(data["score"]), SCORE_SAMPLES),
            "seconds": score_seconds(model, data["score"], name, batch, sizes.repeats),
        }
    return scoring


def run_benchmark(sizes: Sizes, data_root: str, workdir: Path) -> dict[str, Any]:
    """Every measurement; a section whose subprocess fails is reported under ``errors`` and
    the others still run."""
    result: dict[str, Any] = {"machine": machine(), "sizes": asdict(sizes), "errors": {}}
    result["load_average_start"] = os.getloadavg()
    log.info("matrix rate (float32 %d x %d)", sizes.matmul_n, sizes.matmul_n)
    rate_start = matmul_rate(sizes.matmul_n, sizes.repeats + 2)
    data, result["data"] = mnist_like(data_root, sizes)

    def fashion() -> dict[str, Any]:
        log.info("peak memory: Fashion-MNIST train stage")
        rss, source = fashion_train_peak_rss(workdir, data_root, sizes)
        return {"peak_rss_mb": rss / 1e6, "data": source}

    def dvc() -> dict[str, Any]:
        log.info("dvc repro, no-op dvc repro, sweep of 4 experiments (sequential, then queued)")
        return dvc_timings(workdir, sizes)

    sections: dict[str, Callable[[], dict[str, Any]]] = {
        "training": lambda: training_section(data, sizes),
        "scoring": lambda: scoring_section(data, sizes),
        "fashion_train": fashion,
        "dvc": dvc,
    }
    for name, measure in sections.items():
        try:
            result[name] = measure()
        except RuntimeError as err:  # a failed subprocess: its command and output
            log.error("%s not measured: %s", name, err)
            result["errors"][name] = str(err)[-4000:]

    rate_end = matmul_rate(sizes.matmul_n, sizes.repeats + 2)
    result["load_average_end"] = os.getloadavg()
    result["matmul_gflops"] = {"start": rate_start / 1e9, "end": rate_end / 1e9,
                               "used": max(rate_start, rate_end) / 1e9}
    add_ratios(result)
    return result


def add_ratios(result: dict[str, Any]) -> None:
    """Floors in seconds and every ratio the targets speak of, added to ``result``."""
    rate = result["matmul_gflops"]["used"] * 1e9
    if "training" in result:
        training = result["training"]
        for name in ("mlp_784_400_20", "conv"):
            entry = training[name]
            entry["floor_s"] = entry["floor_flop"] / rate
            entry["vs_floor"] = entry["epoch_s"] / entry["floor_s"]
        for name in ("pyod_vae", "pyod_vae_matched"):
            training[name]["vs_ours"] = training[name]["epoch_s"] / training["mlp_784_400_20"]["epoch_s"]
    for entry in result.get("scoring", {}).values():
        entry["floor_s"] = entry["floor_flop"] / rate
        entry["vs_floor"] = entry["seconds"] / entry["floor_s"]
    if "dvc" in result:
        sweep = result["dvc"]["sweep"]
        sweep["queue_vs_sequential"] = sweep["queue_j2_s"] / sweep["sequential_s"]


def target(key: str, value: float) -> str:
    """``value`` against its target, e.g. "<= 1.5x: met"."""
    goal = TARGETS[key]
    if key == "pyod_vs_ours":
        return f">= {goal:g}x: {'met' if value >= goal else 'missed'}"
    unit = {"fashion_train_peak_rss_mb": " MB", "dvc_repro_s": " s", "dvc_repro_noop_s": " s"}
    if key in unit:
        return f"< {goal:g}{unit[key]}: {'met' if value < goal else 'missed'}"
    return f"<= {goal:g}x: {'met' if value <= goal else 'missed'}"


def table_rows(result: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """(measurement, measured, reference, ratio, target and whether it is met), one per row."""
    rate = result["matmul_gflops"]
    rows = [("matrix rate (float32, best of start/end)", f"{rate['used']:.0f} GFLOP/s",
             f"start {rate['start']:.0f}, end {rate['end']:.0f}", "", "")]
    if "training" in result:
        mlp, conv, pyod, matched = (result["training"][k] for k in
                                    ("mlp_784_400_20", "conv", "pyod_vae", "pyod_vae_matched"))
        rows += [
            (f"MLP VAE 784-400-20 epoch ({mlp['n_train']:,} + {mlp['n_val']:,} val)",
             f"{mlp['epoch_s']:.2f} s", f"floor {mlp['floor_s']:.2f} s", f"{mlp['vs_floor']:.2f}x",
             target("mlp_epoch_vs_floor", mlp["vs_floor"])),
        ]
        if "epoch_s_1_thread" in mlp:
            one = mlp["epoch_s_1_thread"]
            rows.append(("MLP VAE epoch on 1 thread (oversubscription check)", f"{one:.2f} s",
                         f"{result['machine']['torch_threads']} threads: {mlp['epoch_s']:.2f} s", "",
                         "cores busy: figures skewed" if one < mlp["epoch_s"] else ""))
        rows += [
            ("conv VAE epoch", f"{conv['epoch_s']:.2f} s", f"floor {conv['floor_s']:.2f} s",
             f"{conv['vs_floor']:.2f}x", ""),
            ("PyOD VAE epoch (same layers, batch; PyOD's defaults)", f"{pyod['epoch_s']:.2f} s",
             f"ours {mlp['epoch_s']:.2f} s; its whole 1-epoch fit {pyod['fit_1_epochs_s']:.2f} s",
             f"{pyod['vs_ours']:.1f}x ours",
             target("pyod_vs_ours", pyod["vs_ours"])),
            ("PyOD VAE epoch, no dropout, no standardisation", f"{matched['epoch_s']:.2f} s",
             f"ours {mlp['epoch_s']:.2f} s", f"{matched['vs_ours']:.1f}x ours", ""),
        ]
    for name, entry in result.get("scoring", {}).items():
        rows.append((f"{name}, K = {entry['k']}, {entry['n']:,} images", f"{entry['seconds']:.2f} s",
                     f"floor {entry['floor_s']:.2f} s", f"{entry['vs_floor']:.2f}x",
                     target("iwae_vs_floor", entry["vs_floor"]) if name == "iwae" else ""))
    if "fashion_train" in result:
        rss = result["fashion_train"]["peak_rss_mb"]
        rows.append(("Fashion-MNIST train stage, peak RSS", f"{rss:.0f} MB", "", "",
                     target("fashion_train_peak_rss_mb", rss)))
    if "dvc" in result:
        d = result["dvc"]
        sweep = d["sweep"]
        rows += [
            (f"dvc repro, clean ({d['params']})", f"{d['repro_s']:.1f} s", "", "",
             target("dvc_repro_s", d["repro_s"])),
            ("dvc repro, no-op", f"{d['repro_noop_s']:.1f} s", "", "",
             target("dvc_repro_noop_s", d["repro_noop_s"])),
            (f"{sweep['experiments']} experiments, dvc queue start -j 2", f"{sweep['queue_j2_s']:.1f} s",
             f"sequential {sweep['sequential_s']:.1f} s", f"{sweep['queue_vs_sequential']:.2f}x",
             target("queue_vs_sequential", sweep["queue_vs_sequential"])),
        ]
    rows += [(name, "failed", "see `errors` in the JSON", "", "") for name in result["errors"]]
    return rows


def markdown_table(rows: list[tuple[str, ...]]) -> str:
    header = ("measurement", "measured", "reference", "ratio", "target")
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run, not figures")
    parser.add_argument("--data-root", default="", help="torchvision root with MNIST/ and "
                        "FashionMNIST/ raw files (default: $VAE_ANOMALY_DATA_ROOT, else random data)")
    parser.add_argument("--threads", type=int, default=0, help="threads of PyTorch here and in "
                        "every stage it runs, except queue workers (1 each); default: PyTorch's")
    parser.add_argument("--out", default="reports/benchmark.json", help="JSON written here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s: %(message)s")
    if args.threads:  # stages read OMP_NUM_THREADS at start-up
        torch.set_num_threads(args.threads)
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.threads)
    sizes = QUICK if args.quick else FULL
    with tempfile.TemporaryDirectory(prefix="vae-benchmark-") as tmp:
        result = run_benchmark(sizes, args.data_root, Path(tmp))
    result["quick"] = args.quick
    rows = table_rows(result)
    result["table"] = [dict(zip(("measurement", "measured", "reference", "ratio", "target"), r))
                       for r in rows]
    write_json(args.out, result)
    load = ", ".join(f"{x:.1f}" for x in result["load_average_start"])
    print(f"\ndata: {result['data']}; Fashion-MNIST: {result['fashion_train']['data']}")
    print(f"machine: {result['machine']['cpu']}, {result['machine']['cores']} cores, "
          f"{result['machine']['torch_threads']} torch threads; load average at start {load}")
    print(markdown_table(rows))
    if result["errors"]:
        sys.exit(1)


if __name__ == "__main__":
    run_main(main)
