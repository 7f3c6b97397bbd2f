"""Why a table row is anomalous: each column's contribution to how far the row lies off what
the VAE reconstructs, in nats (docs/tables.md, "Explanations").

The evidence is the residual r = x - E[x|z(x)] (model.residual: 0 where x is missing) under
the Gaussian of the training rows' residuals, N(0, S), the covariance whose whitening is the
residual block of ``latent_residual_knn``'s and ``joint_knn``'s coordinates. Its negative
log-likelihood beyond a perfect reconstruction, 1/2 r^T S^-1 r, is split over the columns by
orthogonal matching pursuit in the whitened space (Pati et al. 1993): the column (a number, or
a category's one-hot block as one) that explains most of what is left is taken first, then the next given
the first, and so on; each column's contribution is its step's gain. Past MAX_STEPS columns
the columns left share the rest in proportion to their gains given those taken. The contributions are
>= 0 and add up to 1/2 r^T S^-1 r; a normal row's add up to about D/2 (a chi-square with D
degrees of freedom, halved). Conditioning on the columns already taken is what sees a
correlation break: a value plausible alone but not given the others. Missing entries are left
out of S (the Gaussian of the entries the row holds) and contribute 0.

Also the baseline of alibi-detect's OutlierVAE: each column's squared residual.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..model.batches import batches, model_device
from ..model.vae import VAE

# Rows decomposed at once: each holds a D x D precision and its factor.
MAX_MATRIX_VALUES = 1 << 22
# Greedy steps: the columns a row's explanation orders exactly. A wider table's remaining
# columns share what is left in proportion to their gains given those taken, so that the
# cost stays linear in the columns (a step costs O(D x steps)) and the sum stays exact.
MAX_STEPS = 64


@dataclass
class ExplanationReference:
    """What the contributions are measured against, fitted on the training rows."""

    feature_column: np.ndarray  # int (D,): the column of each model input
    covariance: np.ndarray  # (D, D): the training residuals' covariance (Ledoit-Wolf)

    def arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays, for an .npz (a saved detector loads them without pickle)."""
        return {"feature_column": self.feature_column, "covariance": self.covariance}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> ExplanationReference:
        return cls(np.asarray(arrays["feature_column"], dtype=np.int64), arrays["covariance"])


