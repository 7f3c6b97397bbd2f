"""Baseline detectors from PyOD, fitted on the same training rows as the VAE and scored on
the same test split, so that evaluate ranks them with the same code.

- ``iforest``: Isolation Forest (Liu et al. 2008), PyOD's defaults (100 trees);
- ``ecod``: empirical-CDF outlier detection (Li et al. 2022), parameter-free;
- ``knn``: distance to the k-th nearest training sample (Ramaswamy et al. 2000), k = ``knn_neighbors``;
- ``autoencoder``: PyOD's AutoEncoder, MSE, encoder ``model.hidden_dims`` + ``model.latent_dim``,
  mirrored; scored by the reconstruction's Euclidean distance;
- ``vae``: PyOD's VAE with the same layers, scored by the distance of x to the reconstruction
  from its posterior mean. PyOD's loss is mean-per-feature MSE + beta * clamp(KL, 0, capacity), and
  capacity defaults to 0, which clamps the KL to 0: by default it trains a noisy autoencoder
  with no KL at all. Here capacity is infinite, so the KL is never clamped, and beta = 1/D
  for D features, so that the loss is (SSE + KL) / D: proportional to the negative ELBO of a
  Gaussian decoder with variance 1/2, the objective of this project's Gaussian VAE;
- ``compressed_length``: images only, no model: -L(x), minus the lossless compressed length of
  the 8-bit image (``score.complexity_codec``), the complexity term of Serra et al. 2020 alone.

The deep baselines get our VAE's budget (vae_anomaly.pyod_deep): every training row, the
same widths, batch size, learning rate and maximum epochs, and early stopping on the same
validation split with the same patience.

A small training split sizes the detectors (``size_to_rows``: the deep detectors' batch at
most the rows, KNN's k below them), and a detector that raises is recorded with its error
rather than stopping the others (``baselines.on_error``). The stage fits one detector per core
at a time, each in a worker process (``baseline_scores``' ``jobs``); the scores do not change.

Features are flattened to (N, D). They are already scaled with training statistics
(tabular) or in [0, 1] (images), so PyOD's own standardisation is off: it would divide
pixels that are constant in training by 1e-8.
"""
from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..cli import show_progress
from ..data.columns import NUMERIC, ColumnEncoding
from ..data.sizing import Adaptations, capped_batch_size, neighbors_below
from ..errors import UserError
from ..parallel import one_thread, worker_pool

log = logging.getLogger(__name__)

BASELINES = ("iforest", "ecod", "knn", "autoencoder", "vae", "compressed_length")  # baselines.names
FIGURE_PREFIX = "pyod_"  # baselines' names in figures, apart from the VAE's own scores
DEEP_BASELINES = ("autoencoder", "vae")  # trained with the VAE's budget (deep_budget)
# The order the workers take the baselines in, longest first, so that no long one starts last
# (longest-processing-time scheduling; each one's time: docs/performance.md).
FIT_ORDER = ("vae", "autoencoder", "compressed_length", "ecod", "iforest", "knn")
PER_FEATURE = ("ecod",)  # detectors whose scores are sums of per-feature scores (ECOD's tail scores)


def deep_budget(params: dict[str, Any], val: np.ndarray) -> dict[str, Any]:
    """What the deep baselines get from our VAE's params: its MLP widths and latent size, its
    training budget (``train``), and the validation split that early stopping watches."""
    model, train = params["model"], params["train"]
    return {
        "hidden_dims": model["hidden_dims"], "latent_dim": model["latent_dim"],
        "epochs": train["epochs"], "batch_size": train["batch_size"], "lr": train["lr"],
        "patience": train["patience"], "validation_data": val.reshape(len(val), -1).astype(np.float64),
    }


def build_detector(
    name: str, params: dict[str, Any], budget: dict[str, Any], input_shape: tuple[int, ...], device: str
) -> Any:
    """An unfitted detector ``name`` configured from the ``baselines`` params and, for the deep
    ones, the VAE's ``budget`` (:func:`deep_budget`); ``input_shape`` is one sample's shape."""
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
    if name in DEEP_BASELINES:
        from .pyod_deep import deep_baseline

        verbose = 1 if show_progress() else 0  # its bars: on a terminal only
        return deep_baseline(name, budget, math.prod(input_shape), seed, device, verbose)
    if name == "compressed_length":
        return CompressedLength(budget["complexity_codec"], input_shape)
    raise ValueError(f"unknown baseline {name!r}; known: {', '.join(BASELINES)}")  # params list them


