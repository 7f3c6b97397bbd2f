"""The pipeline as a user runs it, in throw-away copies of the project (benchmarks/project.py):
peak memory of a training stage, and DVC wall times.

- Peak memory: the real train stage (``python -m stages.train``) of a temporary copy of the
  project on Fashion-MNIST (MLP 784-400-20, Bernoulli), its peak resident set size read from
  ``wait4``. With no local data, the stage trains on random images of Fashion-MNIST's shape and
  split sizes instead, which take the same memory.
- DVC: in a temporary git + DVC copy of the project, a clean ``dvc repro`` on the default params,
  then a second (no-op) one. Then each stage's command of dvc.yaml once more on its own, timed
  as a whole process (interpreter start and imports included), the stages that run PyTorch
  once more on one thread, ``python -c "import torch"`` and what ``torch._dynamo`` adds to it
  (best of 3 each): where a clean repro's time goes, and how much of it is start-up. Then four short
  experiments (different ``train.seed``) run one after another with ``dvc exp run``, against
  four more queued and run by ``dvc queue start -j 2``. The queue workers inherit the
  environment of ``dvc queue start`` (DVC spawns them from it), which sets OMP_NUM_THREADS=1 so
  that two workers share two cores instead of fighting over them; the sequential runs keep the
  benchmark's thread count. The queue's end is the moment the fourth experiment's git ref
  appears.
"""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from benchmarks.floors import best_seconds
from benchmarks.project import (
    commit,
    dvc_cmd,
    experiment_refs,
    project_copy,
    run_tool,
    stop_queue_workers,
    tool_env,
    wait_for_experiments,
)
from benchmarks.workloads import IMAGE_SHAPE, MLP_VAE, Sizes, root_source
from vae_anomaly.data import images as image_sources

# Fashion-MNIST with the default held_out protocol (one class of ten held out): 54,000 normal
# training images, 10 % of them for validation; 10,000 test images.
FASHION_SPLITS = {"train": 48_600, "val": 5_400, "test": 10_000}


def shrunk_pipeline() -> dict[str, Any]:
    """Tiny default-pipeline params for --quick (as tests/test_pipeline.py shrinks them)."""
    return {
        "data.synthetic.n_train": 300, "data.synthetic.n_val": 100, "data.synthetic.n_test": 200,
        "model.hidden_dims": [16, 8], "model.latent_dim": 2,
        "train.epochs": 3, "train.kl_warmup_epochs": 1, "score.elbo_samples": 2,
    }


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
    root = data_root or os.environ.get(image_sources.DATA_ROOT_ENV, "")
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
    """Wall time of ``run_tool(cmd, cwd, env)``."""
    start = time.perf_counter()
    run_tool(cmd, cwd, env)
    return time.perf_counter() - start


def stage_commands(project: Path) -> dict[str, list[str]]:
    """Each stage's command of ``project``'s dvc.yaml, in file order, ``python`` as this
    interpreter (ours, as on tool_env's PATH)."""
    stages = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    commands = {}
    for name, stage in stages.items():
        cmd = shlex.split(stage["cmd"])
        commands[name] = [sys.executable, *cmd[1:]] if cmd[0] == "python" else cmd
    return commands


def stage_timings(project: Path, only: tuple[str, ...] = (), env: dict[str, str] | None = None) -> dict[str, float]:
    """Each stage's command of ``project``'s dvc.yaml (or those in ``only``), in file order,
    run once in ``project`` (after a repro: its inputs are there) with ``env``, timed as a
    whole process."""
    return {name: timed_tool(cmd, project, env) for name, cmd in stage_commands(project).items()
            if not only or name in only}


def top_level_import_seconds(importtime: str) -> float:
    """The seconds of a process's imports from its ``python -X importtime`` output: the
    cumulative times of the top-level imports (nested ones are counted inside them)."""
    total = 0
    for line in importtime.splitlines():
        # "import time: self [us] | cumulative | name", a nested name indented two more spaces
        fields = line.removeprefix("import time:").split("|")
        if line.startswith("import time:") and len(fields) == 3 and fields[1].strip().isdigit() \
                and not fields[2].startswith("  "):
            total += int(fields[1])
    return total / 1e6


def stage_import_seconds(project: Path) -> dict[str, float]:
    """Each Python stage of ``project``'s dvc.yaml run once more under ``python -X importtime``:
    the seconds of its imports, those of the processes it spawns included (the baselines'
    workers import in parallel, so theirs add up to more than the wall time they cost)."""
    seconds = {}
    for name, cmd in stage_commands(project).items():
        if cmd[0] == sys.executable:
            done = subprocess.run([sys.executable, "-X", "importtime", *cmd[1:]], cwd=project, env=tool_env(),
                                  capture_output=True, text=True, check=True)
            seconds[name] = top_level_import_seconds(done.stderr)
    return seconds


def import_seconds(cwd: Path, modules: str) -> float:
    """Best of 3 of a fresh interpreter that imports ``modules`` ("torch", "torch,
    torch._dynamo") and exits: what a stage pays before its work."""
    return best_seconds(lambda: run_tool([sys.executable, "-c", f"import {modules}"], cwd), 3)


# The stages that run PyTorch. On the default tables every operation is small; timed again on
# one thread, they say what the second thread's synchronisation costs there.
TORCH_STAGES = ("train", "score")  # the detector stage packages files: no torch


def dvc_timings(workdir: Path, sizes: Sizes) -> dict[str, Any]:
    """Clean and no-op `dvc repro`, each stage alone, then the sweep: four experiments in
    sequence vs queued."""
    base = shrunk_pipeline() if sizes.shrink_pipeline else {}
    project = project_copy(workdir / "pipeline", base)
    repro = timed_tool(dvc_cmd("repro"), project)
    noop = timed_tool(dvc_cmd("repro"), project)
    # Every stage again in the same copy: what the first run paid once (compiling the project's
    # .py files, DVC's first hashing of its inputs) is not in it.
    forced = timed_tool(dvc_cmd("repro", "-f"), project)
    stages = stage_timings(project)  # rewrites the same outputs: the stages are deterministic
    imports = stage_import_seconds(project)
    one_thread = stage_timings(project, TORCH_STAGES, tool_env(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1"))
    import_torch = import_seconds(project, "torch")
    # What constructing a torch.optim optimizer would add (vae_anomaly/optim.py avoids it).
    import_dynamo = import_seconds(project, "torch, torch._dynamo") - import_torch
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
        "repro_forced_s": forced,
        "stages_s": stages,
        "stages_imports_s": imports,
        "stages_1_thread_s": one_thread,
        "import_torch_s": import_torch,
        "import_dynamo_s": import_dynamo,
        "sweep": {
            "experiments": len(queued_seeds),
            "overrides": f"train.seed=<seed>, train.epochs={sizes.sweep_epochs}, train.kl_warmup_epochs=1",
            "sequential_s": sequential,
            "queue_j2_s": queued,
            "queue_threads_per_worker": 1,
        },
        "params": "shrunk (--quick)" if sizes.shrink_pipeline else "default params.yaml",
    }
