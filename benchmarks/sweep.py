"""Wall time of one sweep three ways on this machine: as Ray tasks (scripts/sweep.py) on a local
cluster, through DVC's queue (`dvc queue start -j 2`), and one experiment after another.

    python -m benchmarks.sweep [--experiments 8] [--epochs 10] [--out reports/sweep_benchmark.json]

A temporary git + DVC copy of the project (benchmarks.project.project_copy), on small
synthetic data with baselines off (--rows training rows, --epochs), is reproduced, committed
and pushed to a bare git remote and a DVC remote beside it, as before a real sweep. Then the
same sweep (`-S train.seed=<N values>`) runs:

- on Ray: a local cluster of two worker nodes of one CPU each (benchmarks/ray_cluster.py; its
  start-up is reported apart, a cluster usually runs already), timed from the start of
  `python -m scripts.sweep` to its end, so the clones, pulls, pushes and the final
  `dvc exp pull` are in;
- through DVC's queue: `dvc exp run --queue` of the same -S argument, then
  `dvc queue start -j 2` with OMP_NUM_THREADS=1 (two workers on two cores), timed until the
  last experiment's git ref appears;
- one by one: `dvc exp run -S train.seed=N`, each after the other, with PyTorch's default
  threads.

Each way has its own seeds (the same params again would be a run-cache hit), so its runs
train the same models on the same data. The load average at start and end is recorded:
other jobs on the machine skew every figure.
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.benchmark import machine
from benchmarks.pipeline_timings import shrunk_pipeline
from benchmarks.project import (
    ROOT,
    commit,
    dvc_cmd,
    experiment_refs,
    project_copy,
    run_tool,
    stop_queue_workers,
    tool_env,
    wait_for_experiments,
)
from benchmarks.ray_cluster import LocalRayCluster
from vae_anomaly.io import write_json

log = logging.getLogger(__name__)


def pushed_project(workdir: Path, rows: int, epochs: int) -> Path:
    """The project with scripts/ (the sweep's driver), reproduced and pushed to a bare git
    remote and a DVC remote in ``workdir``."""
    updates = {**shrunk_pipeline(), "data.synthetic.n_train": rows, "train.epochs": epochs,
               "baselines.names": []}
    project = project_copy(workdir / "project", updates)
    shutil.copytree(ROOT / "scripts", project / "scripts", ignore=shutil.ignore_patterns("__pycache__"))
    run_tool(["git", "init", "-q", "--bare", str(workdir / "project.git")], workdir)
    run_tool(["git", "remote", "add", "origin", str(workdir / "project.git")], project)
    run_tool(dvc_cmd("remote", "add", "-d", "storage", str(workdir / "dvc-remote")), project)
    run_tool(dvc_cmd("repro"), project)
    commit(project, "run, and the remotes")
    run_tool(["git", "push", "-q", "origin", "HEAD:refs/heads/main"], project)
    run_tool(dvc_cmd("push"), project)
    return project


def seeds(first: int, n: int) -> str:
    return f"train.seed={','.join(str(s) for s in range(first, first + n))}"


def timed(cmd: list[str], project: Path, env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    run_tool(cmd, project, env)
    return time.perf_counter() - start


def ray_sweep(project: Path, n: int) -> dict[str, float]:
    start = time.perf_counter()
    with LocalRayCluster(workers=2, cpus_per_worker=1) as cluster:
        startup = time.perf_counter() - start
        sweep = [sys.executable, "-m", "scripts.sweep", "--address", cluster.address, "-S", seeds(1000, n)]
        seconds = timed(sweep, project)
    return {"seconds": seconds, "cluster_start_s": startup}


def queue_sweep(project: Path, n: int, timeout: float) -> float:
    run_tool(dvc_cmd("exp", "run", "--queue", "-S", seeds(2000, n)), project)
    known = experiment_refs(project)
    start = time.perf_counter()
    run_tool(dvc_cmd("queue", "start", "-j", "2"), project, tool_env(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1"))
    try:
        wait_for_experiments(project, known, n, timeout)
        return time.perf_counter() - start
    finally:
        stop_queue_workers(project)


def sequential_sweep(project: Path, n: int) -> float:
    start = time.perf_counter()
    for seed in range(3000, 3000 + n):
        run_tool(dvc_cmd("exp", "run", "-S", f"train.seed={seed}"), project)
    return time.perf_counter() - start


def run_benchmark(n: int, rows: int, epochs: int) -> dict[str, Any]:
    result: dict[str, Any] = {"machine": machine(), "experiments": n, "rows": rows, "epochs": epochs,
                              "load_average_start": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="vae-sweep-benchmark-") as tmp:
        project = pushed_project(Path(tmp), rows, epochs)
        log.info("%d experiments on Ray (local cluster, 2 workers x 1 CPU)", n)
        result["ray"] = ray_sweep(project, n)
        log.info("%d experiments through dvc queue start -j 2", n)
        result["queue_j2_s"] = queue_sweep(project, n, timeout=20 * result["ray"]["seconds"])
        log.info("%d experiments one by one", n)
        result["sequential_s"] = sequential_sweep(project, n)
    result["load_average_end"] = os.getloadavg()
    return result


def table(result: dict[str, Any]) -> str:
    sequential = result["sequential_s"]
    rows = [
        ("Ray, local cluster, 2 workers x 1 CPU (python -m scripts.sweep)", result["ray"]["seconds"]),
        ("dvc queue start -j 2 (1 thread each)", result["queue_j2_s"]),
        ("dvc exp run, one after another", sequential),
    ]
    lines = [f"| {result['experiments']} experiments | wall time | vs one by one |", "| --- | --- | --- |"]
    lines += [f"| {name} | {s:.0f} s | {s / sequential:.2f}x |" for name, s in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiments", type=int, default=8, help="experiments per way (default 8)")
    parser.add_argument("--rows", type=int, default=2000, help="synthetic training rows (default 2000)")
    parser.add_argument("--epochs", type=int, default=10, help="train.epochs (default 10)")
    parser.add_argument("--out", default="reports/sweep_benchmark.json", help="JSON written here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s: %(message)s")
    result = run_benchmark(args.experiments, args.rows, args.epochs)
    result["table"] = table(result)
    write_json(args.out, result)
    load = ", ".join(f"{x:.1f}" for x in result["load_average_start"])
    end = ", ".join(f"{x:.1f}" for x in result["load_average_end"])
    print(f"\nmachine: {result['machine']['cpu']}, {result['machine']['cores']} cores; load average "
          f"at start {load}, at end {end}; Ray cluster start-up {result['ray']['cluster_start_s']:.0f} s "
          f"(not in its time)")
    print(result["table"])


if __name__ == "__main__":
    main()
