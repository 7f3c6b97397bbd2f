"""The detection suite: every detector on every task, one table (docs/suite.md).

    python -m benchmarks.suite --data-root ../shared/datasets            # the whole suite
    python -m benchmarks.suite --data-root ../shared/datasets --quick    # four tasks, minutes

Reads benchmarks/suite.yaml (tasks, seeds, limits, the recommended detector per data kind)
on top of params.yaml, runs each task through the pipeline's own training, scoring and
baseline functions, and writes reports/suite/suite.{json,md} (--quick: quick.{json,md}).
Each detector's scores are cached on their own under data/suite_cache, keyed by what that
detector reads (its params, seed, data and the package modules its code imports), so an
interrupted run resumes, and a rerun recomputes only the detectors whose inputs changed.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from vae_anomaly.cli import run_main
from vae_anomaly.data.images import DATA_ROOT_ENV
from vae_anomaly.errors import UserError
from vae_anomaly.io import atomic_path
from vae_anomaly.parallel import usable_cores
from vae_anomaly.params import load_params
from vae_anomaly.studies.suite import load_suite, run_suite

log = logging.getLogger(__name__)

CONFIG = Path("benchmarks/suite.yaml")
OUT = Path("reports/suite")
CACHE = Path("data/suite_cache")


def fmt(value: float) -> str:
    return f"{value:.3f}"


def with_ci(m: dict[str, Any], metric: str) -> str:
    low, high = m[f"{metric}_ci"]
    return f"{fmt(m[metric])} [{fmt(low)}, {fmt(high)}]"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header),
            *("| " + " | ".join(row) + " |" for row in rows)]


def compute_seconds(result: dict[str, Any]) -> float:
    """Training, scoring and baselines of every task and seed, as each seed was measured (a
    seed read from the cache keeps the time it first took)."""
    return sum(sum(run["seconds"].values()) for runs in result["training"].values() for run in runs)


def summary_table(result: dict[str, Any]) -> list[str]:
    """Per family: the recommended detector's mean ROC-AUC and the best baseline's (by mean
    ROC-AUC on the same half), each with its CI, and the tasks each wins."""
    half = result["protocol"]["half"]
    rows = []
    for family, fam in result["families"].items():
        detectors, versus = fam["detectors"], fam.get("versus_best_baseline")
        ours = result["protocol"]["recommended"][family]
        if versus is None:
            continue
        best = versus["baseline"]
        low, high = versus["roc_auc_difference_ci"]
        rows.append([family, str(len(fam["tasks"])), f"`{ours}`", with_ci(detectors[ours], "roc_auc"),
                     f"{best} {with_ci(detectors[best], 'roc_auc')}",
                     f"{versus['roc_auc_difference']:+.3f} [{low:+.3f}, {high:+.3f}]"])
    return table(["family", "tasks", "recommended", f"its mean ROC-AUC ({half} halves)", "best baseline",
                  "difference (paired CI)"], rows)


def cost_table(result: dict[str, Any]) -> list[str]:
    """Per family: the minutes its tasks took, summed over tasks and seeds, for our VAE
    (training, then all of its scores) and for each baseline, so that a gain in ROC-AUC can be
    set against what it costs (unseeded baselines are fitted once per task)."""
    families = result["families"]
    parts = sorted({part for runs in result["training"].values() for run in runs for part in run["seconds"]},
                   key=lambda part: ({"train": 0, "score": 1}.get(part, 2), part))
    rows = []
    for family, fam in families.items():
        spent = {part: sum(run["seconds"].get(part, 0.0) for task in fam["tasks"] for run in result["training"][task])
                 for part in parts}
        rows.append([family, *(f"{spent[part] / 60:.1f}" for part in parts), f"{sum(spent.values()) / 60:.1f}"])
    names = {"train": "VAE training", "score": "VAE scores"}
    return table(["family", *(names.get(part, part) for part in parts), "all"], rows)


def markdown(result: dict[str, Any]) -> str:
    """The suite's tables: per family, every detector's mean over tasks (95% bootstrap CI,
    std over seeds, wins), then each task's report ROC-AUC and PR-AUC with their CIs."""
    proto = result["protocol"]
    half = proto["half"]
    lines = [
        "# Detection suite" + (" (development halves: for choosing, not for reporting)" if half == "development" else ""),
        "",
        ("Report halves of each task's test split (the development halves chose the methods). "
         if half == "report" else "Development halves of each task's test split, the only labels that choose methods. ")
        + 
        f"Mean over seeds {proto['seeds']}; [{proto['ci_level']:.0%} bootstrap CI over test rows, "
        f"{proto['bootstrap_resamples']} resamples within each class]; ± = std over seeds of the mean. "
        "Recommended per family: bold in its table.",
        "", "## Summary: the recommended detector against the best baseline", "",
        *summary_table(result),
    ]
    for family, fam in result["families"].items():
        recommended = proto["recommended"][family]
        detectors = sorted(fam["detectors"], key=lambda d: -fam["detectors"][d]["roc_auc"])
        lines += ["", f"## {family} ({len(fam['tasks'])} tasks, {fam['kind']})", ""]
        rows = []
        for d in detectors:
            m = fam["detectors"][d]
            name = f"**{d}** (recommended)" if d == recommended else d
            rows.append([name, f"{with_ci(m, 'roc_auc')} ±{m['roc_auc_seed_std']:.3f}",
                         f"{with_ci(m, 'pr_auc')} ±{m['pr_auc_seed_std']:.3f}", str(m["wins"]),
                         *([fmt(m["development_roc_auc"])] if half == "report" else [])])
        lines += table(["detector", "mean ROC-AUC", "mean PR-AUC", "wins",
                        *(["development ROC-AUC"] if half == "report" else [])], rows)
        for metric, title in (("roc_auc", "ROC-AUC"), ("pr_auc", "PR-AUC")):
            lines += ["", f"{family}, {title} per task:", ""]
            lines += table(["task", *detectors], [
                [task.split("/", 1)[1], *(with_ci(result["tasks"][task][d][half], metric) for d in detectors)]
                for task in fam["tasks"]
            ])
    collapsed = [t for t, runs in result["training"].items() if any(r["posterior_collapse"] for r in runs)]
    lines += ["", "Posterior collapse (no active latent dimension) in: " + (", ".join(collapsed) or "none") + ".",
              "", f"Time of the tasks, summed (each on one CPU thread, its cached seeds included as they were "
              f"first measured): {compute_seconds(result) / 60:.1f} min; run `--jobs N` at once, "
              "the wall time is about that divided by N. Minutes per family and detector, summed over "
              "tasks and seeds:", "", *cost_table(result)]
    return "\n".join(lines) + "\n"


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``--set KEY=VALUE`` items as load_suite's overrides (each VALUE read as YAML)."""
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--set {item!r}: give KEY=VALUE, e.g. --set score.knn_neighbors=1")
        overrides[key] = yaml.safe_load(value)
    return overrides


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", default=os.environ.get(DATA_ROOT_ENV, ""),
                        help=f"folder with MNIST/, FashionMNIST/ and odds/ (default: ${DATA_ROOT_ENV})")
    parser.add_argument("--quick", action="store_true", help="only the suite's `quick` tasks")
    parser.add_argument("--tasks", help="comma-separated family/task or family names to run instead of all")
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--seeds", help="comma-separated training seeds instead of the suite's (for trying things)")
    parser.add_argument("--development", action="store_true",
                        help="measure on the development halves only (for choosing methods; the report halves are not read)")
    parser.add_argument("--jobs", type=int, default=usable_cores(),
                        help="tasks run at once, one CPU thread each (default: the cores this process may use)")
    parser.add_argument("--no-cache", action="store_true", help="recompute every score")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a params override for every task, set last (dotted, a YAML value, as dvc exp run -S); "
                             "repeatable, for trying things on the development halves")
    args = parser.parse_args()
    if not args.config.is_file():
        raise UserError(f"{args.config} not found; run from the project root")
    suite = load_suite(yaml.safe_load(args.config.read_text()), load_params(resolve=False), args.data_root.rstrip("/"),
                       parse_overrides(args.set))
    families = {t.family: [u.name for u in suite.tasks if u.family == t.family] for t in suite.tasks}
    only = ([name for item in args.tasks.split(",") for name in families.get(item, [item])] if args.tasks
            else suite.quick if args.quick else None)
    if args.seeds:
        suite.seeds = [int(s) for s in args.seeds.split(",")]
    from vae_anomaly.model.vae import resolve_device

    half = "development" if args.development else "report"
    if args.jobs < 1:
        raise UserError(f"--jobs {args.jobs}: give at least 1")
    device = resolve_device("auto")
    jobs = 1 if device.type == "cuda" else args.jobs  # on a GPU, one task at a time owns it
    result = run_suite(suite, device, None if args.no_cache else CACHE, only, half, jobs)
    stem = "quick" if args.quick else "selected" if only is not None else "suite"  # --seeds: in the protocol
    stem = f"development-{stem}" if args.development else stem
    for suffix, text in ((".json", json.dumps(result, indent=1, sort_keys=True) + "\n"), (".md", markdown(result))):
        path = OUT / f"{stem}{suffix}"
        with atomic_path(path) as tmp:
            tmp.write_text(text)
        log.info("wrote %s", path)
    sys.stdout.write(markdown(result))


if __name__ == "__main__":
    run_main(main)  # run_stage would take the arguments for a stage's (none)
