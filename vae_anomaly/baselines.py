"""Baseline detectors from PyOD, fitted on the same training split as the VAE and scored on
the same test split, so that evaluate ranks them with the same code.

- ``iforest``: Isolation Forest (Liu et al. 2008), PyOD's defaults (100 trees);
- ``ecod``: empirical-CDF outlier detection (Li et al. 2022), parameter-free;
- ``knn``: distance to the k-th nearest training sample (Ramaswamy et al. 2000), k = ``knn_neighbors``;
- ``autoencoder``: PyOD's AutoEncoder, MSE, encoder ``hidden_dims`` + ``latent_dim``, mirrored;
  scored by the reconstruction's Euclidean distance;
- ``vae``: PyOD's VAE with the same layers, scored by the distance of x to a sampled
  reconstruction. PyOD's loss is mean-per-feature MSE + beta * clamp(KL, 0, capacity), and
  capacity defaults to 0, which clamps the KL to 0: by default it trains a noisy autoencoder
  with no KL at all. Here capacity is infinite, so the KL is never clamped, and beta = 1/D
  for D features, so that the loss is (SSE + KL) / D: proportional to the negative ELBO of a
  Gaussian decoder with variance 1/2, the objective of this project's Gaussian VAE.

A small training split sizes the detectors (``size_to_rows``: the deep detectors' batch at
most the rows, KNN's k below them), and a detector that raises is recorded with its error
rather than stopping the others (``baselines.on_error``).

Features are flattened to (N, D). They are already scaled with training statistics
(tabular) or in [0, 1] (images), so PyOD's own standardisation is off: it would divide
pixels that are constant in training by 1e-8.
"""
from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from .io import UserError, log
from .params import BASELINES
from .sizing import Adaptations, capped_batch_size, neighbors_below

FIGURE_PREFIX = "pyod_"  # baselines' names in figures, apart from the VAE's own scores
DEEP_BASELINES = ("autoencoder", "vae")  # trained in batches of baselines.batch_size


def training_subsample(n: int, max_train: int, seed: int) -> np.ndarray:
    """Sorted indices of a seeded subsample of at most ``max_train`` of ``n`` training rows."""
    if n <= max_train:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_train, replace=False))


def build_detector(name: str, params: dict[str, Any], n_features: int, device: str) -> Any:
    """An unfitted PyOD detector ``name`` configured from the ``baselines`` params."""
    # PyOD imports torch and numba models at import time; import only what is used.
    seed = params["seed"]
    if name == "iforest":
        from pyod.models.iforest import IForest

        return IForest(random_state=seed)
    if name == "ecod":
        from pyod.models.ecod import ECOD

        return ECOD()
    if name == "knn":
        from pyod.models.knn import KNN

        return KNN(n_neighbors=params["knn_neighbors"])
    deep = dict(
        preprocessing=False, epoch_num=params["epochs"], batch_size=params["batch_size"],
        random_state=seed, device=device, verbose=0 if os.environ.get("CI") else 1,
    )
    if name == "autoencoder":
        from pyod.models.auto_encoder import AutoEncoder

        return AutoEncoder(hidden_neuron_list=[*params["hidden_dims"], params["latent_dim"]], **deep)
    if name == "vae":
        from pyod.models.vae import VAE

        return VAE(
            encoder_neuron_list=list(params["hidden_dims"]),
            decoder_neuron_list=list(reversed(params["hidden_dims"])),
            latent_dim=params["latent_dim"], beta=1.0 / n_features, capacity=math.inf, **deep,
        )
    raise ValueError(f"unknown baseline {name!r}; known: {', '.join(BASELINES)}")  # params list them


def size_to_rows(params: dict[str, Any], n_rows: int) -> tuple[dict[str, Any], Adaptations]:
    """The ``baselines`` params with the batch size and KNN's k that ``n_rows`` training rows
    allow, and the record of what was changed (only for detectors in ``params['names']``)."""
    sized, adapted = dict(params), {}
    if set(params["names"]) & set(DEEP_BASELINES):
        sized["batch_size"], change = capped_batch_size("baselines.batch_size", params["batch_size"], n_rows)
        adapted.update(change)
    if "knn" in params["names"]:
        sized["knn_neighbors"], change = neighbors_below("baselines.knn_neighbors", params["knn_neighbors"], n_rows)
        adapted.update(change)
    return sized, adapted


def fit_and_score(name: str, params: dict[str, Any], train: np.ndarray, test: np.ndarray, device: str) -> np.ndarray:
    """Baseline ``name`` fitted on ``train`` (N, D); its test scores, which must be finite
    (a NaN would only surface later, as an error in evaluate's metrics)."""
    detector = build_detector(name, params, train.shape[1], device)
    log.info("fitting the %s baseline on %d x %d", name, *train.shape)
    with one_torch_thread():
        detector.fit(train)
        scores = np.asarray(detector.decision_function(test), dtype=np.float64)
    n_bad = int((~np.isfinite(scores)).sum())
    if n_bad:
        raise ValueError(f"{n_bad} of its {len(scores)} test scores are NaN or infinite")
    return scores


def baseline_scores(
    train: np.ndarray, test: np.ndarray, params: dict[str, Any], device: str = "cpu"
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Each baseline in ``params['names']`` fitted on (a seeded subsample of) ``train``: its
    test scores, higher = more anomalous; and the stage's record: the rows fitted on, the
    size adaptations, and the error of each baseline that failed.

    A baseline that raises is left out of the scores and its error recorded, unless
    ``params['on_error']`` is ``"stop"``: then it stops the stage with a UserError."""
    train_2d = train.reshape(len(train), -1).astype(np.float64)
    test_2d = test.reshape(len(test), -1).astype(np.float64)
    rows = training_subsample(len(train_2d), params["max_train"], params["seed"])
    if len(rows) < len(train_2d):
        log.info("baselines fit on a seeded subsample of %d of %d training rows", len(rows), len(train_2d))
    sized, adapted = size_to_rows(params, len(rows))
    scores, failed = {}, {}
    for name in params["names"]:
        try:
            scores[name] = fit_and_score(name, sized, train_2d[rows], test_2d, device)
        except Exception as err:  # whatever PyOD raises; Ctrl-C (not an Exception) still stops
            failed[name] = " ".join(f"{type(err).__name__}: {err}".split())  # one line
            if params["on_error"] == "stop":
                raise UserError(
                    f"baseline {name} failed: {failed[name]} (baselines.on_error: stop; set it to "
                    f"record to go on without it, or remove {name} from baselines.names)"
                ) from err
            log.warning("baseline %s failed, left out of the comparison (baselines.on_error: record): %s",
                        name, failed[name])
    return scores, {"n_fit": len(rows), "adaptations": adapted, "failed": failed}


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """PyOD's deep detectors train small MLPs one small batch at a time, where torch's thread
    pool costs more in synchronisation than it gains: on a busy 2-core machine the
    AutoEncoder baseline took 83 s of CPU with 2 threads and 11 s with 1 (measured)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
