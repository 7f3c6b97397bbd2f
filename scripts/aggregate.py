"""Aggregate DVC experiments into the reconstruction-detection trade-off view.

    python -m scripts.aggregate                      # reads the experiments (dvc.api.exp_show)
    python -m scripts.aggregate --input exps.csv     # or a saved `dvc exp show --csv > exps.csv`

Every finished experiment (and the workspace and baseline commits, when they hold metrics) is
one run. Runs are grouped into configurations by every param except `train.seed`, and each
configuration's metrics are summarised as mean ± std over its seeds. Writes, under --out
(default reports/study/):

- tradeoff.png: reconstruction MSE on normal test data against ROC-AUC, one panel per latent
  size, colour = beta, marker = variant (model.kind, train.kl_schedule, any other param that
  varies); small dots are runs, large ones the mean ± std over seeds;
- seed_variability.png: ROC-AUC against the W2 distance between the latent distributions of
  normal and anomalous test samples, per run, and the same as deviations from each
  configuration's mean, with their pooled correlation;
- table.md: mean ± std per configuration.

The reading follows Senellart, Solal, Allassonnière & Burgos, "Mitigating the reconstruction-
detection trade-off in VAE-based unsupervised anomaly detection" (ISBI 2026).
"""
from __future__ import annotations

import argparse
import csv
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
METRICS_FILE = "reports/metrics.json"
SEED, BETA, LATENT = "train.seed", "model.beta", "model.latent_dim"
# (column, where in reports/metrics.json); the detection metric is added from --detection.
COLUMNS = [
    ("PR-AUC", "pr_auc"),
    ("MSE normal", "reconstruction.mse_normal"),
    ("SSIM normal", "reconstruction.ssim_normal"),
    ("latent W2", "latent.w2_normal_anomaly"),
    ("active dims", "latent.active_dims"),
    ("active dims (alpha)", "latent.active_dims_alpha"),
]
MARKERS = "osD^vP*Xph<>"
SWEEP_HINT = (
    "queue a sweep first, e.g. dvc exp run --queue -S 'model.beta=0.1,1,10' "
    "-S 'train.seed=range(0,3)', then dvc queue start -j 2 (see docs/study.md)"
)


@dataclass
class Run:
    name: str
    params: dict[str, Any]  # "model.beta" -> 1.0
    metrics: dict[str, Any]  # every other column of the run's row: "latent.w2_normal_anomaly" -> 0.2


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
        return np.array([_number(metric(r.metrics, key)) for r in self.runs], dtype=float)


