"""Detection metrics: the only code that reads test labels."""
from __future__ import annotations

from typing import Any

import numpy as np
from sklearn import metrics

from .data import NORMAL
from .latent import (
    ACTIVE_KL_NATS,
    PRUNED_LOG_ALPHA,
    active_dims_by_alpha,
    active_dims_by_kl,
    fitted_w2,
    sparse_log_alpha,
)
from .thresholds import flag


def ranking_metrics(labels: np.ndarray, scores: np.ndarray) -> dict[str, float | None]:
    """ROC-AUC and PR-AUC (average precision); None when ``labels`` hold a single class."""
    if len(np.unique(labels)) < 2:
        return {"roc_auc": None, "pr_auc": None}
    return {
        "roc_auc": float(metrics.roc_auc_score(labels, scores)),
        "pr_auc": float(metrics.average_precision_score(labels, scores)),
    }


def detection_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, Any]:
    """Ranking metrics plus precision, recall, F1 and balanced accuracy at the threshold."""
    labels = np.asarray(labels).astype(int)
    predicted = flag(scores, threshold).astype(int)
    precision, recall, f1, _ = metrics.precision_recall_fscore_support(
        labels, predicted, average="binary", zero_division=0
    )
    both = len(np.unique(labels)) == 2
    return {
        **ranking_metrics(labels, scores),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "balanced_accuracy": float(metrics.balanced_accuracy_score(labels, predicted)) if both else None,
        "n_flagged": int(predicted.sum()),
        "n": int(len(labels)),
        "n_anomalies": int(labels.sum()),
    }


def evaluate(
    labels: np.ndarray,
    kinds: np.ndarray,
    scores: dict[str, np.ndarray],
    primary: str,
    threshold: float,
) -> dict[str, Any]:
    """The metrics document: the primary score's metrics and threshold at the top level,
    every score's ranking metrics under ``scores``, and the primary score per anomaly kind
    (that kind against all normal samples) under ``per_type``."""
    out: dict[str, Any] = {**detection_metrics(labels, scores[primary], threshold), "threshold": threshold}
    out["scores"] = {name: ranking_metrics(labels, s) for name, s in scores.items()}
    normal = kinds == NORMAL
    out["per_type"] = {}
    for kind in sorted(set(kinds.tolist()) - {NORMAL}):
        subset = normal | (kinds == kind)
        m = detection_metrics(labels[subset], scores[primary][subset], threshold)
        out["per_type"][kind] = {k: m[k] for k in ("roc_auc", "pr_auc", "recall", "f1", "n_anomalies")}
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
