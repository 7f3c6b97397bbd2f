"""Run a reference experiment: its param overrides, as named, tracked DVC experiments.

    python -m scripts.experiment experiments/mnist.yaml

An experiment file holds `name`, `set` (dotted param keys and values, applied on top of
params.yaml) and optionally `variants` (name -> more overrides; one DVC experiment each).
Overrides apply to the committed params.yaml (git HEAD), which is restored before each run,
so experiments never inherit each other's settings; with uncommitted changes in params.yaml
it stops and says so. The overrides are validated against the params schema before anything
runs; each variant then runs as `dvc exp run -n <name>-<variant> -S key=value ...`, so it is
tracked like any experiment (`dvc exp show`, `dvc metrics diff`, `dvc exp apply`). The last
variant's results stay in the workspace. A comparison table of all variants is printed and written to
reports/experiments/<name>.md.
"""
from __future__ import annotations

import argparse
import copy
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from tabulate import tabulate

from vae_anomaly.cli import run_main
from vae_anomaly.errors import UserError
from vae_anomaly.io import atomic_path
from vae_anomaly.params import load_params, set_dotted, validate

log = logging.getLogger(__name__)

PARAMS = Path("params.yaml")
METRICS = Path("reports/metrics.json")
DETAIL = Path("reports/detail.json")
PER_TYPE = Path("reports/per_type.json")
TRAIN_METRICS = Path("reports/train_metrics.json")
TABLE_DIR = Path("reports/experiments")


def override_arg(key: str, value: Any) -> str:
    """One `-S` argument, its value in DVC's override grammar (Hydra's)."""
    return f"{key}={value if isinstance(value, str) else override_value(value)}"


def override_value(value: Any) -> str:
    """Numbers, lists and quoted text as in JSON; a mapping with its keys unquoted, as the
    grammar wants them (``{kind:"mean_shift",share:0.1}``, an item of data.synthetic.anomalies)."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{override_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(override_value(v) for v in value) + "]"
    return json.dumps(value)


def plan(spec: dict[str, Any], params: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(experiment name, overrides) per variant, each checked against the schema."""
    if not isinstance(spec.get("name"), str) or not isinstance(spec.get("set", {}), dict):
        raise UserError("an experiment file needs `name` (text) and `set` (key: value overrides)")
    variants = spec.get("variants") or {"": {}}
    runs = []
    for variant, extra in variants.items():
        overrides = {**spec.get("set", {}), **(extra or {})}
        candidate = copy.deepcopy(params)
        for key, value in overrides.items():
            set_dotted(candidate, key, value)
        validate(candidate)
        runs.append((f"{spec['name']}-{variant}" if variant else spec["name"], overrides))
    return runs


def summary_row(
    name: str, primary: str, metrics: dict[str, Any], detail: dict[str, Any], per_type: dict[str, Any],
    train: dict[str, Any],
) -> dict[str, Any]:
    """One experiment: the primary score (``score.primary`` as resolved) and its metrics, then
    every other score's ROC-AUC beside it (the negative ELBO among them), then per anomaly kind."""
    row = {"experiment": name, "score.primary": primary}
    at_threshold = {**detail.get("primary", {}), **metrics}  # balanced accuracy: detail.json's
    for key in ("roc_auc", "pr_auc", "f1", "balanced_accuracy", "n_flagged", "threshold"):
        row[key] = at_threshold.get(key)
    for score, m in detail.get("scores", {}).items():
        if score != primary:
            row[f"{score} roc_auc"] = m.get("roc_auc")
    for kind, m in per_type.items():
        row[f"{kind} roc_auc"] = m.get("roc_auc")
    row["final_train_loss"] = train.get("final_train_loss")
    return row


def markdown_table(rows: list[dict[str, Any]]) -> str:
    columns = list(dict.fromkeys(key for row in rows for key in row))

    def cell(v: Any) -> str:
        return "-" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)

    cells = [[cell(row.get(c)) for c in columns] for row in rows]
    return tabulate(cells, columns, tablefmt="github", disable_numparse=True) + "\n"


def committed_params() -> str:
    """params.yaml as committed at HEAD; stop if the workspace copy differs from it."""
    done = subprocess.run(["git", "show", f"HEAD:{PARAMS}"], capture_output=True, text=True)
    if done.returncode:
        raise UserError(f"cannot read {PARAMS} at git HEAD ({done.stderr.strip()}); commit it first")
    if PARAMS.read_text() != done.stdout:
        raise UserError(
            f"{PARAMS} differs from the committed one (perhaps left by an earlier `dvc exp run`); "
            f"experiments start from the committed params: run `git checkout {PARAMS}` (or commit "
            "your changes) and try again"
        )
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file", type=Path, help="an experiment file, e.g. experiments/mnist.yaml")
    args = parser.parse_args()
    if not args.file.is_file():
        raise UserError(f"{args.file} not found; the experiment files are in experiments/")
    spec = yaml.safe_load(args.file.read_text())
    base = committed_params()
    runs = plan(spec, validate(yaml.safe_load(base)))
    rows = []
    for name, overrides in runs:
        with atomic_path(PARAMS) as tmp:
            tmp.write_text(base)
        cmd = ["dvc", "exp", "run", "-n", name]
        for key, value in overrides.items():
            cmd += ["-S", override_arg(key, value)]
        log.info("running %s", " ".join(cmd))
        if subprocess.run(cmd).returncode:
            raise UserError(f"experiment {name} failed; see the stage output above")
        primary = load_params(PARAMS)["score"]["primary"]  # the experiment's, "auto" resolved
        rows.append(summary_row(name, primary, *(json.loads(p.read_text()) for p in (METRICS, DETAIL, PER_TYPE, TRAIN_METRICS))))
    table = markdown_table(rows)
    with atomic_path(TABLE_DIR / f"{spec['name']}.md") as tmp:
        tmp.write_text(table)
    log.info("wrote %s", TABLE_DIR / f"{spec['name']}.md")
    sys.stdout.write(table)


if __name__ == "__main__":
    run_main(main)