def metric(row: dict[str, Any], key: str) -> Any:
    """A metric of reports/metrics.json in a row; DVC prefixes the file's path to a key that
    another metrics file has too."""
    return row.get(key, row.get(f"{METRICS_FILE}:{key}"))


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def _leaves(schema: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for name, spec in schema.items():
        keys += _leaves(spec, f"{prefix}{name}.") if isinstance(spec, dict) else [prefix + name]
    return keys


# The params, by the schema: DVC's rows mix params, metrics and dependencies' hashes in one
# namespace, and "baselines.*" is a section of both params.yaml and reports/metrics.json.
PARAM_KEYS = _leaves(SCHEMA)
ROW_INFO = ("Experiment", "rev", "typ", "Created", "parent", "State", "Executor")


def collect_runs(rows: list[dict[str, Any]]) -> tuple[list[Run], Counter]:
    """Runs with metrics from the rows of `dvc exp show` (one per workspace, commit and
    experiment; ``State`` says Queued, Running, Failed or Success). Identical runs (same
    params and metrics, e.g. the workspace and the commit it was run from) count once. Also
    returns why the others were left out."""
    # Experiments first, so a run that is also the workspace keeps its experiment's name.
    ordered = sorted(rows, key=lambda row: row.get("typ") == "baseline")
    runs, seen, skipped = [], set(), Counter()
    for row in ordered:
        if metric(row, "n_flagged") is None:  # evaluate has not written reports/metrics.json
            skipped[(row.get("State") or "no metrics").lower()] += 1
            continue
        key = json.dumps({k: v for k, v in row.items() if k not in ROW_INFO}, sort_keys=True, default=str)
        if key in seen:
            continue
        seen.add(key)
        params = {k: row[k] for k in PARAM_KEYS if k in row}
        others = {k: v for k, v in row.items() if k not in params and k not in ROW_INFO}
        runs.append(Run(row.get("Experiment") or row.get("rev") or "?", params, others))
    return runs, skipped


def group_runs(runs: list[Run]) -> tuple[list[Config], list[str]]:
    """Configurations (runs equal in every param but train.seed), sorted, and the params
    other than beta, latent size and seed that vary between them (the "variant")."""
    keys = sorted({k for r in runs for k in r.params} - {SEED})
    varying = [k for k in keys if len({json.dumps(r.params.get(k)) for r in runs}) > 1]
    configs: dict[str, Config] = {}
    for run in runs:
        fixed = {k: run.params.get(k) for k in varying}
        configs.setdefault(json.dumps(fixed, sort_keys=True), Config(fixed)).runs.append(run)
    variant_keys = [k for k in varying if k not in (BETA, LATENT)]

    def order(c: Config) -> tuple:
        return (*(str(c.params[k]) for k in variant_keys), c.param(BETA), c.param(LATENT))

    return sorted(configs.values(), key=order), variant_keys


def short(key: str, keys: list[str]) -> str:
    """The last part of a dotted key, or the whole key where that part is ambiguous."""
    last = key.rsplit(".", 1)[-1]
    return last if sum(k.rsplit(".", 1)[-1] == last for k in keys) == 1 else key


def variant_label(config: Config, variant_keys: list[str]) -> str:
    return ", ".join(f"{short(k, variant_keys)}={config.params[k]}" for k in variant_keys) or "all runs"


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
        auc, w2 = config.values(detection), config.values("latent.w2_normal_anomaly")
        ok = np.isfinite(auc) & np.isfinite(w2)
        if ok.sum() >= 2 and w2[ok].mean() > 0:
            d_auc.extend(auc[ok] - auc[ok].mean())
            d_w2.extend(w2[ok] / w2[ok].mean() - 1)
    return np.array(d_auc), np.array(d_w2)


def spearman(detection: np.ndarray, w2: np.ndarray) -> tuple[float, float] | None:
    """Spearman's rho between paired detection and W2 values, and its p-value; None with
    fewer than three pairs or a constant side."""
    if len(detection) < 3 or np.ptp(detection) == 0 or np.ptp(w2) == 0:
        return None
    result = stats.spearmanr(w2, detection)
    return float(result.statistic), float(result.pvalue)


def markdown_table(configs: list[Config], variant_keys: list[str], detection: str) -> str:
    columns = [(detection, detection), *COLUMNS]
    # Leave out metric columns no run has (SSIM on tabular data, alpha without a Sparse VAE).
    columns = [(t, k) for t, k in columns if any(np.isfinite(c.values(k)).any() for c in configs)]
    head = [short(k, variant_keys) for k in variant_keys] + ["beta", "latent", "seeds"] + [t for t, _ in columns]
    rows = []
    for c in configs:
        cells = [str(c.params[k]) for k in variant_keys]
        cells += [f"{c.param(BETA):g}", f"{c.param(LATENT):g}", str(len(c.runs))]
        cells += [mean_std(c.values(k)) for _, k in columns]
        rows.append(cells)
    return tabulate(rows, head, tablefmt="github", disable_numparse=True) + "\n"


def _style(configs: list[Config], variant_keys: list[str]):
    """Colour per beta (ordered, log-spaced values read well on viridis), marker per variant."""
    betas = sorted({c.param(BETA) for c in configs})
    cmap = plt.get_cmap("viridis")
    color = {b: cmap(i / max(1, len(betas) - 1) * 0.9) for i, b in enumerate(betas)}
    variants = list(dict.fromkeys(variant_label(c, variant_keys) for c in configs))
    marker = {v: MARKERS[i % len(MARKERS)] for i, v in enumerate(variants)}
    return color, marker


def _legend(ax: plt.Axes, color: dict, marker: dict) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=c, marker="o", ls="", label=f"β = {b:g}") for b, c in color.items()]
    if len(marker) > 1:
        handles += [Line2D([], [], color="grey", marker=m, ls="", label=v) for v, m in marker.items()]
    ax.legend(handles=handles, fontsize=7, loc="best")


