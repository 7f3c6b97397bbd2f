"""The detection suite: every detector (each VAE score, the baselines) on many tasks, through
the pipeline's own functions, summarised with bootstrap confidence intervals, seed spreads,
family means and win counts (docs/suite.md).

Protocol:
- A task is the params of one pipeline run: params.yaml, then the overrides of its kind
  (tabular or images), its family and itself. Its splits come from ``make_splits``, as in
  ``prepare``; a family may cap the rows of each split (seeded) to fit the CPU budget.
- Each test split is cut once, stratified by label, into a development half and a report
  half (``split_seed``). Methods and settings are chosen on the development halves only;
  every reported number comes from the report halves, whose labels never chose anything.
- Every seed trains the VAE and the seeded baselines again (``train.seed``
  seeds both); the data stay fixed (``data.seed``), so the spread is the training's.
"""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import time
from concurrent.futures import as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ..cli import show_progress
from ..data.sources import make_splits
from ..errors import ParamsError, UserError
from ..evaluation.baselines import DEEP_BASELINES, baseline_scores
from ..evaluation.metrics import stratified_bootstrap_weights, weighted_ranking_metrics
from ..io import read_arrays, write_arrays, write_json
from ..parallel import one_thread, worker_pool
from ..params import resolve_auto, set_dotted, validate
from .code import code_digest

log = logging.getLogger(__name__)

KINDS = ("tabular", "images")
# Baselines whose scores do not depend on the seed: fitted once per task, not per seed.
UNSEEDED_BASELINES = ("ecod", "knn", "compressed_length")
CI_LEVEL = 0.95


@dataclass
class Task:
    name: str  # family/task
    family: str
    kind: str
    params: dict[str, Any]  # validated; train.seed (the baselines' too) is set per run
    limits: dict[str, int]  # split -> most rows kept (seeded), for the CPU budget


@dataclass
class Suite:
    seeds: list[int]
    split_seed: int
    bootstrap_resamples: int
    recommended: dict[str, str]  # family -> detector (its own, else its kind's)
    tasks: list[Task]
    quick: list[str] = field(default_factory=list)


def load_suite(
    spec: dict[str, Any], base_params: dict[str, Any], data_root: str, overrides: dict[str, Any] | None = None
) -> Suite:
    """The suite described by ``spec`` (benchmarks/suite.yaml), every task's params built
    from ``base_params`` and validated before anything runs. ``{data_root}`` in a string
    override is replaced by ``data_root``. ``overrides`` (dotted keys, as ``--set``) are set
    last, on every task."""
    kinds = spec.get("kinds", {})
    tasks = []
    for family, fam in spec["families"].items():
        kind = fam["kind"]
        if kind not in KINDS or kind not in kinds:
            raise UserError(f"suite family {family!r}: kind {kind!r} must be one of {KINDS} and defined under kinds")
        task_specs = dict(fam.get("tasks") or {})
        # each class in turn as data.classes: the anomaly (protocol held_out, leave-one-class-
        # out) or the one normal class (protocol one_class), by the family's data.protocol
        for c in fam.get("each_class", []):
            task_specs[str(c)] = {"data.classes": [c]}
        for task, own in task_specs.items():
            params = copy.deepcopy(base_params)
            for layer in (kinds[kind].get("set"), fam.get("set"), own, overrides):
                for key, value in (layer or {}).items():
                    if isinstance(value, str) and "{data_root}" in value:
                        if not data_root:
                            raise UserError(
                                f"suite task {family}/{task} reads {key} from the data root: pass "
                                "--data-root (the folder holding MNIST/, FashionMNIST/ and odds/, e.g. "
                                "../shared/datasets) or set VAE_ANOMALY_DATA_ROOT"
                            )
                        value = value.replace("{data_root}", data_root)
                    set_dotted(params, key, value, what="suite override" if layer is not overrides else "--set",
                               known_only=True)
            name = f"{family}/{task}"
            try:
                params = resolve_auto(validate(params))
            except ParamsError as err:
                raise UserError(f"suite task {name}: {err}") from err
            tasks.append(Task(name, family, kind, params, dict(fam.get("limits") or {})))
    return Suite(
        seeds=list(spec["seeds"]), split_seed=int(spec["split_seed"]),
        bootstrap_resamples=int(spec["bootstrap_resamples"]),
        recommended={family: fam.get("recommended", kinds[fam["kind"]]["recommended"])
                     for family, fam in spec["families"].items()},
        tasks=tasks, quick=list(spec.get("quick", [])),
    )


