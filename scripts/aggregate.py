"""Aggregate a trade-off study's runs into tables, figures and the paper's four claims.

    python -m scripts.aggregate --runs reports/study/mnist/runs.csv --out reports/study/mnist
    python -m scripts.aggregate --prefix tradeoff-mnist-      # DVC experiments named tradeoff-mnist-*
    python -m scripts.aggregate --where data.source=mnist     # or those with these params
    python -m scripts.aggregate --input runs.json             # or a copy saved with --save

The runs come from a study's table (--runs: the runs.csv of scripts.study, one row per run)
or from `dvc.api.exp_show()` (the experiments of git HEAD; --all-commits for those of every
earlier commit too): every finished experiment whose name starts with --prefix and whose
params match every --where, so stale or unrelated experiments never mix in. Runs are grouped
into configurations by every param except `train.seed`, and each configuration's metrics
are summarised as mean ± std over its seeds. Detection is read two ways (each a --detection;
by default the ROC-AUC of the reconstruction error, the paper's reading, and of
`score.primary`). Writes, under --out (default reports/study/):

- tradeoff.png: reconstruction MSE on normal test data against detection, one row of panels
  per reading, one panel per latent size, colour = beta, marker = variant (model, KL
  schedule, any other param that varies); small dots are runs, large ones the mean ± std;
- seed_variability.png: detection against the W2 distance between the latent distributions
  of normal and anomalous test samples, per run, and the same as deviations from each
  configuration's mean, with their Spearman correlations; one row per reading;
- table.md: mean ± std per configuration, per held-out class, the best beta per latent size,
  the correlations, and the paper's four claims answered yes / partly / no by the rules of
  CLAIMS, for each reading;
- summary.json: the same numbers, for machines.

The reading follows Senellart, Solal, Allassonnière & Burgos, "Mitigating the reconstruction-
detection trade-off in VAE-based unsupervised anomaly detection" (ISBI 2026).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from scipy import stats
from tabulate import tabulate

matplotlib.use("Agg")  # files only, no screen needed
import matplotlib.pyplot as plt  # noqa: E402

from vae_anomaly.cli import run_main
from vae_anomaly.errors import UserError
from vae_anomaly.io import atomic_path, save_figure, write_json
from vae_anomaly.params import SCHEMA
from vae_anomaly.studies.study import RUN_ID, flatten, read_runs

log = logging.getLogger(__name__)

PARAMS_FILE, METRICS_FILE, TRAIN_METRICS_FILE = "params.yaml", "reports/metrics.json", "reports/train_metrics.json"
DETAIL_FILE = "reports/detail.json"
# Not among dvc.yaml's metrics (`dvc exp show` stays narrow): read at each run's revision (with_detail).
REVISION_FILES = (DETAIL_FILE, TRAIN_METRICS_FILE)
SEED, BETA, LATENT, KIND, SCHEDULE, PRIMARY = (
    "train.seed", "model.beta", "model.latent_dim", "model.kind", "train.kl_schedule", "score.primary")
MSE, W2 = "reconstruction.mse_normal", "latent.w2_normal_anomaly"
RECONSTRUCTION_READING = "scores.reconstruction_mse.roc_auc"
# The metrics read from a DVC experiment's row: (metrics file, key).
DVC_METRICS = [
    (METRICS_FILE, "roc_auc"), (METRICS_FILE, "pr_auc"), (DETAIL_FILE, MSE),
    (DETAIL_FILE, "reconstruction.ssim_normal"), (DETAIL_FILE, W2), (DETAIL_FILE, "latent.active_dims"),
    (TRAIN_METRICS_FILE, "epochs_run"),
]
# The table's columns after the detection readings: (title, key); those no run has are left out.
COLUMNS = [
    ("ROC-AUC, negative ELBO", "scores.negative_elbo.roc_auc"),
    ("MSE normal", MSE),
    ("SSIM normal", "reconstruction.ssim_normal"),
    ("latent W2", W2),
    ("active dims", "latent.active_dims"),
    ("epochs", "epochs_run"),
    ("train s", "seconds.train"),
]
MODEL_NAMES = {"vae": "β-VAE", "sparse": "Sparse VAE", "ae": "AE"}
UNFINISHED = {"Queued", "Running", "Failed"}  # the State of experiments with no result of their own
MARKERS = "osD^vP*Xph<>"
SWEEP_HINT = (
    "run a study (python -m scripts.study) and pass its --runs runs.csv, or queue a sweep, e.g. "
    "dvc exp run --queue -n my-study -S 'model.beta=0.1,1,10' -S 'train.seed=range(0,3)', then "
    "dvc queue start -j 2 (see docs/study.md)"
)
PARAM_KEYS = list(flatten(SCHEMA))


@dataclass
class Run:
    name: str
    params: dict[str, Any]  # "model.beta" -> 1.0, every key of the params schema
    metrics: dict[str, Any]  # "scores.reconstruction_mse.roc_auc" -> 0.8, "epochs_run" -> 30, ...


@dataclass
class Config:
    """Runs that differ only in train.seed."""

    params: dict[str, Any]
    runs: list[Run] = field(default_factory=list)

    def param(self, key: str) -> float:
        """A numeric param shared by the runs (beta, latent size), NaN if absent."""
        return _number(self.runs[0].params.get(key))

    def text(self, key: str, default: str) -> str:
        """A text param shared by the runs (model.kind, train.kl_schedule)."""
        value = self.runs[0].params.get(key)
        return default if value is None else str(value)

    def values(self, key: str) -> np.ndarray:
        """The metric ``key`` of every run, NaN where a run lacks it."""
        return np.array([_number(r.metrics.get(key)) for r in self.runs], dtype=float)


def _number(value: Any) -> float:
    if isinstance(value, bool):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):  # None, "None", text
        return math.nan


# --- Runs from a study's runs.csv -------------------------------------------------------------

def runs_from_table(rows: list[dict[str, str]]) -> list[Run]:
    """Runs from the rows of a study's runs.csv (vae_anomaly.studies.study.RunsTable): the columns named
    like params keys are params, the rest metrics; numbers as floats, empty cells None."""
    def value(text: str) -> Any:
        if text == "":
            return None
        number = _number(text)
        return text if math.isnan(number) else number

    runs = []
    for row in rows:
        params = {k: value(v) for k, v in row.items() if k in PARAM_KEYS}
        metrics = {k: value(v) for k, v in row.items() if k not in PARAM_KEYS and k != RUN_ID}
        runs.append(Run(row[RUN_ID], params, metrics))
    return runs


def read_runs_table(path: Path) -> list[Run]:
    if not path.is_file():
        raise UserError(f"{path} not found; a study writes it (python -m scripts.study --dataset mnist ...)")
    return runs_from_table(read_runs(path, "give the runs.csv of scripts.study"))


# --- Runs from DVC experiments ----------------------------------------------------------------

def _cell(row: dict[str, Any], file: str, key: str) -> Any:
    """A value of an `exp_show()` row: DVC names a column "file:key" when another file has the
    same key, else "key"; its "None" (a string) is None."""
    value = row.get(f"{file}:{key}", row.get(key))
    return None if value == "None" else value


def _same(value: Any, wanted: str) -> bool:
    """A param value against a --where value given as text ("0.1" matches 0.1, "[0, 9]" "[0,9]")."""
    a, b = _number(value), _number(wanted)
    if not (math.isnan(a) or math.isnan(b)):
        return a == b
    return str(value).replace(" ", "") == wanted.replace(" ", "")


def parse_where(items: list[str]) -> dict[str, str]:
    where = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in PARAM_KEYS:
            raise UserError(f"--where {item!r}: expected KEY=VALUE with a params key such as "
                            f"data.source=mnist (keys: see params.yaml)")
        where[key] = value
    return where


def collect_runs(rows: list[dict[str, Any]], prefix: str = "", where: dict[str, str] | None = None
                 ) -> tuple[list[Run], Counter]:
    """Runs from `dvc.api.exp_show()` rows: finished experiments whose name starts with
    ``prefix`` (with no prefix, the workspace and commits too) and whose params match every
    ``where``. Identical runs (same params and metrics, e.g. the workspace and the experiment
    it holds) count once. Also returns why the other rows were left out."""
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise UserError("the experiments document is not a list of rows; expected what "
                        "dvc.api.exp_show() returns (or --save wrote)")
    # Experiments first, so a run that is also the workspace keeps its experiment's name.
    rows = sorted(rows, key=lambda r: r.get("Experiment") is None)
    runs, seen, skipped = [], set(), Counter()
    for row in rows:
        name = row.get("Experiment") or row.get("rev") or "?"
        if prefix and not (row.get("Experiment") or "").startswith(prefix):
            skipped["another name"] += 1
            continue
        if row.get("State") in UNFINISHED:
            skipped[row["State"].lower()] += 1
            continue
        params = {k: _cell(row, PARAMS_FILE, k) for k in PARAM_KEYS}
        if any(not _same(params.get(k), v) for k, v in (where or {}).items()):
            skipped["other params"] += 1
            continue
        metrics = {k: _cell(row, f, k) for f, k in DVC_METRICS}
        metrics.update(_detection_metrics(row, params.get(PRIMARY)))
        if math.isnan(_number(metrics.get("roc_auc"))):
            skipped["no metrics"] += 1
            continue
        key = json.dumps([params, metrics], sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            runs.append(Run(name, params, metrics))
    return runs, skipped


def _detection_metrics(row: dict[str, Any], primary: Any) -> dict[str, Any]:
    """The ranking metrics of reports/detail.json a --detection may name: every score's and
    every anomaly type's ROC-AUC and PR-AUC (scores.*, per_type.*). An anomaly type's, of
    score.primary, also under the key a study's table gives it (scores.<primary>.per_type.*)."""
    out = {}
    for column, value in row.items():
        file, sep, key = column.rpartition(":")
        if (not sep or file in (METRICS_FILE, DETAIL_FILE)) and key.startswith(("scores.", "per_type.")) \
                and key.endswith(("roc_auc", "pr_auc")) and not math.isnan(_number(value)):
            out[key] = value
            if key.startswith("per_type.") and primary:
                out[f"scores.{primary}.{key}"] = value
    return out


