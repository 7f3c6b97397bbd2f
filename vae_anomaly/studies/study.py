"""The trade-off study's runs, in process (docs/study-images.md): a run trains one model and reads its
test split through the pipeline's own functions (the train, score and evaluate stages' code
path); finished runs are the rows of one table, ``runs.csv``, rewritten atomically after each
run, so a study cut short goes on where it stopped.

No DVC experiment per run: a queued experiment costs seconds of process start, torch import
and per-stage overhead, and reads the dataset again, for every one of about 150 runs per
dataset. Here worker processes each get the data once and run one model after another.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from ..cli import quiet_inner_work, show_progress
from ..errors import UserError
from ..evaluation.metrics import anomaly_kind_rows, latent_metrics, ranking_metrics, reconstruction_metrics
from ..io import read_rows, require_finite, write_rows
from ..parallel import one_thread, worker_pool
from .suite import capped_splits

log = logging.getLogger(__name__)

# The params that tell a study's runs apart; every other param is the study's setup, the same
# for all its runs (setup()). runs.csv holds these, then score.primary (which score the study
# reads as the recommended one), then the metrics.
VARYING = ("model.kind", "model.beta", "model.latent_dim", "train.kl_schedule", "train.seed")
RUN_ID = "run"
PARAM_COLUMNS = (RUN_ID, "score.primary", *VARYING)
# Where the data lies, not what it is: a run's identity leaves these out, so a study moved to
# another machine (another --data-root) still finds its finished runs.
LOCATION = ("data.root", "data.download")
SECTIONS = ("data", "model", "train", "score")  # what a run reads of its params


@dataclass
class StudyData:
    features: dict[str, np.ndarray]  # train, val, test
    labels: np.ndarray  # test: 0 normal, 1 anomaly
    kinds: np.ndarray  # test: "normal" or the anomalous class's name


def load_data(data_params: dict[str, Any], limits: dict[str, int]) -> StudyData:
    """The study's splits, each capped to its entry of ``limits`` (a seeded subsample, 0 = all)."""
    caps = {split: n for split, n in limits.items() if n > 0}
    features, labels, kinds = capped_splits(data_params, caps, data_params["seed"])
    log.info("study data: %s; %d anomalies in the test split",
             ", ".join(f"{split} {len(x)}" for split, x in features.items()), int(labels.sum()))
    return StudyData(features, labels, kinds)


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested mapping as dotted keys: {"model": {"beta": 1}} -> {"model.beta": 1}."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def flat(params: dict[str, Any]) -> dict[str, Any]:
    """The sections a run reads (SECTIONS), as dotted keys, without LOCATION."""
    every = flatten({section: params[section] for section in SECTIONS})
    return {key: value for key, value in every.items() if key not in LOCATION}


def setup(params: dict[str, Any], limits: dict[str, int]) -> dict[str, Any]:
    """What every run of a study shares: its params but the VARYING ones, and the row caps."""
    return {"params": {k: v for k, v in flat(params).items() if k not in VARYING}, "limits": limits}


def run_key(params: dict[str, Any], limits: dict[str, int]) -> str:
    """A run's identity: a hash of every param it reads and of the row caps."""
    text = json.dumps([flat(params), limits], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def run_label(params: dict[str, Any]) -> str:
    """"vae β=1 latent=20 constant seed=0": a run, in a log line."""
    model, train = params["model"], params["train"]
    beta = "" if model["kind"] == "ae" else f" β={model['beta']:g}"
    schedule = "" if model["kind"] == "ae" else f" {train['kl_schedule']}"
    return f"{model['kind']}{beta} latent={model['latent_dim']}{schedule} seed={train['seed']}"


def test_metrics(scores: dict[str, np.ndarray], latent: dict[str, np.ndarray], quality: dict[str, np.ndarray],
                 labels: np.ndarray, kinds: np.ndarray) -> dict[str, Any]:
    """What the study reads of a run's test split, in the dotted keys of the evaluate stage's
    reports/metrics.json: every score's ROC-AUC and PR-AUC (``scores.<name>.roc_auc``) and its
    ROC-AUC per anomalous class against the normal samples
    (``scores.<name>.per_type.<class>.roc_auc``); reconstruction MSE and SSIM of the normal
    images; the latent W2 between normal and anomalous posterior means, and the active
    dimensions with their rule."""
    out: dict[str, Any] = {}
    subsets = anomaly_kind_rows(kinds)
    for name, values in scores.items():
        require_finite(values, f"score {name} of the test split",
                       "the model cannot score these images: lower model.beta or train.lr")
        for metric, value in ranking_metrics(labels, values).items():
            out[f"scores.{name}.{metric}"] = value
        for kind, rows in subsets.items():
            out[f"scores.{name}.per_type.{kind}.roc_auc"] = ranking_metrics(labels[rows], values[rows])["roc_auc"]
    reconstruction = reconstruction_metrics(quality, labels)
    space = latent_metrics(latent, labels)
    return {
        **out,
        "reconstruction.mse_normal": reconstruction["mse_normal"],
        "reconstruction.ssim_normal": reconstruction["ssim_normal"],
        "latent.w2_normal_anomaly": space["w2_normal_anomaly"],
        "latent.active_dims": space["active_dims"],
        "latent.active_dims_rule": space["active_dims_rule"],
    }


def run_one(params: dict[str, Any], data: StudyData) -> dict[str, Any]:
    """Train the model of ``params`` on ``data`` (pipeline.train_model), score its test split
    with score.names (pipeline.score_splits), and read it (:func:`test_metrics`); with the
    epochs trained and the seconds spent training and scoring."""
    from ..model.vae import resolve_device  # torch: only where a model is trained
    from ..pipeline import score_splits, train_model
    from ..scoring.latent import posterior_statistics
    from ..scoring.reconstruction import reconstruction_quality

    with quiet_inner_work():
        start, cpu = time.perf_counter(), time.process_time()
        model, _, summary = train_model(data.features["train"], data.features["val"], params,
                                        resolve_device(params["train"]["device"]))
        trained = time.perf_counter()
        scores = score_splits(model, data.features, params["score"], params["train"]["seed"], splits=("test",))["test"]
        batch_size = params["score"]["batch_size"]
        latent = posterior_statistics(model, data.features["test"], batch_size)
        quality = reconstruction_quality(model, data.features["test"], batch_size)
        scored = time.perf_counter()
    return {
        **test_metrics(scores, latent, quality, data.labels, data.kinds),
        "epochs_run": summary["epochs_run"],
        "best_epoch": summary["best_epoch"],
        "seconds.train": round(trained - start, 1),
        "seconds.score": round(scored - trained, 1),
        # the run's own compute, whatever else the machine runs: the wall time of one core
        "seconds.cpu": round(time.process_time() - cpu, 1),
    }


def cell(value: Any) -> str:
    """A value as runs.csv writes it: 6 significant digits, "" for none."""
    if value is None:
        return ""
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.6g}"
    return str(value)