def development_mask(labels: np.ndarray, seed: int) -> np.ndarray:
    """True for the development half of a test split: half of the normal samples and half of
    the anomalies (rounded down), chosen with ``seed``; the rest is the report half."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(labels), dtype=bool)
    for value in (0, 1):
        members = rng.permutation(np.flatnonzero(labels == value))
        mask[members[: len(members) // 2]] = True
    return mask


def capped(x: np.ndarray, most: int | None, seed: int) -> np.ndarray:
    """Sorted indices of a seeded subsample of at most ``most`` of ``len(x)`` rows."""
    if most is None or len(x) <= most:
        return np.arange(len(x))
    return np.sort(np.random.default_rng(seed).choice(len(x), size=most, replace=False))


@dataclass
class Prepared:
    features: dict[str, np.ndarray]  # train, val, test
    labels: np.ndarray  # test labels
    development: np.ndarray  # test rows whose labels may choose methods


def capped_splits(
    data_params: dict[str, Any], limits: dict[str, int], seed: int
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """The splits of ``data_params`` (``make_splits``), each capped to its entry of ``limits``
    (a seeded subsample; a split not named is kept whole): the features of train, val and
    test, and the test labels and kinds."""
    splits = make_splits(data_params)
    features = {"train": splits.train, "val": splits.val, "test": splits.test}
    labels, kinds = splits.test_label, splits.test_kind
    for split in features:
        rows = capped(features[split], limits.get(split), seed)
        features[split] = features[split][rows]
        if split == "test":
            labels, kinds = labels[rows], kinds[rows]
    return features, labels, kinds


def prepare(task: Task, split_seed: int) -> Prepared:
    features, labels, _ = capped_splits(task.params["data"], task.limits, split_seed)
    if len(np.unique(labels)) < 2:
        raise UserError(f"suite task {task.name}: its test split has one class only")
    return Prepared(features, labels, development_mask(labels, split_seed))


def with_seed(params: dict[str, Any], seed: int) -> dict[str, Any]:
    out = copy.deepcopy(params)
    out["train"]["seed"] = seed
    return out


def vae_model(task: Task, data: Prepared, seed: int, device: Any, path: Path | None) -> tuple[Any, dict[str, Any]]:
    """The VAE trained with ``train.seed`` = ``seed``, and its training summary with the seconds
    it took: read from ``path`` (its summary beside it as .json) when it is there, else
    trained and written there."""
    from ..model.vae import load_model, save_model  # torch: only when a model is needed
    from ..pipeline import train_model

    if path is not None and path.is_file():
        return load_model(path, device), json.loads(path.with_suffix(".json").read_text())
    start = time.perf_counter()
    model, _, summary = train_model(data.features["train"], data.features["val"], with_seed(task.params, seed), device)
    keep = ("epochs_run", "best_epoch", "active_dims", "posterior_collapse")
    summary = {**{k: summary[k] for k in keep}, "seconds": {"train": round(time.perf_counter() - start, 1)}}
    if path is not None:  # the summary first: the weights' file is what says the model is there
        write_json(path.with_suffix(".json"), summary)
        save_model(model, path)
    return model, summary


def vae_scores(task: Task, data: Prepared, seed: int, device: Any, model_path: Path | None = None
               ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The VAE's test scores (under their own names) for one training seed, and its training
    summary with the seconds it took; the model is :func:`vae_model`'s (cached at ``model_path``)."""
    from ..pipeline import score_splits

    model, summary = vae_model(task, data, seed, device, model_path)
    start = time.perf_counter()
    scores = score_splits(model, data.features, with_seed(task.params, seed)["score"], seed, splits=("test",))["test"]
    return scores, {**summary, "seconds": {**summary["seconds"], "score": round(time.perf_counter() - start, 1)}}


def one_baseline(task: Task, data: Prepared, name: str, seed: int, device: Any) -> tuple[np.ndarray, float]:
    """Baseline ``name``'s test scores with ``train.seed`` = ``seed``, and the seconds it took."""
    params = with_seed(task.params, seed)
    start = time.perf_counter()
    fitted, record, _ = baseline_scores(data.features, {**params, "baselines": {**params["baselines"], "names": [name]}},
                                     str(device))
    if record["failed"]:
        raise UserError(f"suite task {task.name}, seed {seed}: baseline {name} failed: {record['failed'][name]}")
    return fitted[name], time.perf_counter() - start