# --- Configurations and their statistics ------------------------------------------------------

def group_runs(runs: list[Run]) -> tuple[list[Config], list[str]]:
    """Configurations (runs equal in every param but train.seed), sorted, and the params
    other than beta, latent size and seed that vary between them (the "variant")."""
    keys = sorted({k for r in runs for k in r.params} - {SEED})
    varying = [k for k in keys if len({json.dumps(r.params.get(k), default=str) for r in runs}) > 1]
    configs: dict[str, Config] = {}
    for run in runs:
        fixed = {k: run.params.get(k) for k in varying}
        configs.setdefault(json.dumps(fixed, sort_keys=True, default=str), Config(fixed)).runs.append(run)
    variant_keys = [k for k in varying if k not in (BETA, LATENT)]

    def order(c: Config) -> tuple:
        return (*(str(c.params[k]) for k in variant_keys), c.param(BETA), c.param(LATENT))

    return sorted(configs.values(), key=order), variant_keys


def short(key: str, keys: list[str]) -> str:
    """The last part of a dotted key, or the whole key where that part is ambiguous."""
    last = key.rsplit(".", 1)[-1]
    return last if sum(k.rsplit(".", 1)[-1] == last for k in keys) == 1 else key


def is_autoencoder(config: Config) -> bool:
    """The plain autoencoder has no KL term: its beta (and KL schedule) mean nothing."""
    return config.text(KIND, "vae") == "ae"


