"""Aggregate one study's DVC experiments into the reconstruction-detection trade-off view.

    python -m scripts.aggregate --prefix tradeoff-mnist-      # experiments named tradeoff-mnist-*
    python -m scripts.aggregate --where data.source=mnist     # or those with these params
    python -m scripts.aggregate --input runs.json             # or a copy saved with --save

The runs come from `dvc.api.exp_show()` (the experiments of git HEAD; --all-commits for those
of every earlier commit too): every finished experiment whose name starts with --prefix and
whose params match every --where, so stale or unrelated experiments never mix in. Runs are
grouped into configurations by every param except `train.seed`, and each configuration's
metrics are summarised as mean ± std over its seeds. Writes, under --out (default
reports/study/):

- tradeoff.png: reconstruction MSE on normal test data against ROC-AUC, one panel per latent
  size, colour = beta, marker = variant (model, KL schedule, any other param that varies);
  small dots are runs, large ones the mean ± std over seeds;
- seed_variability.png: ROC-AUC against the W2 distance between the latent distributions of
  normal and anomalous test samples, per run, and the same as deviations from each
  configuration's mean, with their Spearman correlations;
- table.md: mean ± std per configuration, then the best beta per latent size and the
  correlations.

The reading follows Senellart, Solal, Allassonnière & Burgos, "Mitigating the reconstruction-
detection trade-off in VAE-based unsupervised anomaly detection" (ISBI 2026).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats
from tabulate import tabulate

from vae_anomaly import plots
from vae_anomaly.io import UserError, atomic_path, log, run_main
from vae_anomaly.params import SCHEMA

plt = plots.plt
PARAMS_FILE, METRICS_FILE, TRAIN_METRICS_FILE = "params.yaml", "reports/metrics.json", "reports/train_metrics.json"
DETAIL_FILE = "reports/detail.json"  # not a DVC metric: read at each run's revision (with_detail)
SEED, BETA, LATENT, KIND, SCHEDULE = "train.seed", "model.beta", "model.latent_dim", "model.kind", "train.kl_schedule"
MSE, W2 = "reconstruction.mse_normal", "latent.w2_normal_anomaly"
# (column title, metrics file, key); the detection metric comes first, from --detection.
COLUMNS = [
    ("ROC-AUC, recon. error", DETAIL_FILE, "scores.reconstruction_mse.roc_auc"),
    ("PR-AUC", METRICS_FILE, "pr_auc"),
    ("MSE normal", DETAIL_FILE, MSE),
    ("SSIM normal", DETAIL_FILE, "reconstruction.ssim_normal"),
    ("latent W2", DETAIL_FILE, W2),
    ("active dims", DETAIL_FILE, "latent.active_dims"),
    ("epochs", TRAIN_METRICS_FILE, "epochs_run"),
]
MODEL_NAMES = {"vae": "β-VAE", "sparse": "Sparse VAE", "ae": "AE"}
UNFINISHED = {"Queued", "Running", "Failed"}  # the State of experiments with no result of their own
MARKERS = "osD^vP*Xph<>"
SWEEP_HINT = (
    "queue a sweep first, e.g. dvc exp run --queue -n my-study -S 'model.beta=0.1,1,10' "
    "-S 'train.seed=range(0,3)', then dvc queue start -j 2 (see docs/study.md)"
)


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


PARAM_KEYS = list(flatten(SCHEMA))


@dataclass
class Run:
    name: str
    params: dict[str, Any]  # "model.beta" -> 1.0, every key of the params schema
    metrics: dict[str, Any]  # "roc_auc" -> 0.8, "epochs_run" -> 30: the keys of COLUMNS and more


@dataclass
class Config:
    """Runs that differ only in train.seed."""

    params: dict[str, Any]
    runs: list[Run] = field(default_factory=list)

    def param(self, key: str) -> float:
        """A numeric param shared by the runs (beta, latent size), NaN if absent."""
        return _number(self.runs[0].params.get(key))

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
        metrics = {k: _cell(row, f, k) for f, k in [(METRICS_FILE, "roc_auc"), *((f, k) for _, f, k in COLUMNS)]}
        metrics.update(_detection_metrics(row))
        if math.isnan(_number(metrics.get("roc_auc"))):
            skipped["no metrics"] += 1
            continue
        key = json.dumps([params, metrics], sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            runs.append(Run(name, params, metrics))
    return runs, skipped


def _detection_metrics(row: dict[str, Any]) -> dict[str, Any]:
    """The ranking metrics of reports/detail.json a --detection may name: every score's and
    every anomaly type's ROC-AUC and PR-AUC (scores.*, per_type.*)."""
    out = {}
    for column, value in row.items():
        file, sep, key = column.rpartition(":")
        if (not sep or file in (METRICS_FILE, DETAIL_FILE)) and key.startswith(("scores.", "per_type.")) \
                and key.endswith(("roc_auc", "pr_auc")) and not math.isnan(_number(value)):
            out[key] = value
    return out


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
    return config.runs[0].params.get(KIND) == "ae"


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