def tradeoff_figure(configs: list[Config], variant_keys: list[str], detection: str) -> plt.Figure:
    """Reconstruction MSE on normal data against the detection metric, one panel per latent size."""
    latents = sorted({c.param(LATENT) for c in configs})
    fig, axes = plt.subplots(1, len(latents), figsize=(4.6 * len(latents), 4.2), squeeze=False,
                             sharey=True, layout="constrained")
    color, marker = _style(configs, variant_keys)
    mse_key = "reconstruction.mse_normal"
    for ax, latent in zip(axes[0], latents):
        path: dict[str, list[tuple[float, float, float]]] = defaultdict(list)  # variant -> (beta, x, y)
        for c in (c for c in configs if c.param(LATENT) == latent):
            x, y = c.values(detection), c.values(mse_key)
            ok = np.isfinite(x) & np.isfinite(y)
            if not ok.any():
                continue
            path[variant_label(c, variant_keys)].append((c.param(BETA), x[ok].mean(), y[ok].mean()))
            col, mark = color[c.param(BETA)], marker[variant_label(c, variant_keys)]
            ax.scatter(x[ok], y[ok], s=10, color=col, marker=mark, alpha=0.35, linewidths=0)
            ax.errorbar(x[ok].mean(), y[ok].mean(), xerr=_std(x[ok]), yerr=_std(y[ok]), color=col,
                        marker=mark, ms=7, mec="black", mew=0.6, elinewidth=1, capsize=2)
        for points in path.values():  # each variant's means joined in order of beta
            _, xs, ys = zip(*sorted(points))
            ax.plot(xs, ys, color="grey", lw=0.8, zorder=0)
        ax.set_title(f"latent size {latent:g}")
        ax.set_xlabel(f"{detection} (test)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("reconstruction MSE, normal test data")
    all_mse = np.concatenate([c.values(mse_key) for c in configs])
    all_mse = all_mse[np.isfinite(all_mse) & (all_mse > 0)]
    if len(all_mse) and all_mse.max() / all_mse.min() > 20:
        axes[0][0].set_yscale("log")
    _legend(axes[0][-1], color, marker)
    fig.suptitle("Reconstruction against detection: better is down and to the right "
                 "(dots: runs; markers: mean ± std over seeds)", fontsize=10)
    return fig


def seed_variability_figure(configs: list[Config], variant_keys: list[str], detection: str) -> plt.Figure:
    """The detection metric against the latent W2 distance, per run (left) and as deviations
    from each configuration's mean over seeds (right)."""
    fig, (ax_raw, ax_dev) = plt.subplots(1, 2, figsize=(11, 4.4), layout="constrained")
    color, marker = _style(configs, variant_keys)
    for c in configs:
        x, y = c.values("latent.w2_normal_anomaly"), c.values(detection)
        ok = np.isfinite(x) & np.isfinite(y)
        if ok.any():
            ax_raw.scatter(x[ok], y[ok], s=14, color=color[c.param(BETA)],
                           marker=marker[variant_label(c, variant_keys)], alpha=0.7)
    ax_raw.set_xlabel("W2(normal, anomalous) of posterior means, test set")
    ax_raw.set_ylabel(f"{detection} (test)")
    x_all = np.concatenate([c.values("latent.w2_normal_anomaly") for c in configs])
    y_all = np.concatenate([c.values(detection) for c in configs])
    ok = np.isfinite(x_all) & np.isfinite(y_all)
    across = spearman(y_all[ok], x_all[ok])
    ax_raw.set_title("every run" + (f"\nSpearman ρ = {across[0]:.2f} (p = {across[1]:.2g})" if across else ""))
    _legend(ax_raw, color, marker)
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
    return fig


def read_exp_show(path: Path | None, all_commits: bool) -> list[dict[str, Any]]:
    """The rows of `dvc exp show`: from a saved `--csv` copy at ``path``, or from DVC here."""
    if path is not None:
        if not path.is_file():
            raise UserError(f"{path} not found; save one with `dvc exp show --csv > {path}`")
        with open(path, newline="") as fh:
            rows = [{k: _csv_value(v) for k, v in row.items()} for row in csv.DictReader(fh)]
        if rows and "rev" not in rows[0]:
            raise UserError(f"{path} has no rev column; expected `dvc exp show --csv` output")
        return rows
    import dvc.api  # imported here: it takes a second, and --input does without it

    try:
        rows = dvc.api.exp_show(revs=None, num=-1 if all_commits else 1)
    except Exception as err:  # not a DVC repository, or DVC could not read it
        raise UserError(f"`dvc exp show` failed ({err}); run this from the project root, "
                        "a DVC repository") from err
    log.info("read %d rows of dvc exp show", len(rows))
    return rows


def _csv_value(text: str) -> Any:
    """A cell of `dvc exp show --csv`: empty for none, else a number, a list or text."""
    if text == "":
        return None
    for parse in (int, float, json.loads):
        try:
            return parse(text)
        except ValueError:
            pass
    return {"True": True, "False": False}.get(text, text)


def aggregate(exp_show: list[dict[str, Any]], out: Path, detection: str) -> str:
    """Write the two figures and the table under ``out``; return the table."""
    runs, skipped = collect_runs(exp_show)
    if skipped:
        log.info("left out (no %s): %s", METRICS_FILE, ", ".join(f"{n} {s}" for s, n in sorted(skipped.items())))
    if not runs:
        raise UserError(f"no experiment with {METRICS_FILE} found, so nothing to aggregate; {SWEEP_HINT}")
    configs, variant_keys = group_runs(runs)
    log.info("%d runs in %d configurations; params that tell variants apart besides beta and "
             "latent size: %s", len(runs), len(configs), ", ".join(variant_keys) or "none")
    table = markdown_table(configs, variant_keys, detection)
    corr = spearman(*within_config_deviations(configs, detection))
    note = (f"\nAcross seeds within a configuration, {detection} and the latent W2 distance have "
            f"Spearman ρ = {corr[0]:.2f} (p = {corr[1]:.2g}).\n" if corr else "")
    with atomic_path(out / "table.md") as tmp:
        tmp.write_text(table + note)
    log.info("wrote %s", out / "table.md")
    plots.save_figure(tradeoff_figure(configs, variant_keys, detection), out / "tradeoff.png")
    plots.save_figure(seed_variability_figure(configs, variant_keys, detection), out / "seed_variability.png")
    return table + note


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", type=Path, help="a saved `dvc exp show --csv` table "
                        "(default: read the experiments here)")
    parser.add_argument("--all-commits", action="store_true", help="experiments of every commit before HEAD too (first parents), not only HEAD's")
    parser.add_argument("--out", type=Path, default=Path("reports/study"), help="output folder")
    parser.add_argument("--detection", default="roc_auc", help="detection metric, a dotted key of "
                        "reports/metrics.json (default roc_auc, of score.primary; e.g. "
                        "scores.reconstruction_mse.roc_auc)")
    args = parser.parse_args(argv)
    sys.stdout.write(aggregate(read_exp_show(args.input, args.all_commits), args.out, args.detection))


if __name__ == "__main__":
    run_main(main)
