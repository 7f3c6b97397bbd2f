"""Detection metrics: the only code that reads test labels."""
from __future__ import annotations

from typing import Any

import numpy as np
from sklearn import metrics

from ..data.splits import NORMAL
from ..scoring.latent import (
    ACTIVE_KL_NATS,
    PRUNED_LOG_ALPHA,
    active_dims_by_alpha,
    active_dims_by_kl,
    fitted_w2,
    sparse_log_alpha,
)
from ..scoring.thresholds import flag


def ranking_metrics(labels: np.ndarray, scores: np.ndarray) -> dict[str, float | None]:
    """ROC-AUC and PR-AUC (average precision); None when ``labels`` hold a single class."""
    if len(np.unique(labels)) < 2:
        return {"roc_auc": None, "pr_auc": None}
    return {
        "roc_auc": float(metrics.roc_auc_score(labels, scores)),
        "pr_auc": float(metrics.average_precision_score(labels, scores)),
    }


def roc_table(labels: np.ndarray, scores: np.ndarray) -> dict[str, np.ndarray]:
    fpr, tpr, _ = metrics.roc_curve(labels, scores)
    return {"fpr": fpr, "tpr": tpr}


def pr_table(labels: np.ndarray, scores: np.ndarray) -> dict[str, np.ndarray]:
    precision, recall, _ = metrics.precision_recall_curve(labels, scores)
    return {"recall": recall, "precision": precision}


CURVE_COLUMNS = {"roc": ("fpr", "tpr"), "pr": ("recall", "precision")}  # of roc_table and pr_table


def curve_arrays(labels: np.ndarray, groups: dict[str, dict[str, np.ndarray]],
                 ranking: dict[str, dict[str, dict[str, float | None]]]) -> dict[str, np.ndarray]:
    """The ROC and PR curves of every score of ``groups`` ({"scores": {name: scores}, ...}),
    flat for an .npz: "<group>/<name>/<column>", the columns of roc_table and pr_table, and
    the curve's ROC-AUC and PR-AUC from ``ranking`` (ranking_metrics by group and name) as
    0-d arrays, so that a figure of the curves reads one file."""
    return {
        f"{group}/{name}/{column}": np.asarray(values)
        for group, by_name in groups.items() for name, scores in by_name.items()
        for column, values in {**roc_table(labels, scores), **pr_table(labels, scores),
                               **ranking[group][name]}.items()
    }