@torch.no_grad()
def residuals(model: VAE, x: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The residuals x - E[x|z(x)] (float64 (N, D), 0 where missing) and where x is missing."""
    model.eval()
    parts = []
    for xb in batches(x, batch_size, model_device(model)):
        mu, _ = model.encode(xb)
        parts.append(model.residual(xb, model.decode(mu)).cpu().numpy())
    width = x.shape[1]
    return (np.concatenate(parts).astype(np.float64) if parts else np.empty((0, width)),
            np.isnan(np.asarray(x)))


def fit_explanation(model: VAE, x_train: np.ndarray, feature_column: np.ndarray, batch_size: int) -> ExplanationReference:
    """The covariance of the training rows' residuals, shrunk by Ledoit-Wolf so that it is
    invertible however few rows there are (as for latent_residual_knn's whitener)."""
    from sklearn.covariance import LedoitWolf

    train_residuals, _ = residuals(model, x_train, batch_size)
    covariance = LedoitWolf(assume_centered=True).fit(train_residuals).covariance_
    return ExplanationReference(np.asarray(feature_column, dtype=np.int64), covariance)


def explain_rows(model: VAE, x: np.ndarray, reference: ExplanationReference, batch_size: int) -> np.ndarray:
    """(N, columns) contributions in nats (module docstring); 0 where a column is missing."""
    r, missing = residuals(model, x, batch_size)
    rows = max(1, MAX_MATRIX_VALUES // r.shape[1] ** 2)
    parts = [matching_pursuit(r[i:i + rows], reference.covariance, reference.feature_column, missing[i:i + rows])
             for i in range(0, len(r), rows)]
    return 0.5 * np.concatenate(parts) if parts else np.empty((0, int(reference.feature_column.max()) + 1))


def matching_pursuit(r: np.ndarray, covariance: np.ndarray, feature_column: np.ndarray,
                     missing: np.ndarray) -> np.ndarray:
    """(N, columns) gains of the greedy decomposition of r^T P r, P = S^-1, per row over the
    entries it holds. Whitened (P = L L^T, y = L^T r), input d is the atom l_d (row d of L) and a
    set of columns explains the projection of y on the span of their atoms; each step takes the
    column whose atoms, orthogonalised against those taken, explain most of the rest. Written
    in the atoms' inner products alone (l_i . l_j = P_ij, l_d . y = (P r)_d), as Batch-OMP
    (Rubinstein et al. 2008): each new orthonormal direction q is kept as its products c_d =
    l_d . q with every atom, so a step costs one pass over those taken instead of over L."""
    n, d = r.shape
    n_columns = int(feature_column.max()) + 1
    if missing.any():  # the Gaussian of the held entries: missing ones decoupled, with residual 0
        cov = np.broadcast_to(covariance, (n, d, d)).copy()
        cov[missing[:, :, None] | missing[:, None, :]] = 0.0
        row, entry = np.nonzero(missing)
        cov[row, entry, entry] = 1.0
        precision = np.linalg.inv(cov)
        r = np.where(missing, 0.0, r)
        u = (precision @ r[:, :, None])[:, :, 0]
    else:
        precision = np.linalg.inv(covariance)
        u = r @ precision
    everyone = np.arange(n)

    def precision_row(rows: np.ndarray, inputs: np.ndarray) -> np.ndarray:
        return precision[inputs] if precision.ndim == 2 else precision[rows, inputs]

    diagonal = np.broadcast_to(np.diagonal(precision, axis1=-2, axis2=-1), (n, d)).copy()
    members = [np.flatnonzero(feature_column == c) for c in range(n_columns)]
    single = np.array([len(m) == 1 for m in members])
    single_input = np.array([m[0] for m in members])
    blocks = {c: members[c] for c in range(n_columns) if not single[c]}
    gram = {c: (precision[np.ix_(m, m)] if precision.ndim == 2 else precision[:, m][:, :, m]) + np.zeros((n, 1, 1))
            for c, m in blocks.items()}
    left = u.copy()  # l_d . (what is left of y), for every atom d
    norm2 = diagonal.copy()  # |l_d orthogonalised|^2
    widest = max(len(m) for m in members)
    slots = min(d, MAX_STEPS * widest)  # directions a row can take: one per input of a taken column
    taken_c = np.zeros((n, slots, d))  # c vectors of the directions taken, row by row
    taken_t = np.zeros((n, slots))  # q . y of each
    count = np.zeros(n, dtype=np.int64)
    taken = np.stack([missing[:, m].any(axis=1) for m in members], axis=1)
    gains = np.zeros((n, n_columns))

    def add_direction(rows: np.ndarray, inputs: np.ndarray) -> None:
        """Gram-Schmidt of atom ``inputs`` (one per row of ``rows``) against those taken."""
        within = taken_c[rows, :, inputs]  # (k, slots): l_j . q_i
        new = precision_row(rows, inputs) - (within[:, None, :] @ taken_c[rows])[:, 0, :]
        size2 = new[np.arange(len(rows)), inputs]
        ok = size2 > 1e-10 * diagonal[rows, inputs]  # an atom in the span already adds nothing
        scale = np.where(ok, 1.0 / np.sqrt(np.maximum(size2, 1e-300)), 0.0)
        c = new * scale[:, None]
        t = (u[rows, inputs] - (within * taken_t[rows]).sum(axis=1)) * scale
        slot = np.minimum(count[rows], slots - 1)
        taken_c[rows, slot] = c
        taken_t[rows, slot] = t
        count[rows] += ok
        left[rows] -= c * t[:, None]
        norm2[rows] -= c ** 2
        for column, m in blocks.items():
            gram[column][rows] -= c[:, m, None] * c[:, None, m]

    def candidate_gains() -> np.ndarray:
        """What each column would explain of the rest, given the columns taken (-inf if taken)."""
        value = np.full((n, n_columns), -np.inf)
        inputs = single_input[single]
        value[:, single] = np.where(norm2[:, inputs] > 1e-10 * diagonal[:, inputs],
                                    left[:, inputs] ** 2 / np.maximum(norm2[:, inputs], 1e-300), 0.0)
        for column, m in blocks.items():
            p = left[:, m]
            value[:, column] = (p[:, None, :] @ np.linalg.pinv(gram[column], hermitian=True) @ p[:, :, None])[:, 0, 0]
        value[taken] = -np.inf
        return value

    for _ in range(min(n_columns, MAX_STEPS)):
        value = candidate_gains()
        pick = value.argmax(axis=1)
        live = np.isfinite(value[everyone, pick])
        if not live.any():
            break
        gains[everyone[live], pick[live]] = np.maximum(value[everyone[live], pick[live]], 0.0)
        taken[everyone[live], pick[live]] = True
        rows = everyone[live & single[pick]]
        add_direction(rows, single_input[pick[rows]])
        for column, m in blocks.items():
            rows = everyone[live & (pick == column)]
            for entry in m:  # the block's atoms, one direction each
                add_direction(rows, np.full(len(rows), entry))
    if n_columns > MAX_STEPS:  # the rest of r^T P r, shared by the gains of the columns left
        value = np.maximum(np.where(taken, 0.0, candidate_gains()), 0.0)
        rest = np.maximum((r * u).sum(axis=1) - gains.sum(axis=1), 0.0)
        gains += value / np.maximum(value.sum(axis=1, keepdims=True), 1e-300) * rest[:, None]
    return gains


def squared_residuals(model: VAE, x: np.ndarray, feature_column: np.ndarray, batch_size: int) -> np.ndarray:
    """(N, columns) each column's squared residual x - E[x|z(x)], summed over a category's block
    (alibi-detect's feature score of its OutlierVAE)."""
    r, _ = residuals(model, x, batch_size)
    out = np.zeros((len(r), int(feature_column.max()) + 1))
    np.add.at(out.T, feature_column, (r ** 2).T)
    return out
