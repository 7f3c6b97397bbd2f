"""The latent space: posterior statistics of a split, the distance between two groups of
posterior means, and the latent dimensions the model uses.

Used to read the reconstruction-detection trade-off (Senellart et al., ISBI 2026): across
seeds, detection follows how far apart the latent distributions of normal and abnormal
samples lie.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

# SciPy and torch are imported where they are used: the evaluate stage reads the metrics here
# without a model, and the train stage reads posterior_statistics without SciPy.
if TYPE_CHECKING:
    from ..model.vae import VAE

# A dimension whose KL to the prior, averaged over samples, stays below this many nats
# carries (almost) no information about x: the usual "active units" cut-off (Burda et al.
# 2016 use 0.01 on their activity statistic). Not for the Sparse VAE: its prior is improper and
# its KL is defined only up to a constant (Molchanov et al. 2017 choose the one that makes it 0
# as alpha -> oo), so a count of KL above 0.01 nats depends on that choice.
ACTIVE_KL_NATS = 0.01
# Sparse VAE: a dimension with log alpha > 3 is pruned, the rule by which Molchanov et al. (2017)
# remove weights (a dropout rate alpha / (1 + alpha) above 0.95); the rest are active.
PRUNED_LOG_ALPHA = 3.0


def posterior_statistics(model: VAE, x: np.ndarray, batch_size: int) -> dict[str, np.ndarray]:
    """Posterior means and log-variances of every row of ``x``, the KL per dimension (not for
    the plain autoencoder, which has none), and the Sparse VAE's log alpha per row and dimension."""
    import torch

    from ..model.batches import batches, model_device

    model.eval()
    parts: dict[str, list[np.ndarray]] = {"mu": [], "logvar": [], "kl_per_dim": []}
    with torch.no_grad():
        for batch in batches(x, batch_size, model_device(model)):
            mu, logvar = model.encode(batch)
            parts["mu"].append(mu.cpu().numpy())
            parts["logvar"].append(logvar.cpu().numpy())
            parts["kl_per_dim"].append(model.kl_per_dim(mu, logvar).cpu().numpy())
    out = {name: np.concatenate(p).astype(np.float64) for name, p in parts.items()}
    if model.config.kind == "ae":
        del out["kl_per_dim"], out["logvar"]  # deterministic latent: no variance, no KL
    if model.config.kind == "sparse":  # alpha_ij = sigma_ij^2 / mu_ij^2, as in its KL
        out["log_alpha"] = out["logvar"] - np.log(out["mu"] ** 2 + 1e-8)
    return out


def gaussian_w2(mean_a: np.ndarray, cov_a: np.ndarray, mean_b: np.ndarray, cov_b: np.ndarray) -> float:
    """2-Wasserstein distance between N(mean_a, cov_a) and N(mean_b, cov_b), closed form
    (Dowson & Landau 1982; Olkin & Pukelsheim 1982):
    W2^2 = |m_a - m_b|^2 + tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2)."""
    from scipy import linalg

    root_a = linalg.sqrtm(cov_a)
    cross = linalg.sqrtm(root_a @ cov_b @ root_a)
    # sqrtm of a PSD matrix may come back complex with round-off imaginary parts
    trace = np.trace(cov_a + cov_b - 2 * np.real(cross))
    w2_squared = float(np.sum((mean_a - mean_b) ** 2) + trace)
    return float(np.sqrt(max(w2_squared, 0.0)))  # round-off can make a zero distance negative


def fitted_w2(points_a: np.ndarray, points_b: np.ndarray) -> float | None:
    """W2 between Gaussians fitted (mean, sample covariance) to two sets of points (rows);
    None when either set has fewer than two points."""
    if len(points_a) < 2 or len(points_b) < 2:
        return None

    def fit(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return points.mean(axis=0), np.atleast_2d(np.cov(points, rowvar=False))

    return gaussian_w2(*fit(points_a), *fit(points_b))


def active_dims_by_kl(kl_per_dim: np.ndarray, threshold: float = ACTIVE_KL_NATS) -> int:
    """Latent dimensions whose KL, averaged over the samples (rows), exceeds ``threshold``."""
    return int((kl_per_dim.mean(axis=0) > threshold).sum())


def sparse_log_alpha(log_alpha: np.ndarray) -> np.ndarray:
    """Sparse VAE: each dimension's log alpha_j = log(sigma_j^2 / mean_i mu_ij^2), its noise over
    its mean signal power, from the per-sample log alpha_ij (rows) as 1 / mean_i (1 / alpha_ij)."""
    from scipy.special import logsumexp

    return -(logsumexp(-log_alpha, axis=0) - np.log(len(log_alpha)))


def active_dims_by_alpha(log_alpha: np.ndarray, threshold: float = PRUNED_LOG_ALPHA) -> int:
    """Sparse VAE: latent dimensions not pruned, log alpha_j <= ``threshold``, from one log
    alpha per dimension (:func:`sparse_log_alpha`)."""
    return int((log_alpha <= threshold).sum())
