"""The training reference of the reference scores (registry.py: ``latent_mahalanobis``,
``latent_knn``, ``latent_residual_knn``, ``joint_knn``): what they compare a sample with, fitted
on the training split only, and the plain arrays a saved detector keeps of it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..model.batches import batches, model_device
from ..model.vae import VAE
from .registry import names_that

# scikit-learn is imported where the reference is fitted: the train stage imports the scores
# through the pipeline and never fits one (its import cost: docs/performance.md).
if TYPE_CHECKING:
    from sklearn.covariance import EmpiricalCovariance
    from sklearn.neighbors import NearestNeighbors


@dataclass
class TrainingReference:
    """What the reference scores compare a sample with, fitted on the training split only:
    a Gaussian of the posterior means (``latent_mahalanobis``), their neighbours
    (``latent_knn``), the whitening of the residuals with the neighbours in the joint
    coordinates (``latent_residual_knn``), and the neighbours in those coordinates with the
    input itself beside them (``joint_knn``). Unused parts are None."""

    k: int
    code_gaussian: EmpiricalCovariance | None = None
    code_neighbors: NearestNeighbors | None = None
    residual_whitener: np.ndarray | None = None
    joint_neighbors: NearestNeighbors | None = None
    input_joint_neighbors: NearestNeighbors | None = None
    # The training arrays the parts were fitted on, so that a saved detector can keep them
    # (reference_arrays) and fit the same parts again (reference_from_arrays): joint_knn's
    # coordinates are the inputs beside the joint ones, so only the inputs are kept for it.
    codes: np.ndarray | None = None
    joint: np.ndarray | None = None
    inputs: np.ndarray | None = None


@torch.no_grad()
def encode_and_reconstruct(model: VAE, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior means and the reconstruction residuals x - x_hat(mu), flattened to (N, D)
    (0 where x is missing)."""
    mu, _ = model.encode(x)
    return mu, model.residual(x, model.decode(mu)).flatten(1)


def as_float64(t: torch.Tensor) -> np.ndarray:
    return t.cpu().numpy().astype(np.float64)


def model_inputs(model: VAE, x: torch.Tensor) -> torch.Tensor:
    """The rows of x as the encoder reads them, flattened to (N, D): a missing entry as 0 (model.filled)."""
    return model.filled(x).flatten(1)


def fit_whitener(residuals: np.ndarray) -> np.ndarray:
    """W with W W^T = S^-1 for S the residuals' covariance, so that r W has identity covariance
    on them. Ledoit-Wolf shrinkage keeps S invertible when residuals are nearly collinear (few
    rows, many features); W is the Cholesky factor of its precision."""
    from sklearn.covariance import LedoitWolf

    precision = LedoitWolf().fit(residuals).precision_
    return np.linalg.cholesky((precision + precision.T) / 2)


def joint_coordinates(model: VAE, x: torch.Tensor, whitener: np.ndarray, with_input: bool) -> np.ndarray:
    """The coordinates of ``latent_residual_knn`` (``with_input`` False) or ``joint_knn`` (True)
    of each row of x: its posterior mean and whitened residual r W, after the row itself as the
    encoder reads it (:func:`model_inputs`)."""
    mu, residual = encode_and_reconstruct(model, x)
    joint = np.hstack([as_float64(mu), as_float64(residual) @ whitener])
    return np.hstack([as_float64(model_inputs(model, x)), joint]) if with_input else joint


@torch.no_grad()
def fit_reference(model: VAE, x_train: np.ndarray, names: list[str], batch_size: int, k: int) -> TrainingReference | None:
    """The :class:`TrainingReference` of the reference scores among ``names``, fitted on the
    posterior means and residuals of ``x_train``; None when no such score is named."""
    wanted = set(names) & set(names_that("reference"))
    if not wanted:
        return None
    model.eval()
    with_input = "joint_knn" in wanted
    parts = [(*encode_and_reconstruct(model, batch), model_inputs(model, batch) if with_input else None)
             for batch in batches(x_train, batch_size, model_device(model))]
    codes = as_float64(torch.cat([mu for mu, _, _ in parts]))
    arrays = {"k": np.array(k), "codes": codes}
    if wanted & {"latent_residual_knn", "joint_knn"}:
        residuals = as_float64(torch.cat([r for _, r, _ in parts]))
        whitener = fit_whitener(residuals)
        arrays.update(residual_whitener=whitener, joint=np.hstack([codes, residuals @ whitener]))
        if with_input:
            arrays["inputs"] = as_float64(torch.cat([inputs for _, _, inputs in parts]))
    return reference_from_arrays(arrays, names)


def reference_arrays(reference: TrainingReference) -> dict[str, np.ndarray]:
    """The arrays a :class:`TrainingReference` is fitted from: k, the training posterior
    means, (for ``latent_residual_knn`` and ``joint_knn``) the whitener and the joint
    coordinates, and (for ``joint_knn``) the inputs; plain arrays, so a saved detector loads
    them without pickle."""
    arrays = {"k": np.array(reference.k), "codes": reference.codes}
    for name in ("residual_whitener", "joint", "inputs"):
        if getattr(reference, name) is not None:
            arrays[name] = getattr(reference, name)
    return arrays


def reference_from_arrays(arrays: dict[str, np.ndarray], names: list[str]) -> TrainingReference:
    """The :class:`TrainingReference` of the reference scores among ``names``, fitted on the
    arrays of :func:`reference_arrays` (which :func:`fit_reference` also builds): the same
    arrays give the same Gaussian and neighbours, so a saved detector scores as the pipeline."""
    from sklearn.covariance import EmpiricalCovariance
    from sklearn.neighbors import NearestNeighbors

    codes = arrays["codes"]
    reference = TrainingReference(k=min(int(arrays["k"]), len(codes)), codes=codes)
    if "latent_mahalanobis" in names:
        reference.code_gaussian = EmpiricalCovariance().fit(codes)
    if "latent_knn" in names:
        reference.code_neighbors = NearestNeighbors(n_neighbors=reference.k).fit(codes)
    for name, needs in (("latent_residual_knn", ("joint",)), ("joint_knn", ("joint", "inputs"))):
        if name in names and not all(n in arrays for n in needs):
            raise ValueError(f"{name} needs the residual whitener and joint coordinates of the training split")
    if {"latent_residual_knn", "joint_knn"} & set(names):
        reference.residual_whitener, reference.joint = arrays["residual_whitener"], arrays["joint"]
    if "latent_residual_knn" in names:
        reference.joint_neighbors = NearestNeighbors(n_neighbors=reference.k).fit(reference.joint)
    if "joint_knn" in names:
        reference.inputs = arrays["inputs"]
        reference.input_joint_neighbors = NearestNeighbors(n_neighbors=reference.k).fit(
            np.hstack([reference.inputs, reference.joint]))
    return reference


def kth_neighbor_distance(neighbors: NearestNeighbors, points: np.ndarray) -> np.ndarray:
    """Euclidean distance of each point to its k-th nearest reference point (Ramaswamy et al.
    2000, the score of PyOD's KNN with method 'largest')."""
    distances, _ = neighbors.kneighbors(points)
    return distances[:, -1]


def mean_neighbor_distance(neighbors: NearestNeighbors, points: np.ndarray) -> np.ndarray:
    """Mean Euclidean distance of each point to its k nearest reference points (Angiulli &
    Pizzuti 2002, PyOD's KNN with method 'mean'): less swayed than the k-th alone by one
    close or one far neighbour."""
    distances, _ = neighbors.kneighbors(points)
    return distances.mean(axis=1)