class CompressedLength:
    """-L(x): minus the lossless compressed length of the image in bits, with no model (the
    complexity term of Serra et al. 2020 alone); simpler images score higher."""

    def __init__(self, codec: str, image_shape: tuple[int, ...]):
        self.codec, self.image_shape = codec, tuple(image_shape)

    def fit(self, x: np.ndarray) -> CompressedLength:
        return self  # nothing to learn

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        from ..scoring.complexity import compressed_bits

        return -compressed_bits(x.reshape(len(x), *self.image_shape), self.codec)


def size_to_rows(
    params: dict[str, Any], budget: dict[str, Any], n_rows: int
) -> tuple[dict[str, Any], dict[str, Any], Adaptations]:
    """The ``baselines`` params and the deep ``budget`` with the KNN k and batch size that
    ``n_rows`` training rows allow, and the record of what was changed (only for detectors in
    ``params['names']``)."""
    sized, budget, adapted = dict(params), dict(budget), {}
    if set(params["names"]) & set(DEEP_BASELINES):
        budget["batch_size"], change = capped_batch_size("train.batch_size", budget["batch_size"], n_rows)
        adapted.update(change)
    if "knn" in params["names"]:
        sized["knn_neighbors"], change = neighbors_below("baselines.knn_neighbors", params["knn_neighbors"], n_rows)
        adapted.update(change)
    return sized, budget, adapted


Fitted = tuple[np.ndarray, np.ndarray | None]  # test scores; per-feature scores where the detector has them


def fit_and_score(detector: Any, name: str, train: np.ndarray, test: np.ndarray) -> Fitted:
    """``detector`` fitted on ``train`` (N, D); its test scores, which must be finite (a NaN
    would only surface later, as an error in evaluate's metrics), and its per-feature test
    scores where it has them: ECOD's tail scores (its ``O``, whose row sums are its scores)."""
    log.info("fitting the %s baseline on %d x %d", name, *train.shape)
    start = time.perf_counter()
    with one_thread():
        detector.fit(train)
        scores = np.asarray(detector.decision_function(test), dtype=np.float64)
    log.info("the %s baseline: fitted and scored in %.1f s", name, time.perf_counter() - start)
    n_bad = int((~np.isfinite(scores)).sum())
    if n_bad:
        raise ValueError(f"{n_bad} of its {len(scores)} test scores are NaN or infinite")
    per_feature = getattr(detector, "O", None) if name in PER_FEATURE else None
    return scores, None if per_feature is None else np.asarray(per_feature[-len(test):], dtype=np.float64)


def baseline_scores(
    features: dict[str, np.ndarray], params: dict[str, Any], device: str = "cpu", jobs: int = 1,
    encoding: ColumnEncoding | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, np.ndarray]]:
    """Each baseline in ``baselines.names`` fitted on every training row of ``features``: its
    test scores, higher = more anomalous; the stage's record: the rows fitted on, the size
    adaptations, and the error of each baseline that failed; and, per table column of
    ``encoding``, the per-feature test scores of the detectors that have them (PER_FEATURE).
    A table with categories or missing values reaches the detectors through scikit-learn's
    ColumnTransformer (:func:`table_rows`). ``params`` is the whole params document: the deep
    baselines take their budget from ``model`` and ``train``. ``jobs`` detectors are fitted at
    a time, each in its own process (each is single-threaded here: parallel.one_thread); the
    scores are the same for any ``jobs``.

    A baseline that raises is left out of the scores and its error recorded, unless
    ``baselines.on_error`` is ``"stop"``: then it stops the stage with a UserError."""
    # The run's train.seed seeds the detectors too: one seed per run, ours and theirs alike.
    baselines_p = {**params["baselines"], "seed": params["train"]["seed"]}
    names = baselines_p["names"]
    feature_column = None if encoding is None else encoding.feature_column()
    if encoding is not None and (encoding.categorical_blocks() or any(np.isnan(x).any() for x in features.values())):
        features, feature_column = table_rows(encoding, features)
    budget = {**deep_budget(params, features["val"]), "complexity_codec": params["score"]["complexity_codec"]}
    sized, budget, adapted = size_to_rows(baselines_p, budget, len(features["train"]))
    settings = (sized, budget, features["train"].shape[1:], device)
    if jobs > 1 and len(names) > 1:
        outcomes = fitted_in_workers(names, settings, features["train"], features["test"], min(jobs, len(names)))
    else:
        outcomes = fitted_in_turn(names, settings, features["train"], features["test"])
    scores, failed, per_column = {}, {}, {}
    with contextlib.closing(outcomes):  # a stop ends the fitting still to come
        for name, outcome in outcomes:
            if not isinstance(outcome, Exception):
                scores[name], per_feature = outcome
                if per_feature is not None and feature_column is not None:
                    per_column[name] = np.zeros((len(per_feature), int(feature_column.max()) + 1))
                    np.add.at(per_column[name].T, feature_column, per_feature.T)
                continue
            failed[name] = " ".join(f"{type(outcome).__name__}: {outcome}".split())  # one line
            if baselines_p["on_error"] == "stop":
                raise UserError(
                    f"baseline {name} failed: {failed[name]} (baselines.on_error: stop; set it to "
                    f"record to go on without it, or remove {name} from baselines.names)"
                ) from outcome
            log.warning("baseline %s failed, left out of the comparison (baselines.on_error: record): %s",
                        name, failed[name])
    return scores, {"n_fit": len(features["train"]), "adaptations": adapted, "failed": failed}, per_column