class RunsTable:
    """runs.csv: one row per finished run (PARAM_COLUMNS, then its metrics), rewritten whole
    and atomically (io.write_rows) after each run, so a killed study leaves every row it
    reported and never half of one. Rows are kept in a fixed order (by VARYING), so the file
    depends on which runs finished, not on the order they finished in."""

    def __init__(self, path: Path):
        self.path = path
        self.rows = read_runs(path, "move it away, or pass another --out") if path.is_file() else []

    def done(self) -> set[str]:
        return {row[RUN_ID] for row in self.rows}

    def add(self, params: dict[str, Any], key: str, metrics: dict[str, Any]) -> None:
        values = {RUN_ID: key, "score.primary": params["score"]["primary"], **dict(zip(VARYING, varying(params))), **metrics}
        row = {name: cell(value) for name, value in values.items()}
        if self.rows and list(row) != list(self.rows[0]):
            raise UserError(f"{self.path}: a finished run has other columns than the table's (the "
                            "study's code changed since it started); move the table away, or pass another --out")
        self.rows.append(row)
        self.rows.sort(key=_row_order)
        write_rows(self.path, list(row), ([r[name] for name in row] for r in self.rows))


def read_runs(path: Path, otherwise: str) -> list[dict[str, str]]:
    """The rows of a study's runs.csv (text cells by column); a file without the run column
    is refused with ``otherwise``, what to do instead."""
    header, rows = read_rows(path)
    if RUN_ID not in header:
        raise UserError(f"{path} has no {RUN_ID!r} column: not a study's runs table; {otherwise}")
    return rows


def varying(params: dict[str, Any]) -> list[Any]:
    return [params[section][key] for section, key in (name.split(".") for name in VARYING)]


def _row_order(row: dict[str, str]) -> tuple:
    def number(text: str) -> float:
        return float(text) if text else -1.0

    return (row["model.kind"], row["train.kl_schedule"], number(row["model.latent_dim"]),
            number(row["model.beta"]), number(row["train.seed"]))


@dataclass
class Planned:
    params: dict[str, Any]  # validated
    key: str  # run_key


_worker_data: StudyData | None = None  # a worker process's copy, given once by _keep_data


def _keep_data(data: StudyData) -> None:
    global _worker_data
    _worker_data = data


def _run_in_worker(params: dict[str, Any]) -> dict[str, Any]:
    assert _worker_data is not None, "the worker's initializer gives it the data"
    return run_one(params, _worker_data)


def run_all(runs: list[Planned], table: RunsTable, load: Callable[[], StudyData], jobs: int,
            describe: Callable[[dict[str, Any]], str]) -> list[str]:
    """Run ``runs``, ``jobs`` at a time (worker processes; 1: here), adding each to ``table``
    as it finishes and logging ``describe(metrics)`` for it. The data is loaded once
    (``load``) and handed to every worker. A run that stops with a UserError (a loss that
    became NaN) is reported and the others go on; returns those runs' errors."""
    if not runs:
        return []
    data = load()
    failed: list[str] = []
    count = 0

    def finished(run: Planned, metrics: dict[str, Any] | None, error: Exception | None) -> None:
        nonlocal count
        count += 1
        if error is not None:
            failed.append(f"{run_label(run.params)}: {error}")
            log.warning("run %d/%d %s FAILED: %s", count, len(runs), run_label(run.params), error)
        else:
            table.add(run.params, run.key, metrics)
            log.info("run %d/%d %s: %s", count, len(runs), run_label(run.params), describe(metrics))
        bar.update()

    with logging_redirect_tqdm(), tqdm(total=len(runs), desc="study", unit="run", disable=not show_progress()) as bar:
        if jobs == 1:
            with one_thread():  # as each worker
                for run in runs:
                    try:
                        metrics, error = run_one(run.params, data), None
                    except UserError as err:
                        metrics, error = None, err
                    finished(run, metrics, error)
        else:
            with worker_pool(jobs, _keep_data, (data,), level=logging.WARNING) as pool:
                futures = {pool.submit(_run_in_worker, run.params): run for run in runs}
                for future in as_completed(futures):
                    try:
                        metrics, error = future.result(), None
                    except UserError as err:
                        metrics, error = None, err
                    finished(futures[future], metrics, error)
    return failed