def spearman(detection: np.ndarray, w2: np.ndarray) -> tuple[float, float] | None:
    """Spearman's rho between paired detection and W2 values, and its p-value; None with
    fewer than three pairs or a constant side."""
    if len(detection) < 3 or np.ptp(detection) == 0 or np.ptp(w2) == 0:
        return None
    result = stats.spearmanr(w2, detection)
    return float(result.statistic), float(result.pvalue)


def _rho(corr: tuple[float, float] | None, n: int) -> str:
    return f"ρ = {corr[0]:.2f} (p = {corr[1]:.2g}, {n} runs)" if corr else "not defined (too few runs)"


def best_beta_by_latent(configs: list[Config], detection: str) -> dict[float, dict[str, float]]:
    """Per latent size, the beta of the constant-schedule beta-VAE with the best mean detection
    and the one with the lowest mean reconstruction MSE (normal test data), with those means."""
    plain = [c for c in configs if c.runs[0].params.get(KIND, "vae") == "vae"
             and c.runs[0].params.get(SCHEDULE, "constant") == "constant"]
    best = {}
    for latent in sorted({c.param(LATENT) for c in plain}):
        here = [c for c in plain if c.param(LATENT) == latent]
        det = [(np.nanmean(c.values(detection)), c.param(BETA)) for c in here if np.isfinite(c.values(detection)).any()]
        rec = [(np.nanmean(c.values(MSE)), c.param(BETA)) for c in here if np.isfinite(c.values(MSE)).any()]
        if det and rec:
            (d, d_beta), (r, r_beta) = max(det), min(rec)
            best[latent] = {"detection_beta": d_beta, "detection": d, "reconstruction_beta": r_beta, "mse": r}
    return best


def best_betas(configs: list[Config], detection: str) -> list[str]:
    """best_beta_by_latent, as the table's notes."""
    return [f"- latent size {latent:g}: best {detection} at β = {b['detection_beta']:g} ({b['detection']:.3f}); "
            f"best reconstruction at β = {b['reconstruction_beta']:g} (MSE {b['mse']:.4g})"
            for latent, b in best_beta_by_latent(configs, detection).items()]


def per_type_columns(configs: list[Config]) -> list[tuple[str, str]]:
    """The primary score's ROC-AUC per anomaly type (class), where the runs have them."""
    keys = sorted({k for c in configs for r in c.runs for k in r.metrics
                   if k.startswith("per_type.") and k.endswith(".roc_auc")})
    return [(f"roc_auc, {k.removeprefix('per_type.').removesuffix('.roc_auc')}", k) for k in keys]


def markdown_table(configs: list[Config], variant_keys: list[str], detection: str) -> str:
    columns = [(detection, detection), *((t, k) for t, _, k in COLUMNS[:1]), *per_type_columns(configs),
               *((t, k) for t, _, k in COLUMNS[1:])]
    # Leave out metric columns no run has (SSIM on tabular data).
    columns = [(t, k) for t, k in columns if any(np.isfinite(c.values(k)).any() for c in configs)]
    head = (["variant"] if variant_keys else []) + ["beta", "latent", "seeds"] + [t for t, _ in columns]
    rows = []
    for c in configs:
        cells = [variant_label(c, variant_keys)] if variant_keys else []
        cells += ["–" if is_autoencoder(c) else f"{c.param(BETA):g}", f"{c.param(LATENT):g}", str(len(c.runs))]
        cells += [mean_std(c.values(k)) for _, k in columns]
        rows.append(cells)
    return tabulate(rows, head, tablefmt="github", disable_numparse=True) + "\n"


def summary_notes(configs: list[Config], detection: str) -> str:
    within, across = within_config_deviations(configs, detection), across_runs(configs, detection)
    lines = ["", f"Spearman correlation of {detection} with the latent W2 distance:",
             f"- within configurations (each run's deviation from its configuration's mean over seeds, "
             f"pooled): {_rho(spearman(*within), len(within[0]))}",
             f"- across configurations (every run; W2 is in each model's own latent units): "
             f"{_rho(spearman(*across), len(across[0]))}"]
    best = best_betas(configs, detection)
    if best:
        lines += ["", "Constant-schedule β-VAE, by latent size:", *best]
    return "\n".join(lines) + "\n"


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


