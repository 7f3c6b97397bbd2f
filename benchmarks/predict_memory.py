"""Peak memory of ``python -m vae_anomaly predict`` on long .csv files: it should stay flat as
the file grows, since rows are read and scored in chunks.

    python -m benchmarks.predict_memory [--rows 1000000] [--out reports/predict_memory.json]

Fits a detector with the default model (30-128-64-8) for one epoch on synthetic rows (its
quality does not change the memory), writes .csv files of --rows / 10 and --rows rows of 30
features, scores each with the real command in a child process, and reads the child's peak
resident set size from ``wait4``. Prints a table and writes the numbers as JSON. Not a test:
it takes minutes.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

N_FEATURES = 30
WRITE_ROWS = 100_000  # rows generated and written at a time


def write_rows(path: Path, n_rows: int, mixing: np.ndarray, seed: int) -> None:
    """``n_rows`` rows of a 4-dimensional linear-Gaussian model, as a .csv with a header."""
    rng = np.random.default_rng(seed)
    with open(path, "w") as fh:
        fh.write(",".join(f"x{j}" for j in range(N_FEATURES)) + "\n")
        for start in range(0, n_rows, WRITE_ROWS):
            n = min(WRITE_ROWS, n_rows - start)
            rows = rng.normal(size=(n, mixing.shape[0])) @ mixing + 0.3 * rng.normal(size=(n, N_FEATURES))
            np.savetxt(fh, rows, delimiter=",", fmt="%.6g")


def peak_rss_mib(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak resident set size (MiB) of ``command`` as a child process."""
    start = time.perf_counter()
    child = subprocess.Popen(command, env={**os.environ, "CI": "1"}, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed")
    return time.perf_counter() - start, usage.ru_maxrss / 1024  # Linux: ru_maxrss in KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--out", default="reports/predict_memory.json")
    args = parser.parse_args()
    from vae_anomaly.detector.detector import Detector  # after --help

    rng = np.random.default_rng(0)
    mixing = rng.normal(size=(4, N_FEATURES))
    train = rng.normal(size=(5000, 4)) @ mixing + 0.3 * rng.normal(size=(5000, N_FEATURES))
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "detector"
        Detector(train={"epochs": 1, "device": "cpu"}).fit(train).save(folder)
        for n_rows in (args.rows // 10, args.rows):
            csv = Path(tmp) / f"rows_{n_rows}.csv"
            write_rows(csv, n_rows, mixing, seed=n_rows)
            seconds, peak = peak_rss_mib([sys.executable, "-m", "vae_anomaly", "predict", "--detector", str(folder),
                                          "--input", str(csv), "--output", str(Path(tmp) / "scores.csv")])
            results.append({"rows": n_rows, "csv_mib": round(csv.stat().st_size / 2**20, 1),
                            "peak_rss_mib": round(peak, 1), "seconds": round(seconds, 1),
                            "whole_array_mib": round(n_rows * N_FEATURES * 8 / 2**20, 1)})
            csv.unlink()
    print(f"{'rows':>10} {'csv MiB':>8} {'peak RSS MiB':>13} {'seconds':>8}  (float64 array of all rows, MiB)")
    for r in results:
        print(f"{r['rows']:>10} {r['csv_mib']:>8} {r['peak_rss_mib']:>13} {r['seconds']:>8}  ({r['whole_array_mib']})")
    report = {"command": "python -m vae_anomaly predict (default chunk of 65536 rows), default score.names",
              "features": N_FEATURES, "machine": f"{platform.machine()}, {os.cpu_count()} cores",
              "torch_threads": os.environ.get("OMP_NUM_THREADS", "default"), "runs": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