def table_rows(encoding: ColumnEncoding, features: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The splits of a table with categories or missing values as PyOD's detectors take them,
    through scikit-learn's ColumnTransformer fitted on the training split: numbers with missing
    values imputed by the training mean plus a missing indicator, categories one-hot
    (OneHotEncoder, a missing or unseen category as a category of its own); and the table
    column of each resulting feature."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    numeric = [c.name for c in encoding.columns if c.kind == NUMERIC]
    categorical = [c.name for c in encoding.columns if c.kind != NUMERIC]
    transformer = ColumnTransformer([
        ("numbers", SimpleImputer(strategy="mean", add_indicator=True, keep_empty_features=True), numeric),
        ("categories", make_pipeline(
            SimpleImputer(strategy="constant", fill_value="(missing)"),
            OneHotEncoder(handle_unknown="ignore", sparse_output=False)), categorical),
    ], sparse_threshold=0.0)
    frames = {split: encoding.frame(x) for split, x in features.items()}
    transformer.fit(frames["train"])
    rows = {split: transformer.transform(frame).astype(np.float64) for split, frame in frames.items()}
    index = {name: j for j, name in enumerate(encoding.names)}
    columns = [index[n] for n in numeric]
    imputer = transformer.named_transformers_["numbers"] if numeric else None
    if imputer is not None and imputer.indicator_ is not None:
        columns += [index[numeric[j]] for j in imputer.indicator_.features_]
    one_hot = transformer.named_transformers_["categories"][-1] if categorical else None
    for name, categories in zip(categorical, one_hot.categories_ if one_hot is not None else []):
        columns += [index[name]] * len(categories)
    return rows, np.array(columns, dtype=np.int64)


Settings = tuple[dict[str, Any], dict[str, Any], tuple[int, ...], str]  # build_detector's, after the name
Outcomes = Iterator[tuple[str, Fitted | Exception]]  # each baseline's test scores, or its error


def as_rows(x: np.ndarray) -> np.ndarray:
    """Samples flattened to float64 rows (N, D), as PyOD's detectors take them."""
    return x.reshape(len(x), -1).astype(np.float64)


def fit_one(name: str, settings: Settings, train: np.ndarray, test: np.ndarray) -> Fitted:
    """Baseline ``name`` built with ``settings``, fitted on the ``train`` rows: its ``test`` scores."""
    return fit_and_score(build_detector(name, *settings), name, train, test)


def fitted_in_turn(names: list[str], settings: Settings, train: np.ndarray, test: np.ndarray) -> Outcomes:
    """Each baseline fitted and scored in this process, one after another, as it is asked for."""
    train, test = as_rows(train), as_rows(test)
    for name in names:
        try:
            yield name, fit_one(name, settings, train, test)
        except Exception as err:  # whatever PyOD raises; Ctrl-C (not an Exception) still stops
            yield name, err


def fitted_in_workers(names: list[str], settings: Settings, train: np.ndarray, test: np.ndarray, jobs: int) -> Outcomes:
    """The same in ``jobs`` worker processes (parallel.worker_pool), the longest started first
    (FIT_ORDER); yielded in the order of ``names``. Each worker receives the data once."""
    with worker_pool(jobs, _keep_rows, (train, test)) as pool:
        futures = {name: pool.submit(_fit_in_worker, name, settings)
                   for name in sorted(names, key=FIT_ORDER.index)}
        for name in names:
            try:
                yield name, futures[name].result()
            except Exception as err:  # raised in the worker, or the worker died
                yield name, err


_worker_rows: dict[str, np.ndarray] = {}  # a worker's training and test rows (_keep_rows)


def _keep_rows(train: np.ndarray, test: np.ndarray) -> None:
    _worker_rows.update(train=as_rows(train), test=as_rows(test))


def _fit_in_worker(name: str, settings: Settings) -> Fitted:
    return fit_one(name, settings, _worker_rows["train"], _worker_rows["test"])
