"""Performance benchmark: how far training and scoring are from the compute floor,
how we compare with PyOD's VAE, peak memory of a training stage, and DVC wall times.

    python -m benchmarks.benchmark [--quick] [--data-root DIR] [--threads N] [--out reports/benchmark.json]

Prints a table (measured, reference, ratio, and the target where one is set, met or
missed) and writes the measurements as JSON. Everything runs in one go on one machine; each
part is described in the module that measures it:

- benchmarks/floors.py: the float32 matrix rate (measured at the start and the end; the higher
  is used) and the FLOP counts that make a workload's compute floor.
- benchmarks/workloads.py: training epochs of the MLP and conv VAEs against their floors and
  against PyOD's VAE (reference rows, no target), the oversubscription check (the MLP epoch on
  one thread), scoring with K = 100 against its floor, and the whole-process time to a scored
  detector, ours against PyOD's, with the ROC-AUC each reaches.
- benchmarks/pipeline_timings.py: peak memory of the Fashion-MNIST train stage; clean and
  no-op `dvc repro`, each stage alone and the cost of importing torch; four experiments in
  sequence against `dvc queue start -j 2`.
- The suite's time as its last run recorded it (reports/suite/suite.json, written by
  ``python -m benchmarks.suite``): task-seconds in all and per family; not measured here.

``--threads N`` sets PyTorch's threads here and, through OMP_NUM_THREADS, in every stage and
subprocess (queue workers keep one each). Data: real MNIST and Fashion-MNIST when a local
torchvision root is given (``--data-root`` or $VAE_ANOMALY_DATA_ROOT), else random pixels of
the same shapes; the output says which. ``--quick`` shrinks every size for a smoke run; its
figures are not comparable to a full run's, nor to the targets.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from tabulate import tabulate

from benchmarks.floors import PRODUCT_OPS, matmul_rate
from benchmarks.pipeline_timings import dvc_timings, fashion_train_peak_rss
from benchmarks.project import ROOT
from benchmarks.suite import compute_seconds
from benchmarks.workloads import (
    FULL,
    QUICK,
    Sizes,
    gpu_section,
    mnist_like,
    scoring_section,
    time_to_detector,
    training_section,
)
from vae_anomaly.cli import run_main
from vae_anomaly.io import write_json

log = logging.getLogger(__name__)

# The targets (docs/performance.md). dvc_repro_s: a clean `dvc repro` of the default params on 2 idle cores.
# PyOD's epoch has none: "5x faster than PyOD per epoch" is not possible (the same products).
TARGETS = {
    "mlp_epoch_vs_floor": 1.5,
    "conv_epoch_vs_floor": 1.3,
    "iwae_vs_floor": 2.0,
    "dvc_repro_s": 25.0,
    "dvc_repro_noop_s": 5.0,
    "fashion_train_peak_rss_mb": 1000.0,
    "queue_vs_sequential": 0.7,
}
# Targets in units rather than ratios: met when below.
UNITS = {"fashion_train_peak_rss_mb": "MB", "dvc_repro_s": "s", "dvc_repro_noop_s": "s"}
SUITE_JSON = "reports/suite/suite.json"
HEADER = ("measurement", "measured", "reference", "ratio", "target")

Row = tuple[str, str, str, str, str]


def machine() -> dict[str, Any]:
    """The CPU, its cores and PyTorch's threads: the figures mean little without them."""
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