def variant_label(config: Config, variant_keys: list[str]) -> str:
    """"β-VAE", "β-VAE, monotonic", "Sparse VAE", "AE (β → 0)", then any other param that varies."""
    parts = []
    for key in variant_keys:
        value = config.params[key]
        if key == KIND:
            parts.append(MODEL_NAMES.get(value, str(value)) + (" (β → 0)" if value == "ae" else ""))
        elif key == SCHEDULE:
            if value != "constant" and not is_autoencoder(config):
                parts.append(str(value))
        else:
            parts.append(f"{short(key, variant_keys)}={value}")
    return ", ".join(parts) or "all runs"


def mean_std(values: np.ndarray, digits: int = 3) -> str:
    """"mean ± std" over the finite values (sample std, ddof=1); "–" when none."""
    values = values[np.isfinite(values)]
    if not len(values):
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}g}"
    return f"{values.mean():.{digits}g} ± {values.std(ddof=1):.2g}"


def _std(values: np.ndarray) -> float:
    return float(values.std(ddof=1)) if len(values) > 1 else 0.0


def within_config_deviations(configs: list[Config], detection: str) -> tuple[np.ndarray, np.ndarray]:
    """Each run's detection metric minus its configuration's mean, and its latent W2 relative
    to its configuration's mean (W2 / mean - 1; scale-free, as latent scales differ between
    configurations); only configurations with at least two runs holding both numbers."""
    d_auc, d_w2 = [], []
    for config in configs:
        auc, w2 = config.values(detection), config.values(W2)
        ok = np.isfinite(auc) & np.isfinite(w2)
        if ok.sum() >= 2 and w2[ok].mean() > 0:
            d_auc.extend(auc[ok] - auc[ok].mean())
            d_w2.extend(w2[ok] / w2[ok].mean() - 1)
    return np.array(d_auc), np.array(d_w2)


def across_runs(configs: list[Config], detection: str) -> tuple[np.ndarray, np.ndarray]:
    """The detection metric and the latent W2 of every run holding both."""
    auc = np.concatenate([c.values(detection) for c in configs])
    w2 = np.concatenate([c.values(W2) for c in configs])
    ok = np.isfinite(auc) & np.isfinite(w2)
    return auc[ok], w2[ok]


def spearman(a: np.ndarray, b: np.ndarray) -> tuple[float, float] | None:
    """Spearman's rho between paired values, and its p-value (two-sided); None with fewer
    than three pairs or a constant side."""
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    result = stats.spearmanr(b, a)
    return float(result.statistic), float(result.pvalue)


def _rho(corr: tuple[float, float] | None, n: int) -> str:
    return f"ρ = {corr[0]:.2f} (p = {corr[1]:.2g}, {n} runs)" if corr else "not defined (too few runs)"


def constant_vaes(configs: list[Config]) -> list[Config]:
    """The β-VAE with a constant KL weight: phase 1 of the study, the paper's grid."""
    return [c for c in configs if c.text(KIND, "vae") == "vae" and c.text(SCHEDULE, "constant") == "constant"]


def best_beta_by_latent(configs: list[Config], detection: str) -> dict[float, dict[str, float]]:
    """Per latent size, the beta of the constant-schedule beta-VAE with the best mean detection
    and the one with the lowest mean reconstruction MSE (normal test data), with those means."""
    plain = constant_vaes(configs)
    best = {}
    for latent in sorted({c.param(LATENT) for c in plain}):
        here = [c for c in plain if c.param(LATENT) == latent]
        det = [(np.nanmean(c.values(detection)), c.param(BETA)) for c in here if np.isfinite(c.values(detection)).any()]
        rec = [(np.nanmean(c.values(MSE)), c.param(BETA)) for c in here if np.isfinite(c.values(MSE)).any()]
        if det and rec:
            (d, d_beta), (r, r_beta) = max(det), min(rec)
            best[latent] = {"detection_beta": d_beta, "detection": d, "reconstruction_beta": r_beta, "mse": r}
    return best


# --- The paper's four claims ------------------------------------------------------------------

