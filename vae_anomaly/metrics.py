"""Detection metrics: the only code that reads test labels."""
from __future__ import annotations

from typing import Any

import numpy as np
from sklearn import metrics

from .data import NORMAL
from .latent import active_dims_by_alpha, active_dims_by_kl, fitted_w2
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


def evaluate(
    labels: np.ndarray,
    scores: dict[str, np.ndarray],
    primary: str,
    threshold: float,
) -> dict[str, Any]:
    """The metrics document: the primary score's detection metrics and the threshold first,
    the headline of `dvc exp show`; then every score's ranking metrics under ``scores``."""
    headline = detection_metrics(labels, scores[primary], threshold)
    first = ("roc_auc", "pr_auc", "f1", "n_flagged")
    return {
        **{k: headline[k] for k in first},
        "threshold": threshold,
        **{k: v for k, v in headline.items() if k not in first},
        "scores": {name: ranking_metrics(labels, s) for name, s in scores.items()},
    }


def per_type_metrics(
    labels: np.ndarray, kinds: np.ndarray, scores: np.ndarray, threshold: float
) -> dict[str, dict[str, Any]]:
    """The primary ``scores`` per anomaly kind: that kind against all normal samples."""
    normal = kinds == NORMAL
    out = {}
    for kind in sorted(set(kinds.tolist()) - {NORMAL}):
        subset = normal | (kinds == kind)
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
    anomalous test samples; the active latent dimensions by KL on normal test samples (None
    for the plain autoencoder) and, for the Sparse VAE, by alpha (else None)."""
    normal = np.asarray(labels) == 0
    mu = latent["mu"]
    kl = latent.get("kl_per_dim")
    return {
        "latent_dim": int(mu.shape[1]),
        "w2_normal_anomaly": fitted_w2(mu[normal], mu[~normal]),
        "active_dims": active_dims_by_kl(kl[normal]) if kl is not None and normal.any() else None,
        "active_dims_alpha": active_dims_by_alpha(latent["log_alpha"]) if "log_alpha" in latent else None,
    }