def weighted_ranking_metrics(
    labels: np.ndarray, scores: np.ndarray, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """ROC-AUC and average precision of ``scores`` under each row of ``weights`` (shape
    (B, N): how often each sample counts), all rows at once; ties count as scikit-learn counts
    them, and a row of ones gives scikit-learn's own values (tested against its sample_weight).

    Written out because the bootstrap needs B ~ 1,000 resamples per task, seed and detector:
    scikit-learn's metrics, one resample per call, are too slow for that (docs/suite.md, Cost);
    here a resample is a row of multiplicities and every row shares one sort of the scores.
    """
    labels = np.asarray(labels).astype(bool)
    order = np.argsort(-np.asarray(scores), kind="stable")
    sorted_scores = np.asarray(scores)[order]
    w = np.atleast_2d(weights)[:, order].astype(np.float64)
    # The last sample of each run of equal scores: a threshold is placed only there.
    ends = np.r_[np.flatnonzero(np.diff(sorted_scores) != 0), len(order) - 1]
    tp = np.cumsum(w * labels[order], axis=1)[:, ends]
    fp = np.cumsum(w * ~labels[order], axis=1)[:, ends]
    n_pos, n_neg = tp[:, -1:], fp[:, -1:]
    tpr = np.hstack([np.zeros_like(n_pos), tp]) / n_pos
    fpr = np.hstack([np.zeros_like(n_neg), fp]) / n_neg
    roc_auc = np.sum(np.diff(fpr, axis=1) * (tpr[:, 1:] + tpr[:, :-1]) / 2, axis=1)  # trapezoids
    precision = tp / np.maximum(tp + fp, np.finfo(float).tiny)
    average_precision = np.sum(np.diff(tpr, axis=1) * precision, axis=1)  # sum of dR * P
    return roc_auc, average_precision


def stratified_bootstrap_weights(labels: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    """(n_resamples, N) multiplicities of a bootstrap that resamples the anomalies and the
    normal samples separately, so every resample keeps both classes in their original counts."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    weights = np.zeros((n_resamples, len(labels)))
    for value in (0, 1):
        members = np.flatnonzero(labels == value)
        weights[:, members] = rng.multinomial(len(members), np.full(len(members), 1 / len(members)), size=n_resamples)
    return weights


def detection_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, Any]:
    """Ranking metrics, then F1, the count flagged, precision, recall and balanced accuracy
    at the threshold (in that order: `dvc exp show` shows the columns in file order)."""
    labels = np.asarray(labels).astype(int)
    predicted = flag(scores, threshold).astype(int)
    precision, recall, f1, _ = metrics.precision_recall_fscore_support(
        labels, predicted, average="binary", zero_division=0
    )
    both = len(np.unique(labels)) == 2
    return {
        **ranking_metrics(labels, scores),
        "f1": float(f1),
        "n_flagged": int(predicted.sum()),
        "precision": float(precision),
        "recall": float(recall),
        "balanced_accuracy": float(metrics.balanced_accuracy_score(labels, predicted)) if both else None,
        "n": int(len(labels)),
        "n_anomalies": int(labels.sum()),
    }


# The primary score's metrics that reports/metrics.json holds, in this order (`dvc exp show`
# and `dvc metrics diff` list keys in file order), the threshold after them: what reviewers
# compare. The rest of detection_metrics goes to reports/detail.json, so the table of
# `dvc exp show` stays narrow enough to read.
HEADLINE = ("roc_auc", "pr_auc", "f1", "n_flagged")


def evaluate(
    labels: np.ndarray,
    scores: dict[str, np.ndarray],
    primary: str,
    threshold: float,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The primary score's detection metrics at the threshold, in two documents: the headline
    (HEADLINE, then the threshold) and the rest (precision, recall, balanced accuracy, counts)."""
    metrics = detection_metrics(labels, scores[primary], threshold)
    headline = {**{k: metrics[k] for k in HEADLINE}, "threshold": threshold}
    return headline, {k: v for k, v in metrics.items() if k not in HEADLINE}


def anomaly_kind_rows(kinds: np.ndarray) -> dict[str, np.ndarray]:
    """Per anomaly kind (sorted), the rows that set it against every normal sample (a mask)."""
    normal = kinds == NORMAL
    return {kind: normal | (kinds == kind) for kind in sorted(set(kinds.tolist()) - {NORMAL})}


def per_type_metrics(
    labels: np.ndarray, kinds: np.ndarray, scores: np.ndarray, threshold: float
) -> dict[str, dict[str, Any]]:
    """The primary ``scores`` per anomaly kind: that kind against all normal samples."""
    out = {}
    for kind, subset in anomaly_kind_rows(kinds).items():
        m = detection_metrics(labels[subset], scores[subset], threshold)
        out[kind] = {k: m[k] for k in ("roc_auc", "pr_auc", "recall", "f1", "n_anomalies")}
    return out


def reconstruction_metrics(quality: dict[str, np.ndarray], labels: np.ndarray) -> dict[str, Any]:
    """Mean reconstruction MSE (and SSIM, for images) over the normal test samples."""
    normal = np.asarray(labels) == 0

    def normal_mean(name: str) -> float | None:
        return float(quality[name][normal].mean()) if name in quality and normal.any() else None

    return {"mse_normal": normal_mean("mse"), "ssim_normal": normal_mean("ssim"), "n_normal": int(normal.sum())}


def latent_metrics(latent: dict[str, np.ndarray], labels: np.ndarray) -> dict[str, Any]:
    """The W2 distance between Gaussians fitted to the posterior means of the normal and the
    anomalous test samples, and the active latent dimensions on normal test samples, by one rule
    per model (``active_dims_rule``): KL to the prior above 0.01 nats for the VAE; log alpha at
    most 3 for the Sparse VAE, whose log alpha per dimension is also listed; none for the plain
    autoencoder."""
    normal = np.asarray(labels) == 0
    mu = latent["mu"]
    out: dict[str, Any] = {
        "latent_dim": int(mu.shape[1]),
        "w2_normal_anomaly": fitted_w2(mu[normal], mu[~normal]),
        "active_dims": None,
        "active_dims_rule": None,
    }
    if not normal.any():
        return out
    if "log_alpha" in latent:
        log_alpha = sparse_log_alpha(latent["log_alpha"][normal])
        out.update(active_dims=active_dims_by_alpha(log_alpha),
                   active_dims_rule=f"log alpha <= {PRUNED_LOG_ALPHA:g}",
                   log_alpha=[round(float(a), 3) for a in log_alpha])
    elif "kl_per_dim" in latent:
        out.update(active_dims=active_dims_by_kl(latent["kl_per_dim"][normal]),
                   active_dims_rule=f"KL > {ACTIVE_KL_NATS:g} nats")
    return out


def hit_rates(attributions: np.ndarray, changed: np.ndarray, rows: np.ndarray) -> float | None:
    """Mean over ``rows`` of |top-m attributed columns ∩ changed columns| / m, m the number of
    columns the row's anomaly changed (the m highest ``attributions``; ties by column order).
    None without rows."""
    rows = np.flatnonzero(rows)
    if not len(rows):
        return None
    order = np.argsort(-attributions[rows], axis=1, kind="stable")
    m = changed[rows].sum(axis=1)
    hits = [changed[row, order[i, :m[i]]].sum() / m[i] for i, row in enumerate(rows)]
    return float(np.mean(hits))


def explanation_metrics(
    attributions: dict[str, np.ndarray], changed: np.ndarray, kinds: np.ndarray, flagged: np.ndarray
) -> dict[str, dict[str, Any]]:
    """Per anomaly kind, how well each explanation of ``attributions`` (the first ours, the rest
    baselines, (N, columns) each) points at the columns the anomaly changed (``changed``,
    bool (N, columns)): ``hit_rate`` over the rows flagged at the threshold (``flagged``: the
    true positives), ``hit_rate_all`` over every row of the kind (a small change can be
    invisible)."""
    first, *others = attributions
    out: dict[str, dict[str, Any]] = {}
    for kind in sorted(set(kinds.tolist()) - {NORMAL}):
        rows = (kinds == kind) & changed.any(axis=1)
        entry: dict[str, Any] = {}
        for name in (first, *others):
            rates = {"hit_rate": hit_rates(attributions[name], changed, rows & flagged),
                     "hit_rate_all": hit_rates(attributions[name], changed, rows)}
            if name == first:
                entry.update(rates, n_flagged=int((rows & flagged).sum()), n=int(rows.sum()))
            else:
                entry[name] = rates
        out[kind] = entry
    return out