ALPHA = 0.05  # the significance level of every test of the claims
CLAIMS = {
    "1": ("Larger β detects better and reconstructs worse",
          "per latent size, Spearman ρ over the constant-β VAE's runs (every seed) of β against "
          "ROC-AUC and of β against the MSE of normal test images; yes if at every latent size "
          f"both ρ > 0 with p < {ALPHA}, no if at no latent size ROC-AUC rises so, partly otherwise"),
    "2": ("Across seeds, detection follows the latent distance between normal and anomalous",
          "Spearman ρ of each run's ROC-AUC minus its configuration's mean against its latent W2 "
          "relative to its configuration's mean, pooled over every configuration of two or more "
          f"seeds; yes if ρ > 0 with p < {ALPHA}, partly if not pooled but within the "
          "configurations of some latent size, no otherwise"),
    "3": ("β-scheduling softens the trade-off",
          "each schedule against the constant β at the same β and latent size: it softens the "
          "trade-off when its mean ROC-AUC is higher, or its mean MSE lower, by more than the "
          "margin (the larger seed std of the two configurations), and the other is not worse by "
          "more than the margin; yes if every pair softens, no if none, partly otherwise"),
    "4": ("The Sparse VAE detects better at high reconstruction quality",
          "the Sparse VAE against the constant-β VAE at the same β and latent size: mean ROC-AUC "
          "higher by more than the margin (as in 3) and mean MSE not higher by more than it; yes if "
          "in every pair, no if in none, partly otherwise"),
}


def verdict(holds: list[bool]) -> str:
    """yes / partly / no over the comparisons a claim makes; "not answered" without any."""
    if not holds:
        return "not answered"
    return "yes" if all(holds) else "no" if not any(holds) else "partly"


def _significant(corr: tuple[float, float] | None) -> bool:
    return corr is not None and corr[0] > 0 and corr[1] < ALPHA


def _corr(corr: tuple[float, float] | None, n: int) -> dict[str, Any]:
    return {"rho": corr[0] if corr else None, "p": corr[1] if corr else None, "runs": n}


def claim_tradeoff(configs: list[Config], detection: str) -> dict[str, Any]:
    plain = constant_vaes(configs)
    rows = []
    for latent in sorted({c.param(LATENT) for c in plain}):
        here = [c for c in plain if c.param(LATENT) == latent]
        beta = np.concatenate([np.full(len(c.runs), c.param(BETA)) for c in here])
        det, mse = (np.concatenate([c.values(k) for c in here]) for k in (detection, MSE))
        ok = np.isfinite(det) & np.isfinite(mse)
        if len(set(beta[ok])) < 2:
            continue
        d, m = spearman(det[ok], beta[ok]), spearman(mse[ok], beta[ok])
        rows.append({"latent": latent, "detection": _corr(d, int(ok.sum())), "mse": _corr(m, int(ok.sum())),
                     "detects_better": _significant(d), "reconstructs_worse": _significant(m)})
    if rows and not any(r["detects_better"] for r in rows):
        answer = "no"
    else:
        answer = verdict([r["detects_better"] and r["reconstructs_worse"] for r in rows])
    return {"verdict": answer, "by_latent": rows}


def claim_seed_variability(configs: list[Config], detection: str) -> dict[str, Any]:
    pooled = within_config_deviations(configs, detection)
    corr = spearman(*pooled)
    by_latent = []
    for latent in sorted({c.param(LATENT) for c in configs}):
        dev = within_config_deviations([c for c in configs if c.param(LATENT) == latent], detection)
        by_latent.append({"latent": latent, **_corr(spearman(*dev), len(dev[0]))})
    if corr is None:
        answer = "not answered"
    elif _significant(corr):
        answer = "yes"
    else:
        answer = "partly" if any(r["rho"] is not None and r["rho"] > 0 and r["p"] < ALPHA for r in by_latent) else "no"
    return {"verdict": answer, "pooled": _corr(corr, len(pooled[0])), "by_latent": by_latent}


def compare(config: Config, reference: Config, detection: str) -> dict[str, Any]:
    """``config`` against ``reference``: the differences of mean detection and mean MSE, each
    better or worse when beyond the margin, the larger seed std of the two."""
    out: dict[str, Any] = {}
    for name, key, sign in (("detection", detection, 1.0), ("mse", MSE, -1.0)):
        a, b = config.values(key), reference.values(key)
        a, b = a[np.isfinite(a)], b[np.isfinite(b)]
        if not (len(a) and len(b)):
            return {}
        diff, margin = float(a.mean() - b.mean()), max(_std(a), _std(b))
        out[name] = {"difference": diff, "margin": margin, "better": sign * diff > margin, "worse": sign * diff < -margin}
    return out


def _pairs(configs: list[Config], variant: Any, detection: str, variant_keys: list[str]) -> list[dict[str, Any]]:
    """Each config that ``variant`` selects, compared with the constant-β VAE at its β and latent size."""
    reference = {(c.param(BETA), c.param(LATENT)): c for c in constant_vaes(configs)}
    pairs = []
    for c in filter(variant, configs):
        ref = reference.get((c.param(BETA), c.param(LATENT)))
        result = compare(c, ref, detection) if ref is not None else {}
        if result:
            pairs.append({"variant": variant_label(c, variant_keys), "beta": c.param(BETA), "latent": c.param(LATENT), **result})
    return pairs