def suite_section(path: Path) -> dict[str, Any]:
    """The detection suite's compute time as its run recorded it: training, scoring and
    baselines of every task and seed (benchmarks.suite.compute_seconds; a seed read from the
    suite's cache keeps the time it first took), in all and per family (the task name's prefix
    before "/"). The file's top-level "seconds" is the wall time of its last run per task,
    cached seeds included, so it is not used."""
    source = f"{SUITE_JSON} (python -m benchmarks.suite)"
    if not path.is_file():
        return {"source": source, "missing": f"{SUITE_JSON} not found: run python -m benchmarks.suite"}
    training = json.loads(path.read_text())["training"]
    by_family: dict[str, float] = {}
    for task, runs in training.items():
        family = task.split("/", 1)[0]
        by_family[family] = by_family.get(family, 0.0) + compute_seconds({"training": {task: runs}})
    by_family = {family: round(s, 1) for family, s in by_family.items()}
    return {"task_seconds_total": round(sum(by_family.values()), 1), "by_family": by_family,
            "tasks": len(training), "source": source}


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
        log.info("dvc repro, no-op dvc repro, each stage alone, sweep of 4 experiments "
                 "(sequential, then queued)")
        return dvc_timings(workdir, sizes)

    sections: dict[str, Callable[[], dict[str, Any]]] = {
        "training": lambda: training_section(data, sizes),
        "scoring": lambda: scoring_section(data, sizes),
        "time_to_detector": lambda: time_to_detector(workdir, sizes),
        "gpu": lambda: gpu_section(sizes),
        "fashion_train": fashion,
        "dvc": dvc,
    }
    for name, measure in sections.items():
        try:
            result[name] = measure()
        except RuntimeError as err:  # a failed subprocess: its command and output
            log.error("%s not measured: %s", name, err)
            result["errors"][name] = str(err)[-4000:]
    result["suite"] = suite_section(ROOT / SUITE_JSON)

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
        for name in ("mlp_784_400_20", "conv", "mlp_batch_256", "mlp_compiled_step"):
            if name not in training:  # a result from before the levers were measured
                continue
            entry = training[name]
            entry["floor_s"] = entry["floor_flop"] / rate
            entry["vs_floor"] = entry["epoch_s"] / entry["floor_s"]
        for name in ("pyod_vae", "pyod_vae_matched"):
            training[name]["vs_ours"] = training[name]["epoch_s"] / training["mlp_784_400_20"]["epoch_s"]
    for entry in result.get("scoring", {}).values():
        entry["floor_s"] = entry["floor_flop"] / rate
        entry["vs_floor"] = entry["seconds"] / entry["floor_s"]
    if "time_to_detector" in result:
        ttd = result["time_to_detector"]
        ttd["ours_vs_pyod"] = ttd["ours_s"] / ttd["pyod_s"]
    if "dvc" in result:
        sweep = result["dvc"]["sweep"]
        sweep["queue_vs_sequential"] = sweep["queue_j2_s"] / sweep["sequential_s"]


def target(key: str, value: float) -> str:
    """``value`` against its target, e.g. "<= 1.5x: met" or "< 25 s: missed"."""
    goal = TARGETS[key]
    if key in UNITS:
        return f"< {goal:g} {UNITS[key]}: {'met' if value < goal else 'missed'}"
    return f"<= {goal:g}x: {'met' if value <= goal else 'missed'}"


def absolute_row(name: str, key: str, value: float, measured: str) -> Row:
    """A row whose target is in units: the target as reference, the measurement over it as ratio."""
    goal = TARGETS[key]
    return (name, measured, f"target {goal:g} {UNITS[key]}", f"{value / goal:.2f}x target", target(key, value))