def baseline_name(name: str) -> str:
    """Baselines in the suite's tables: PyOD's detectors as pyod_<name>, beside our scores."""
    return name if name == "compressed_length" else f"pyod_{name}"


def data_digest(data: Prepared) -> str:
    """A digest of the features every detector of a task reads (train, val, test)."""
    digest = hashlib.sha256()
    for split in ("train", "val", "test"):
        x = np.ascontiguousarray(data.features[split])
        digest.update(f"{split}{x.shape}{x.dtype}".encode() + x.tobytes())
    return digest.hexdigest()[:16]


# What each detector reads, for its cache key: the entry module of its code (its imports are
# followed, studies/code.py) and its params. The VAE reads model, train and score
# (pipeline.train_model, score_splits); a baseline its own section, the VAE's widths and budget (the deep ones, DEEP_BASELINES) and
# the complexity codec (compressed_length).
VAE_CODE = ("vae_anomaly.pipeline",)
# The VAE's weights: its model and training modules, and pipeline.train_model's own module (not
# the scoring that module imports), so that a change to a score retrains nothing.
TRAIN_CODE = ("vae_anomaly.model.training", "vae_anomaly.model.vae", "vae_anomaly.data.sizing", "vae_anomaly.scoring.latent")
BASELINE_CODE = ("vae_anomaly.evaluation.baselines",)


def key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def model_key(task: Task, seed: int, data: str) -> str:
    """The key of the VAE's cached weights: what training reads (``model``, ``train``), the
    seed, the digest of its data and the training code (TRAIN_CODE)."""
    reads = {k: task.params[k] for k in ("model", "train")}
    return key(reads, seed, data, code_digest(TRAIN_CODE, alone=("vae_anomaly.pipeline",)))


def cache_key(task: Task, baseline: str | None, seed: int | None, data: str) -> str:
    """The key of one detector's cached test scores (``baseline``'s, or with None the VAE's):
    what it reads (above; the VAE: its weights' key and ``score``), the seed it was trained
    with (None: an unseeded baseline), and the digest of its data."""
    params = task.params
    if baseline is None:
        return key(model_key(task, seed, data), params["score"], code_digest(VAE_CODE))
    reads = {"baselines": {**params["baselines"], "names": [baseline]},
             "complexity_codec": params["score"]["complexity_codec"]}
    if baseline in DEEP_BASELINES:
        reads.update(model=params["model"], train={k: v for k, v in params["train"].items() if k != "seed"})
    return key(reads, seed, data, code_digest(BASELINE_CODE))


def cached(path: Path | None, compute: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """``compute()``'s (arrays, summary), read from ``path`` (.npz, its summary beside it as
    .json) when it is there, else computed and written there."""
    if path is not None and path.is_file():
        return read_arrays(path), json.loads(path.with_suffix(".json").read_text())
    arrays, summary = compute()
    if path is not None:
        write_arrays(path, **arrays)
        write_json(path.with_suffix(".json"), summary)
    return arrays, summary


def task_scores(task: Task, suite: Suite, device: Any, cache: Path | None) -> tuple[Prepared, list[dict[str, np.ndarray]], list[dict[str, Any]]]:
    """Every seed's test scores of ``task`` (the VAE's scores under their own names, the
    baselines' by ``baseline_name``), and its training summaries. Each detector's scores are
    cached on their own under ``cache``, keyed by what that detector reads (``cache_key``):
    a rerun computes only the detectors whose code, params or data changed; the VAE's weights
    are cached too (``model_key``), so a change to its scores alone trains nothing. A baseline in
    UNSEEDED_BASELINES is fitted once per task; its seconds count in the first seed only."""
    data = prepare(task, suite.split_seed)
    digest = data_digest(data)
    stem = task.name.replace("/", "__")

    def path(baseline: str | None, seed: int | None) -> Path | None:
        """The cache file of ``baseline``'s scores (None: the VAE's, named "scores", apart from
        PyOD's VAE, "pyod_vae")."""
        run = "" if seed is None else f"-{seed}"
        name = "scores" if baseline is None else baseline_name(baseline)
        return cache / f"{stem}-{name}{run}-{cache_key(task, baseline, seed, digest)}.npz" if cache else None

    runs, summaries = [], []
    for i, seed in enumerate(suite.seeds):
        weights = cache / f"{stem}-model-{seed}-{model_key(task, seed, digest)}.pt" if cache else None
        scores, summary = cached(path(None, seed), lambda: vae_scores(task, data, seed, device, weights))
        seconds = dict(summary["seconds"])
        for name in task.params["baselines"]["names"]:
            unseeded = name in UNSEEDED_BASELINES
            fit_seed = suite.seeds[0] if unseeded else seed

            def compute(name: str = name, fit_seed: int = fit_seed) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
                values, took = one_baseline(task, data, name, fit_seed, device)
                return {"scores": values}, {"seconds": round(took, 1)}

            arrays, record = cached(path(name, None if unseeded else seed), compute)
            scores[baseline_name(name)] = arrays["scores"]
            if not (unseeded and i > 0):
                seconds[baseline_name(name)] = record["seconds"]
        log.info("suite %s seed %d: %s s", task.name, seed, seconds)
        runs.append(scores)
        summaries.append({**summary, "seconds": seconds})
    return data, runs, summaries


def interval(values: np.ndarray) -> list[float]:
    """The central CI_LEVEL percentile interval of bootstrap replicates."""
    tail = 100 * (1 - CI_LEVEL) / 2
    return [float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))]