def claim_schedules(configs: list[Config], detection: str, variant_keys: list[str]) -> dict[str, Any]:
    pairs = _pairs(configs, lambda c: c.text(KIND, "vae") == "vae" and c.text(SCHEDULE, "constant") != "constant",
                   detection, variant_keys)
    for p in pairs:
        d, m = p["detection"], p["mse"]
        p["softens"] = (d["better"] and not m["worse"]) or (m["better"] and not d["worse"])
    return {"verdict": verdict([p["softens"] for p in pairs]), "pairs": pairs}


def claim_sparse(configs: list[Config], detection: str, variant_keys: list[str]) -> dict[str, Any]:
    pairs = _pairs(configs, lambda c: c.text(KIND, "vae") == "sparse", detection, variant_keys)
    for p in pairs:
        p["detects_better_keeping_reconstruction"] = p["detection"]["better"] and not p["mse"]["worse"]
    return {"verdict": verdict([p["detects_better_keeping_reconstruction"] for p in pairs]), "pairs": pairs}


def claims(configs: list[Config], detection: str, variant_keys: list[str]) -> dict[str, dict[str, Any]]:
    return {
        "1": claim_tradeoff(configs, detection),
        "2": claim_seed_variability(configs, detection),
        "3": claim_schedules(configs, detection, variant_keys),
        "4": claim_sparse(configs, detection, variant_keys),
    }


def _num(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}g}" if abs(value) < 0.01 else f"{value:.{digits}f}"


def _evidence(number: str, claim: dict[str, Any]) -> str:
    """The numbers behind a claim's verdict, on one line."""
    if number == "1":
        return "; ".join(f"latent {r['latent']:g}: ρ(β, ROC-AUC) = {_num(r['detection']['rho'])} "
                         f"(p = {_num(r['detection']['p'])}), ρ(β, MSE) = {_num(r['mse']['rho'])} (p = {_num(r['mse']['p'])})"
                         for r in claim["by_latent"])
    if number == "2":
        pooled = claim["pooled"]
        return (f"pooled ρ = {_num(pooled['rho'])} (p = {_num(pooled['p'])}, {pooled['runs']} runs); " +
                "; ".join(f"latent {r['latent']:g}: ρ = {_num(r['rho'])} (p = {_num(r['p'])})" for r in claim["by_latent"]))
    return "; ".join(f"{p['variant']} β = {p['beta']:g} latent {p['latent']:g}: ROC-AUC {p['detection']['difference']:+.3f}, "
                     f"MSE {p['mse']['difference']:+.3g} (margins {p['detection']['margin']:.2g}, {p['mse']['margin']:.2g})"
                     for p in claim["pairs"])


# --- Readings, tables, notes ------------------------------------------------------------------

def default_readings(runs: list[Run]) -> list[str]:
    """The reconstruction error's ROC-AUC (the paper's reading) and score.primary's (the
    project's recommended score, in a study), when the runs have them."""
    primaries = {r.params.get(PRIMARY) for r in runs}
    readings = [RECONSTRUCTION_READING] + [f"scores.{p}.roc_auc" for p in primaries if len(primaries) == 1 and p]
    present = [k for k in dict.fromkeys(readings) if any(not math.isnan(_number(r.metrics.get(k))) for r in runs)]
    return present or ["roc_auc"]


def reading_title(key: str) -> str:
    """"ROC-AUC, reconstruction error", "ROC-AUC, combined", or the key."""
    if key == RECONSTRUCTION_READING:
        return "ROC-AUC, reconstruction error"
    parts = key.split(".")
    if len(parts) == 3 and parts[0] == "scores":
        return f"{'ROC-AUC' if parts[2] == 'roc_auc' else 'PR-AUC'}, {parts[1]}"
    return key


def per_type_keys(configs: list[Config], reading: str) -> list[tuple[str, str]]:
    """(anomaly type, key) of the reading's ROC-AUC per anomaly type (class), where runs have it."""
    prefix = reading.removesuffix("roc_auc") + "per_type."
    keys = sorted({k for c in configs for r in c.runs for k in r.metrics
                   if k.startswith(prefix) and k.endswith(".roc_auc") and k.count(".") == prefix.count(".") + 1})
    return [(k.removeprefix(prefix).removesuffix(".roc_auc"), k) for k in keys]


def _config_cells(c: Config, variant_keys: list[str]) -> list[str]:
    cells = [variant_label(c, variant_keys)] if variant_keys else []
    return cells + ["–" if is_autoencoder(c) else f"{c.param(BETA):g}", f"{c.param(LATENT):g}", str(len(c.runs))]


def table_columns(configs: list[Config], readings: list[str]) -> list[tuple[str, str]]:
    columns = [(reading_title(r), r) for r in readings] + [(t, k) for t, k in COLUMNS if k not in readings]
    # Leave out metric columns no run has (SSIM on tabular data).
    return [(t, k) for t, k in columns if any(np.isfinite(c.values(k)).any() for c in configs)]