def table_rows(result: dict[str, Any]) -> list[Row]:
    """(measurement, measured, reference, ratio, target and whether it is met), one per row."""
    rate = result["matmul_gflops"]
    rows: list[Row] = [("matrix rate (float32, best of start/end)", f"{rate['used']:.0f} GFLOP/s",
                        f"start {rate['start']:.0f}, end {rate['end']:.0f}", "", "")]
    if "training" in result:
        mlp, conv, pyod, matched = (result["training"][k] for k in
                                    ("mlp_784_400_20", "conv", "pyod_vae", "pyod_vae_matched"))
        rows.append((f"MLP VAE 784-400-20 epoch ({mlp['n_train']:,} + {mlp['n_val']:,} val)",
                     f"{mlp['epoch_s']:.2f} s", f"floor {mlp['floor_s']:.2f} s", f"{mlp['vs_floor']:.2f}x",
                     target("mlp_epoch_vs_floor", mlp["vs_floor"])))
        if "profile" in mlp:
            prof = mlp["profile"]
            rest = ", ".join(f"{name.removeprefix('aten::')} {seconds:.3f}"
                             for name, seconds in prof["top_operators"].items() if name not in PRODUCT_OPS)
            rows.append(("MLP VAE epoch: its matrix products alone (torch.profiler)", f"{prof['products_s']:.2f} s",
                         f"floor {mlp['floor_s']:.2f} s; all operators {prof['operators_s']:.2f} s; largest "
                         f"others (s): {rest}", f"{prof['products_s'] / mlp['floor_s']:.2f}x", ""))
        if "epoch_s_1_thread" in mlp:
            one = mlp["epoch_s_1_thread"]
            rows.append(("MLP VAE epoch on 1 thread (oversubscription check)", f"{one:.2f} s",
                         f"{result['machine']['torch_threads']} threads: {mlp['epoch_s']:.2f} s", "",
                         "cores busy: figures skewed" if one < mlp["epoch_s"] else ""))
        levers = result["training"]
        if "mlp_batch_256" in levers:
            b256 = levers["mlp_batch_256"]
            rows.append(("lever: MLP VAE epoch at batch 256 (result changes)", f"{b256['epoch_s']:.2f} s",
                         f"floor {b256['floor_s']:.2f} s; batch 128: {mlp['epoch_s']:.2f} s", f"{b256['vs_floor']:.2f}x", ""))
        if "mlp_compiled_step" in levers:
            comp = levers["mlp_compiled_step"]
            rows.append(("lever: MLP VAE epoch, step compiled (torch.compile)", f"{comp['epoch_s']:.2f} s",
                         f"floor {comp['floor_s']:.2f} s; compiling took {comp['compile_s']:.0f} s",
                         f"{comp['vs_floor']:.2f}x", ""))
        rows += [
            ("conv VAE epoch", f"{conv['epoch_s']:.2f} s", f"floor {conv['floor_s']:.2f} s",
             f"{conv['vs_floor']:.2f}x", target("conv_epoch_vs_floor", conv["vs_floor"])),
            ("PyOD VAE epoch (same layers, batch; PyOD's defaults)", f"{pyod['epoch_s']:.2f} s",
             f"ours {mlp['epoch_s']:.2f} s; its whole 1-epoch fit {pyod['fit_1_epochs_s']:.2f} s",
             f"{pyod['vs_ours']:.1f}x ours", ""),
            ("PyOD VAE epoch, no dropout, no standardisation", f"{matched['epoch_s']:.2f} s",
             f"ours {mlp['epoch_s']:.2f} s", f"{matched['vs_ours']:.1f}x ours", ""),
        ]
    for name, entry in result.get("scoring", {}).items():
        rows.append((f"{name}, K = {entry['k']}, {entry['n']:,} images", f"{entry['seconds']:.2f} s",
                     f"floor {entry['floor_s']:.2f} s", f"{entry['vs_floor']:.2f}x",
                     target("iwae_vs_floor", entry["vs_floor"]) if name == "iwae" else ""))
    if "time_to_detector" in result:
        ttd = result["time_to_detector"]
        rows.append(("time to a scored detector, whole process (ours vs PyOD VAE)",
                     f"{ttd['ours_s']:.1f} s, ROC-AUC {ttd['ours_roc_auc']:.3f}",
                     f"PyOD {ttd['pyod_s']:.1f} s, ROC-AUC {ttd['pyod_roc_auc']:.3f}; {ttd['data']}",
                     f"{ttd['ours_s'] / ttd['pyod_s']:.2f}x PyOD", ""))
    if "fashion_train" in result:
        rss = result["fashion_train"]["peak_rss_mb"]
        rows.append(absolute_row("Fashion-MNIST train stage, peak RSS", "fashion_train_peak_rss_mb",
                                 rss, f"{rss:.0f} MB"))
    if "dvc" in result:
        d = result["dvc"]
        sweep = d["sweep"]
        rows += [
            absolute_row(f"dvc repro, clean ({d['params']})", "dvc_repro_s", d["repro_s"], f"{d['repro_s']:.1f} s"),
            absolute_row("dvc repro, no-op", "dvc_repro_noop_s", d["repro_noop_s"], f"{d['repro_noop_s']:.1f} s"),
        ]
        if "repro_forced_s" in d:
            rows.append(("dvc repro -f after it (every stage again, same copy)", f"{d['repro_forced_s']:.1f} s",
                         f"clean dvc repro {d['repro_s']:.1f} s", f"{d['repro_forced_s'] / d['repro_s']:.2f}x", ""))
        stages = d.get("stages_s", {})
        imports = d.get("stages_imports_s", {})
        rows += [(f"stage {name} alone (whole process)",
                  f"{s:.1f} s" + (f", imports {imports[name]:.1f} s" if name in imports else ""),
                  f"clean dvc repro {d['repro_s']:.1f} s", f"{s / d['repro_s']:.0%} of it", "")
                 for name, s in stages.items()]
        if stages:
            total = sum(stages.values())
            rows.append(("every stage alone, total", f"{total:.1f} s", f"clean dvc repro {d['repro_s']:.1f} s",
                         f"{total / d['repro_s']:.0%} of it", ""))
        threads = result["machine"]["torch_threads"]
        rows += [(f"stage {name} alone on 1 thread (lever)", f"{s:.1f} s", f"{threads} threads: {stages[name]:.1f} s",
                  f"{s / stages[name]:.2f}x", "") for name, s in d.get("stages_1_thread_s", {}).items()]
        if "import_torch_s" in d:
            rows.append(('python -c "import torch" (best of 3)', f"{d['import_torch_s']:.2f} s", "", "", ""))
        if "import_dynamo_s" in d:
            rows.append(("import torch._dynamo after torch (torch.optim would add it; best of 3)",
                         f"{d['import_dynamo_s']:.2f} s", "imported by no stage", "", ""))
        rows.append((f"{sweep['experiments']} experiments, dvc queue start -j 2", f"{sweep['queue_j2_s']:.1f} s",
                     f"sequential {sweep['sequential_s']:.1f} s", f"{sweep['queue_vs_sequential']:.2f}x",
                     target("queue_vs_sequential", sweep["queue_vs_sequential"])))
    gpu = result.get("gpu", {})
    if gpu:
        if gpu.get("device"):
            rows += [(f"GPU: MLP VAE epoch, {gpu['n_train']:,} images, batch {b} ({gpu['device']})",
                      f"{gpu[f'epoch_s_batch_{b}']:.2f} s", "target 0.3 s", "",
                      f"< 0.3 s: {'met' if gpu[f'epoch_s_batch_{b}'] < 0.3 else 'missed'}") for b in (128, 1024)]
        else:
            rows.append(("GPU: MLP VAE epoch, 57,000 images", "no CUDA GPU here", "target 0.3 s", "", "not measured"))
    suite = result.get("suite", {})
    if "task_seconds_total" in suite:
        families = ", ".join(f"{name} {s:.0f} s" for name, s in
                             sorted(suite["by_family"].items(), key=lambda item: -item[1]))
        rows.append((f"detection suite as recorded, {suite.get('tasks', '?')} tasks x seeds (train, score, baselines)",
                     f"{suite['task_seconds_total']:.0f} s", families, "", ""))
    rows += [(name, "failed", "see `errors` in the JSON", "", "") for name in result["errors"]]
    return rows