def tradeoff_figure(configs: list[Config], variant_keys: list[str], detection: str) -> plt.Figure:
    """Reconstruction MSE on normal data against the detection metric, one panel per latent size."""
    latents = sorted({c.param(LATENT) for c in configs})
    fig, axes = plt.subplots(1, len(latents), figsize=(4.2 * len(latents) + 1.8, 4.2), squeeze=False,
                             sharey=True, layout="constrained")
    color, marker, colour_of = _style(configs, variant_keys)
    for ax, latent in zip(axes[0], latents):
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
        ax.set_xlabel(f"{detection} (test)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("reconstruction MSE, normal test data")
    all_mse = np.concatenate([c.values(MSE) for c in configs])
    all_mse = all_mse[np.isfinite(all_mse) & (all_mse > 0)]
    if len(all_mse) and all_mse.max() / all_mse.min() > 20:
        axes[0][0].set_yscale("log")
    _legend(fig, color, marker)
    fig.suptitle("Reconstruction against detection: better is down and to the right "
                 "(dots: runs; markers: mean ± std over seeds; lines join a variant's β values)", fontsize=10)
    return fig


def seed_variability_figure(configs: list[Config], variant_keys: list[str], detection: str) -> plt.Figure:
    """The detection metric against the latent W2 distance, per run (left) and as deviations
    from each configuration's mean (right)."""
    fig, (ax_raw, ax_dev) = plt.subplots(1, 2, figsize=(12, 4.4), layout="constrained")
    color, marker, colour_of = _style(configs, variant_keys)
    for c in configs:
        x, y = c.values(W2), c.values(detection)
        ok = np.isfinite(x) & np.isfinite(y)
        if ok.any():
            ax_raw.scatter(x[ok], y[ok], s=14, color=colour_of[id(c)],
                           marker=marker[variant_label(c, variant_keys)], alpha=0.7)
    ax_raw.set_xlabel("W2(normal, anomalous) of posterior means, test set")
    ax_raw.set_ylabel(f"{detection} (test)")
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
    ax_dev.set_ylabel(f"{detection} − configuration mean")
    for ax in (ax_raw, ax_dev):
        ax.grid(alpha=0.3)
    _legend(fig, color, marker)
    return fig


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
    """``rows`` with each finished run's reports/detail.json added as "file:key" columns: DVC
    shows only dvc.yaml's metrics, so the detail is read at the run's revision."""
    import dvc.api

    for row in rows:
        if row.get("State") in UNFINISHED:
            continue
        try:
            detail = dvc.api.metrics_show(DETAIL_FILE, rev=None if row.get("rev") == "workspace" else row.get("rev"))
        except FileNotFoundError:  # a revision from before the file: its columns stay empty
            continue
        row.update({f"{DETAIL_FILE}:{key}": value for key, value in flatten(detail).items()})
    return rows


def save_runs(runs: list[Run], path: Path) -> None:
    """The runs as exp_show()-like rows with the params and metrics aggregation reads."""
    rows = [{"Experiment": r.name, **r.params, **r.metrics} for r in runs]
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(rows, indent=0, default=str) + "\n")
    log.info("wrote %s (%d runs)", path, len(rows))


def aggregate(rows: list[dict[str, Any]], out: Path, detection: str, prefix: str = "",
              where: dict[str, str] | None = None, save: Path | None = None) -> str:
    """Write the two figures and the table under ``out``; return the table and its notes."""
    runs, skipped = collect_runs(rows, prefix, where)
    if skipped:
        log.info("left out: %s", ", ".join(f"{n} ({why})" for why, n in sorted(skipped.items())))
    if not runs:
        chosen = " ".join([f"--prefix {prefix}"] * bool(prefix) + [f"--where {k}={v}" for k, v in (where or {}).items()])
        raise UserError(f"no finished experiment with {METRICS_FILE}{' matches ' + chosen if chosen else ''}, "
                        f"so nothing to aggregate; {SWEEP_HINT}")
    if save is not None:
        save_runs(runs, save)
    if not any(detection in r.metrics for r in runs):
        raise UserError(f"--detection {detection!r}: no run has it; use roc_auc, pr_auc (reports/metrics.json), "
                        "or a scores.<score>.roc_auc key of reports/detail.json")
    configs, variant_keys = group_runs(runs)
    log.info("%d runs in %d configurations; params that tell variants apart besides beta and "
             "latent size: %s", len(runs), len(configs), ", ".join(variant_keys) or "none")
    text = markdown_table(configs, variant_keys, detection) + summary_notes(configs, detection)
    with atomic_path(out / "table.md") as tmp:
        tmp.write_text(text)
    log.info("wrote %s", out / "table.md")
    plots.save_figure(tradeoff_figure(configs, variant_keys, detection), out / "tradeoff.png")
    plots.save_figure(seed_variability_figure(configs, variant_keys, detection), out / "seed_variability.png")
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prefix", default="", help="only experiments whose name starts with this "
                        "(the -n of `dvc exp run --queue`), e.g. tradeoff-mnist-")
    parser.add_argument("--where", action="append", default=[], metavar="KEY=VALUE",
                        help="only runs with this param value, e.g. data.source=mnist (repeatable)")
    parser.add_argument("--input", type=Path, help="runs saved with --save (default: dvc.api.exp_show() here)")
    parser.add_argument("--save", type=Path, help="also write the runs used, as JSON rows, to this file")
    parser.add_argument("--all-commits", action="store_true",
                        help="experiments of every commit before HEAD too, not only of HEAD")
    parser.add_argument("--out", type=Path, default=Path("reports/study"), help="output folder")
    parser.add_argument("--detection", default="roc_auc", help="detection metric, a dotted key of "
                        "reports/metrics.json or reports/detail.json (default roc_auc, of score.primary; "
                        "e.g. scores.reconstruction_mse.roc_auc)")
    args = parser.parse_args(argv)
    rows = read_rows(args.input, args.all_commits)
    sys.stdout.write(aggregate(rows, args.out, args.detection, args.prefix, parse_where(args.where), args.save))


if __name__ == "__main__":
    run_main(main)