def markdown_table(configs: list[Config], variant_keys: list[str], readings: list[str]) -> str:
    head = (["variant"] if variant_keys else []) + ["beta", "latent", "seeds"]
    columns = table_columns(configs, readings)
    rows = [_config_cells(c, variant_keys) + [mean_std(c.values(k)) for _, k in columns] for c in configs]
    text = tabulate(rows, head + [t for t, _ in columns], tablefmt="github", disable_numparse=True) + "\n"
    per_type = [(f"{kind}, {reading_title(r).removeprefix('ROC-AUC, ')}", k) for r in readings for kind, k in per_type_keys(configs, r)]
    if per_type:
        rows = [_config_cells(c, variant_keys) + [mean_std(c.values(k)) for _, k in per_type] for c in configs]
        text += ("\nROC-AUC per held-out class (that class against every normal test image):\n\n"
                 + tabulate(rows, head + [t for t, _ in per_type], tablefmt="github", disable_numparse=True) + "\n")
    return text


def reading_notes(configs: list[Config], detection: str, verdicts: dict[str, dict[str, Any]]) -> str:
    within, across = within_config_deviations(configs, detection), across_runs(configs, detection)
    lines = ["", f"### Read with {reading_title(detection)} (`{detection}`)", "",
             f"Spearman correlation of {detection} with the latent W2 distance:",
             f"- within configurations (each run's deviation from its configuration's mean over seeds, "
             f"pooled): {_rho(spearman(*within), len(within[0]))}",
             f"- across configurations (every run; W2 is in each model's own latent units): "
             f"{_rho(spearman(*across), len(across[0]))}"]
    best = best_beta_by_latent(configs, detection)
    if best:
        lines += ["", "Constant-schedule β-VAE, by latent size:"]
        lines += [f"- latent size {latent:g}: best {detection} at β = {b['detection_beta']:g} ({b['detection']:.3f}); "
                  f"best reconstruction at β = {b['reconstruction_beta']:g} (MSE {b['mse']:.4g})" for latent, b in best.items()]
    lines += ["", "The paper's claims:"]
    lines += [f"{n}. {CLAIMS[n][0]}: **{v['verdict']}**" + (f". {_evidence(n, v)}" if _evidence(n, v) else "")
              for n, v in verdicts.items()]
    return "\n".join(lines) + "\n"


def claims_text(answers: dict[str, dict[str, dict[str, Any]]]) -> str:
    """The rules of the verdicts, and where the readings disagree."""
    lines = ["", "### The verdicts' rules", ""] + [f"{n}. {title}: {rule}." for n, (title, rule) in CLAIMS.items()]
    readings = list(answers)
    if len(readings) > 1:
        differ = [n for n in CLAIMS if len({answers[r][n]["verdict"] for r in readings}) > 1]
        lines += ["", "Where the readings disagree: " + ("; ".join(
            f"claim {n}, " + ", ".join(f"{reading_title(r)} **{answers[r][n]['verdict']}**" for r in readings)
            for n in differ) if differ else "nowhere; every claim has the same verdict under each reading.")]
    return "\n".join(lines) + "\n"