def task_metrics(
    data: Prepared, runs: list[dict[str, np.ndarray]], resamples: int, seed: int, half: str
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Per detector, on the ``half`` of the test split ("report" or "development"): ROC-AUC and
    PR-AUC (mean over seeds), each seed's, and a bootstrap CI over the half's rows (resampled
    within each class; the same resamples for every detector and seed). With "report", also
    the development half's seed means, the numbers the choices were made on. Also returns
    the bootstrap replicates of each detector's seed-mean metrics, for family means."""
    rows = data.development if half == "development" else ~data.development
    labels = data.labels[rows]
    weights = np.vstack([np.ones(len(labels)), stratified_bootstrap_weights(labels, resamples, seed)])
    out, replicates = {}, {}
    for name in runs[0]:
        roc, ap = (np.array(m) for m in zip(*(weighted_ranking_metrics(labels, r[name][rows], weights)
                                               for r in runs)))  # each (seeds, 1 + resamples)
        out[name] = {half: {
            "roc_auc": float(roc[:, 0].mean()), "roc_auc_ci": interval(roc[:, 1:].mean(axis=0)),
            "roc_auc_seeds": [float(v) for v in roc[:, 0]],
            "pr_auc": float(ap[:, 0].mean()), "pr_auc_ci": interval(ap[:, 1:].mean(axis=0)),
            "pr_auc_seeds": [float(v) for v in ap[:, 0]],
        }}
        if half == "report":
            dev = data.development
            chosen_on = np.array([weighted_ranking_metrics(data.labels[dev], r[name][dev], np.ones((1, dev.sum())))
                                  for r in runs])[:, :, 0]  # (seeds, 2)
            out[name]["development"] = {"roc_auc": float(chosen_on[:, 0].mean()), "pr_auc": float(chosen_on[:, 1].mean())}
        replicates[name] = np.stack([roc.mean(axis=0), ap.mean(axis=0)])  # (2, 1 + resamples)
    return out, replicates


def family_summary(
    results: dict[str, dict[str, Any]], replicates: dict[str, dict[str, np.ndarray]], tasks: list[str], half: str
) -> dict[str, Any]:
    """Mean ROC-AUC and PR-AUC on ``half`` over ``tasks`` per detector, with a bootstrap CI
    (tasks' resamples are independent, so the mean of their replicates), the spread over
    seeds (std of the per-seed family means), and the tasks each detector wins (highest
    ROC-AUC; ties count for each)."""
    detectors = [d for d in results[tasks[0]] if all(d in results[t] for t in tasks)]
    summary: dict[str, Any] = {}
    for d in detectors:
        stacked = np.mean([replicates[t][d] for t in tasks], axis=0)  # (2, 1 + resamples)
        seeds = {m: np.mean([results[t][d][half][f"{m}_seeds"] for t in tasks], axis=0) for m in ("roc_auc", "pr_auc")}
        summary[d] = {
            "roc_auc": float(stacked[0, 0]), "roc_auc_ci": interval(stacked[0, 1:]),
            "roc_auc_seed_std": float(np.std(seeds["roc_auc"])),
            "pr_auc": float(stacked[1, 0]), "pr_auc_ci": interval(stacked[1, 1:]),
            "pr_auc_seed_std": float(np.std(seeds["pr_auc"])),
            "wins": 0,
        }
        if half == "report":
            summary[d]["development_roc_auc"] = float(np.mean([results[t][d]["development"]["roc_auc"] for t in tasks]))
    for t in tasks:
        best = max(results[t][d][half]["roc_auc"] for d in detectors)
        for d in detectors:
            if results[t][d][half]["roc_auc"] == best:
                summary[d]["wins"] += 1
    return summary


def is_baseline(detector: str) -> bool:
    """PyOD's detectors and the model-free compressed length, apart from the VAE's scores."""
    return detector.startswith("pyod_") or detector == "compressed_length"


def versus_best_baseline(
    detectors: dict[str, Any], replicates: dict[str, dict[str, np.ndarray]], tasks: list[str], recommended: str
) -> dict[str, Any] | None:
    """The family's recommended detector against its best baseline (highest mean ROC-AUC):
    the difference of their mean ROC-AUCs with a paired bootstrap CI (both are measured on the
    same resamples of the same rows, so the interval of the difference is narrower than the
    two intervals side by side suggest). None when either is missing."""
    baselines = [d for d in detectors if is_baseline(d)]
    if recommended not in detectors or not baselines:
        return None
    best = max(baselines, key=lambda d: detectors[d]["roc_auc"])
    difference = np.mean([replicates[t][recommended][0] - replicates[t][best][0] for t in tasks], axis=0)
    return {"baseline": best, "roc_auc_difference": float(difference[0]), "roc_auc_difference_ci": interval(difference[1:])}


def measure_task(task: Task, suite: Suite, device: Any, cache: Path | None, half: str) -> tuple[Any, ...]:
    """One task, start to end: its scores (cached or computed) and its metrics on ``half``, on
    one thread (parallel.one_thread), so that the numbers do not depend on ``--jobs``."""
    with one_thread():
        start = time.perf_counter()
        data, runs, summaries = task_scores(task, suite, device, cache)
        metrics, replicates = task_metrics(data, runs, suite.bootstrap_resamples, suite.split_seed, half)
        return metrics, replicates, summaries, round(time.perf_counter() - start, 1)


def run_suite(
    suite: Suite, device: Any, cache: Path | None, only: list[str] | None = None, half: str = "report",
    jobs: int = 1,
) -> dict[str, Any]:
    """Run ``suite`` (its tasks named in ``only``, or all), ``jobs`` tasks at a time in worker
    processes, and summarise it on ``half`` of each test split: "report", or "development" to
    make choices without touching the report half."""
    tasks = [t for t in suite.tasks if only is None or t.name in only]
    if only is not None and len(tasks) != len(set(only)):
        unknown = sorted(set(only) - {t.name for t in suite.tasks})
        raise UserError(f"no suite task named {unknown[0]!r}; tasks are family/task, e.g. {suite.tasks[0].name}")
    done: dict[str, tuple[Any, ...]] = {}
    with tqdm(total=len(tasks), desc="suite", unit="task", disable=not show_progress()) as bar:
        if jobs == 1:
            for task in tasks:
                log.info("suite task %d/%d: %s", len(done) + 1, len(tasks), task.name)
                done[task.name] = measure_task(task, suite, device, cache, half)
                bar.update()
        else:
            with worker_pool(jobs) as pool:
                futures = {pool.submit(measure_task, task, suite, device, cache, half): task.name for task in tasks}
                for future in as_completed(futures):
                    done[futures[future]] = future.result()
                    log.info("suite task done (%d/%d): %s", len(done), len(tasks), futures[future])
                    bar.update()
    results = {t.name: done[t.name][0] for t in tasks}
    replicates = {t.name: done[t.name][1] for t in tasks}
    families: dict[str, Any] = {}
    for family in dict.fromkeys(t.family for t in tasks):
        names = [t.name for t in tasks if t.family == family]
        kind = next(t.kind for t in tasks if t.family == family)
        detectors = family_summary(results, replicates, names, half)
        families[family] = {"kind": kind, "tasks": names, "detectors": detectors,
                            "versus_best_baseline": versus_best_baseline(
                                detectors, replicates, names, suite.recommended[family])}
    return {
        "protocol": {
            "half": half, "seeds": suite.seeds, "split_seed": suite.split_seed, "bootstrap_resamples": suite.bootstrap_resamples,
            "ci_level": CI_LEVEL, "recommended": suite.recommended,
        },
        "families": families, "tasks": results,
        "training": {t.name: done[t.name][2] for t in tasks}, "seconds": {t.name: done[t.name][3] for t in tasks},
    }