def markdown_table(rows: list[Row]) -> str:
    """The rows as a GitHub markdown table (numbers left as written, units and all)."""
    return tabulate(rows, HEADER, tablefmt="github", disable_numparse=True)


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
    if args.threads:  # stages and subprocesses read OMP_NUM_THREADS at start-up
        torch.set_num_threads(args.threads)
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.threads)
    sizes = QUICK if args.quick else FULL
    with tempfile.TemporaryDirectory(prefix="vae-benchmark-") as tmp:
        result = run_benchmark(sizes, args.data_root, Path(tmp))
    result["quick"] = args.quick
    rows = table_rows(result)
    result["table"] = [dict(zip(HEADER, r)) for r in rows]
    write_json(args.out, result)
    load = ", ".join(f"{x:.1f}" for x in result["load_average_start"])
    fashion = result.get("fashion_train", {}).get("data", "not measured")
    print(f"\ndata: {result['data']}; Fashion-MNIST: {fashion}")
    print(f"machine: {result['machine']['cpu']}, {result['machine']['cores']} cores, "
          f"{result['machine']['torch_threads']} torch threads; load average at start {load}")
    if "missing" in result["suite"]:
        print(f"suite: {result['suite']['missing']}")
    print(markdown_table(rows))
    if result["errors"]:
        sys.exit(1)


if __name__ == "__main__":
    run_main(main)