def _rounded(obj: Any) -> Any:
    """Floats to 6 significant digits (NaN as null), so summary.json changes only with the runs."""
    if isinstance(obj, dict):
        return {str(k): _rounded(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_rounded(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (float, np.floating)):
        return None if not math.isfinite(obj) else float(f"{float(obj):.6g}")
    return obj


def summary(configs: list[Config], variant_keys: list[str], readings: list[str],
            answers: dict[str, dict[str, Any]]) -> dict[str, Any]:
    keys = [k for _, k in table_columns(configs, readings)] + [k for r in readings for _, k in per_type_keys(configs, r)]
    return _rounded({
        "runs": sum(len(c.runs) for c in configs),
        "readings": readings,
        "configurations": [{
            "variant": variant_label(c, variant_keys), "beta": None if is_autoencoder(c) else c.param(BETA),
            "latent": c.param(LATENT), "seeds": len(c.runs),
            "mean": {k: float(np.nanmean(c.values(k))) if np.isfinite(c.values(k)).any() else None for k in keys},
            "std": {k: _std(c.values(k)[np.isfinite(c.values(k))]) for k in keys},
        } for c in configs],
        "best_beta": {r: best_beta_by_latent(configs, r) for r in readings},
        "claims": {"alpha": ALPHA, "rules": {n: {"claim": t, "rule": rule} for n, (t, rule) in CLAIMS.items()},
                   "by_reading": answers},
    })


# --- Figures ----------------------------------------------------------------------------------

def _style(configs: list[Config], variant_keys: list[str]) -> tuple[dict, dict, dict]:
    """Colour per beta (ordered, log-spaced values read well on viridis; grey for the
    autoencoder, which has none), marker per variant."""
    betas = sorted({c.param(BETA) for c in configs if not is_autoencoder(c)})
    cmap = plt.get_cmap("viridis")
    color = {b: cmap(i / max(1, len(betas) - 1) * 0.9) for i, b in enumerate(betas)}
    variants = list(dict.fromkeys(variant_label(c, variant_keys) for c in configs))
    marker = {v: MARKERS[i % len(MARKERS)] for i, v in enumerate(variants)}

    def colour_of(c: Config) -> Any:
        return "0.45" if is_autoencoder(c) else color[c.param(BETA)]

    return color, marker, {id(c): colour_of(c) for c in configs}


def _legend(fig: plt.Figure, color: dict, marker: dict) -> None:
    """One legend beside the panels: beta by colour, variant by marker."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=c, marker="o", ls="", label=f"β = {b:g}") for b, c in color.items()]
    if len(marker) > 1:
        handles += [Line2D([], [], color="0.3", marker=m, ls="", label=v) for v, m in marker.items()]
    fig.legend(handles=handles, fontsize=8, loc="outside right center", frameon=False)


def tradeoff_figure(configs: list[Config], variant_keys: list[str], readings: list[str]) -> plt.Figure:
    """Reconstruction MSE on normal data against each detection reading (rows), one panel per
    latent size (columns)."""
    latents = sorted({c.param(LATENT) for c in configs})
    fig, axes = plt.subplots(len(readings), len(latents), figsize=(4.2 * len(latents) + 1.8, 4.2 * len(readings)),
                             squeeze=False, sharey=True, layout="constrained")
    color, marker, colour_of = _style(configs, variant_keys)
    for row, detection in zip(axes, readings):
        for ax, latent in zip(row, latents):
            path: dict[str, list[tuple[float, float, float]]] = defaultdict(list)  # variant -> (beta, x, y)
            for c in (c for c in configs if c.param(LATENT) == latent):
                x, y = c.values(detection), c.values(MSE)
                ok = np.isfinite(x) & np.isfinite(y)
                if not ok.any():
                    continue
                label = variant_label(c, variant_keys)
                path[label].append((c.param(BETA), x[ok].mean(), y[ok].mean()))
                col, mark = colour_of[id(c)], marker[label]
                ax.scatter(x[ok], y[ok], s=10, color=col, marker=mark, alpha=0.35, linewidths=0)
                ax.errorbar(x[ok].mean(), y[ok].mean(), xerr=_std(x[ok]), yerr=_std(y[ok]), color=col,
                            marker=mark, ms=7, mec="black", mew=0.6, elinewidth=1, capsize=2)
            for points in path.values():  # each variant's means joined in order of beta
                if len(points) > 1:
                    _, xs, ys = zip(*sorted(points))
                    ax.plot(xs, ys, color="grey", lw=0.8, zorder=0)
            ax.set_title(f"latent size {latent:g}")
            ax.set_xlabel(f"{reading_title(detection)} (test)")
            ax.grid(alpha=0.3)
        row[0].set_ylabel("reconstruction MSE, normal test data")
    all_mse = np.concatenate([c.values(MSE) for c in configs])
    all_mse = all_mse[np.isfinite(all_mse) & (all_mse > 0)]
    if len(all_mse) and all_mse.max() / all_mse.min() > 20:
        axes[0][0].set_yscale("log")
    _legend(fig, color, marker)
    fig.suptitle("Reconstruction against detection: better is down and to the right "
                 "(dots: runs; markers: mean ± std over seeds; lines join a variant's β values)", fontsize=10)
    return fig


def seed_variability_figure(configs: list[Config], variant_keys: list[str], readings: list[str]) -> plt.Figure:
    """Each detection reading (rows) against the latent W2 distance, per run (left) and as
    deviations from each configuration's mean (right)."""
    fig, axes = plt.subplots(len(readings), 2, figsize=(12, 4.4 * len(readings)), squeeze=False, layout="constrained")
    color, marker, colour_of = _style(configs, variant_keys)
    for (ax_raw, ax_dev), detection in zip(axes, readings):
        for c in configs:
            x, y = c.values(W2), c.values(detection)
            ok = np.isfinite(x) & np.isfinite(y)
            if ok.any():
                ax_raw.scatter(x[ok], y[ok], s=14, color=colour_of[id(c)],
                               marker=marker[variant_label(c, variant_keys)], alpha=0.7)
        ax_raw.set_xlabel("W2(normal, anomalous) of posterior means, test set")
        ax_raw.set_ylabel(f"{reading_title(detection)} (test)")
        across = across_runs(configs, detection)
        corr = spearman(*across)
        ax_raw.set_title("every run (across configurations)" +
                         (f"\nSpearman ρ = {corr[0]:.2f} (p = {corr[1]:.2g}, {len(across[0])} runs)" if corr else ""))
        if np.ptp(across[1]) > 0 and across[1].min() > 0 and across[1].max() / across[1].min() > 20:
            ax_raw.set_xscale("log")
        d_auc, d_w2 = within_config_deviations(configs, detection)
        ax_dev.scatter(d_w2, d_auc, s=14, color="tab:blue", alpha=0.7)
        ax_dev.axhline(0, color="grey", lw=0.8)
        ax_dev.axvline(0, color="grey", lw=0.8)
        corr = spearman(d_auc, d_w2)
        ax_dev.set_title("across seeds, within each configuration" +
                         (f"\nSpearman ρ = {corr[0]:.2f} (p = {corr[1]:.2g}, {len(d_auc)} runs)" if corr else ""))
        ax_dev.set_xlabel("W2 / configuration mean − 1")
        ax_dev.set_ylabel(f"{reading_title(detection)} − configuration mean")
        for ax in (ax_raw, ax_dev):
            ax.grid(alpha=0.3)
    _legend(fig, color, marker)
    return fig


# --- Reading, writing, the command line -------------------------------------------------------

def read_rows(path: Path | None, all_commits: bool) -> list[dict[str, Any]]:
    """The experiments: rows saved with --save in ``path``, or `dvc.api.exp_show()` here."""
    if path is not None:
        if not path.is_file():
            raise UserError(f"{path} not found; save one with `python -m scripts.aggregate --save {path}`")
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise UserError(f"{path} is not JSON ({err}); expected rows saved with --save") from err
    import dvc.api
    from dvc.exceptions import DvcException

    try:
        rows = dvc.api.exp_show(num=-1 if all_commits else 1)
    except DvcException as err:
        raise UserError(f"dvc.api.exp_show() failed; run this from the project root (a DVC "
                        f"repository): {err}") from err
    log.info("read %d rows from dvc.api.exp_show()%s", len(rows), " (every commit)" if all_commits else "")
    return with_detail(rows)


def with_detail(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` with each finished run's reports/detail.json and reports/train_metrics.json
    added as "file:key" columns: DVC shows only dvc.yaml's metrics, so these are read at the
    run's revision."""
    import dvc.api

    for row in rows:
        if row.get("State") in UNFINISHED:
            continue
        rev = None if row.get("rev") == "workspace" else row.get("rev")
        for file in REVISION_FILES:
            try:
                report = dvc.api.metrics_show(file, rev=rev)
            except FileNotFoundError:  # a revision from before the file: its columns stay empty
                continue
            row.update({f"{file}:{key}": value for key, value in flatten(report).items()})
    return rows


def save_runs(runs: list[Run], path: Path) -> None:
    """The runs as exp_show()-like rows with the params and metrics aggregation reads."""
    rows = [{"Experiment": r.name, **r.params, **r.metrics} for r in runs]
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(rows, indent=0, default=str) + "\n")
    log.info("wrote %s (%d runs)", path, len(rows))


def aggregate(runs: list[Run], out: Path, readings: list[str] | None = None) -> str:
    """Write table.md, summary.json and the two figures under ``out`` for ``readings`` (the
    detection metrics; default_readings when None); return the table and its notes."""
    if not runs:
        raise UserError(f"no finished run, so nothing to aggregate; {SWEEP_HINT}")
    readings = readings or default_readings(runs)
    for reading in readings:
        if not any(not math.isnan(_number(r.metrics.get(reading))) for r in runs):
            raise UserError(f"--detection {reading!r}: no run has it; use roc_auc, pr_auc, or a "
                            "scores.<score>.roc_auc or per_type.<kind>.roc_auc key of reports/detail.json")
    configs, variant_keys = group_runs(runs)
    log.info("%d runs in %d configurations; params that tell variants apart besides beta and "
             "latent size: %s; detection read as %s", len(runs), len(configs), ", ".join(variant_keys) or "none",
             ", ".join(readings))
    answers = {r: claims(configs, r, variant_keys) for r in readings}
    text = (markdown_table(configs, variant_keys, readings)
            + "".join(reading_notes(configs, r, answers[r]) for r in readings) + claims_text(answers))
    with atomic_path(out / "table.md") as tmp:
        tmp.write_text(text)
    log.info("wrote %s", out / "table.md")
    write_json(out / "summary.json", summary(configs, variant_keys, readings, answers))
    save_figure(tradeoff_figure(configs, variant_keys, readings), out / "tradeoff.png")
    save_figure(seed_variability_figure(configs, variant_keys, readings), out / "seed_variability.png")
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, help="a study's runs.csv (scripts.study); default: DVC experiments")
    parser.add_argument("--prefix", default="", help="only experiments whose name starts with this "
                        "(the -n of `dvc exp run --queue`), e.g. tradeoff-mnist-")
    parser.add_argument("--where", action="append", default=[], metavar="KEY=VALUE",
                        help="only experiments with this param value, e.g. data.source=mnist (repeatable)")
    parser.add_argument("--input", type=Path, help="experiments saved with --save (default: dvc.api.exp_show() here)")
    parser.add_argument("--save", type=Path, help="also write the runs used, as JSON rows, to this file")
    parser.add_argument("--all-commits", action="store_true",
                        help="experiments of every commit before HEAD too, not only of HEAD")
    parser.add_argument("--out", type=Path, default=Path("reports/study"), help="output folder")
    parser.add_argument("--detection", action="append", help="a detection reading, a dotted key of "
                        "reports/metrics.json or reports/detail.json (repeatable; default: scores.reconstruction_mse.roc_auc and "
                        "scores.<score.primary>.roc_auc)")
    args = parser.parse_args(argv)
    if args.runs is not None:
        if args.input or args.prefix or args.where or args.all_commits:
            raise UserError("--runs reads a study's table; --input, --prefix, --where and --all-commits "
                            "choose DVC experiments: give one or the other")
        runs = read_runs_table(args.runs)
    else:
        where = parse_where(args.where)
        runs, skipped = collect_runs(read_rows(args.input, args.all_commits), args.prefix, where)
        if skipped:
            log.info("left out: %s", ", ".join(f"{n} ({why})" for why, n in sorted(skipped.items())))
        if not runs:
            chosen = " ".join([f"--prefix {args.prefix}"] * bool(args.prefix) + [f"--where {k}={v}" for k, v in where.items()])
            raise UserError(f"no finished experiment with {METRICS_FILE}{' matches ' + chosen if chosen else ''}, "
                            f"so nothing to aggregate; {SWEEP_HINT}")
    if args.save is not None:
        save_runs(runs, args.save)
    sys.stdout.write(aggregate(runs, args.out, args.detection))


if __name__ == "__main__":
    run_main(main)
