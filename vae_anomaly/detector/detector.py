"""A VAE anomaly detector for new data, a PyOD detector (``pyod.models.base.BaseDetector``):
``fit(X)``, ``decision_function(X)``, ``predict(X)``, ``predict_proba(X)``,
``predict_confidence(X)``, the fitted ``decision_scores_``, ``threshold_`` and ``labels_``;
higher scores are more anomalous. As a scikit-learn estimator its constructor only stores its
arguments, so ``get_params``, ``set_params`` and ``sklearn.base.clone`` work, and the
arguments are checked when ``fit`` starts.

It trains, scores and thresholds with the pipeline's own functions (``pipeline.train_model``,
``reference.fit_reference``, ``scores.compute_scores``, ``thresholds.choose_threshold``) and
encodes tables as ``prepare`` does (data/columns.py), so it scores a row as the stages do;
the ``detector`` stage writes the pipeline's own, in the same format, into ``data/detector/``
(docs/detector.md).

A saved detector is a folder of three files, none read with pickle, that ``save`` and the
``detector`` stage write with one writer (detector/folder.py, which says what
each holds) and :meth:`Detector.load` reads.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pyod.models.base import BaseDetector
from scipy.stats import binom
from sklearn.exceptions import NotFittedError

from ..data.columns import ColumnEncoding
from ..data.sizing import MIN_TRAIN_ROWS, MIN_VAL_ROWS, adaptation, validation_rows
from ..errors import InputError, ParamsError, UserError
from ..io import read_arrays
from ..model.vae import VAE, load_model, model_bytes, resolve_device
from ..params import SCHEMA
from ..pipeline import SPLITS, check_data_fits_likelihood, train_model, training_reference
from ..scoring.combination import fit_combination
from ..scoring.explanation import ExplanationReference, explain_rows, fit_explanation
from ..scoring.maps import anomaly_maps, map_scale
from ..scoring.reference import reference_arrays, reference_from_arrays
from ..scoring.registry import names_that
from ..scoring.scores import compute_scores, score_generators
from ..scoring.thresholds import choose_threshold, flag, percentile_threshold
from .folder import (
    ARRAYS_FILE,
    FORMAT,
    META_FILE,
    MODEL_FILE,
    SECTIONS,
    checked_params,
    library_versions,
    write_detector_folder,
)

log = logging.getLogger(__name__)

# The score stage scores split i of SPLITS with seed train.seed + i; new data is scored as
# the test split, so the test split's rows scored again give data/scores/test.npz.
NEW_DATA_SEED_OFFSET = SPLITS.index("test")


class NotFitted(UserError, NotFittedError):
    """A detector used before ``fit`` (or ``load``): one line for a user, scikit-learn's
    NotFittedError for its checks."""


class Detector(BaseDetector):
    """Fit on normal data, score new data (higher = more anomalous), flag what lies above the
    threshold.

    ``model``, ``train``, ``score`` and ``threshold`` are sections of params.yaml (docs/params.md):
    each key not given takes its default, params.yaml's value (``params.default_params()``).
    Tables: a pandas DataFrame of any column types (numbers, text, booleans, categories;
    missing values welcome), its columns matched by name when it scores new rows, or an array
    (N, D) of numbers (NaN where missing); columns named in ``categorical`` are read as
    categories whatever they hold, and columns named in ``drop_columns`` (ids, timestamps) are
    left out wherever they appear (data/columns.py). Numbers are standardised with the
    training rows' mean and std. Images (N, C, H, W) are used as they are, in [0, 1]. Without
    ``X_val``, ``fit`` keeps ``val_fraction`` of X (seeded with ``train.seed``) for early
    stopping and, with ``threshold.split: val``, the threshold; ``decision_scores_`` and
    ``labels_`` hold one entry per row of X all the same.

    ``contamination`` chooses the threshold: None (the default) applies the ``threshold``
    section, as the pipeline does (e.g. mean + 3 std of the validation scores); a number in
    (0, 0.5] applies PyOD's rule instead, the (1 - contamination) quantile of the training
    rows' scores, so that share of them is flagged (``labels_``). The pipeline's threshold
    assumes clean training data; PyOD's suits data known to hold that share of anomalies.
    """

    def __init__(
        self,
        model: dict[str, Any] | None = None,
        train: dict[str, Any] | None = None,
        score: dict[str, Any] | None = None,
        threshold: dict[str, Any] | None = None,
        val_fraction: float = SCHEMA["data"]["val_fraction"].default,
        contamination: float | None = None,
        categorical: list[str] | None = None,
        drop_columns: list[str] | None = None,
    ):
        # scikit-learn's convention: store the arguments as given (clone checks they are the
        # very objects passed); they are merged with the defaults and checked by fit.
        self.model = model
        self.train = train
        self.score = score
        self.threshold = threshold
        self.val_fraction = val_fraction
        self.contamination = contamination
        self.categorical = categorical
        self.drop_columns = drop_columns

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> Detector:
        """A detector of a validated params document (``params.load_params()``)."""
        return cls(**{name: params[name] for name in SECTIONS}, val_fraction=params["data"]["val_fraction"])

    def checked_params(self, images: bool = False) -> dict[str, dict[str, Any]]:
        """The four sections in force: each key given, every other at its default, each "auto"
        resolved for tables or ``images`` (as params.yaml's for data.protocol one_class: a
        detector learns one normal kind); checked as params.yaml is (a ParamsError names the
        key), with ``val_fraction`` and ``contamination`` (``folder.checked_params``,
        which the detector stage checks its params with). ``fit`` keeps them as ``params_``."""
        return checked_params({name: getattr(self, name) for name in SECTIONS}, self.val_fraction,
                              self.contamination, images)

    # ------------------------------------------------------------------ fitting
    def fit(self, X: Any, y: Any = None, X_val: Any = None) -> Detector:
        """Train on the rows of X (normal data; ``y`` is ignored, as in PyOD), early-stopped on
        ``X_val`` or on ``val_fraction`` of X; then fit the reference scores and the
        explanations on the training rows, and the threshold (``contamination``)."""
        images = _dimensions(X, "X") == 4
        self.params_ = self.checked_params(images)
        if self.contamination is None and self.params_["threshold"]["split"] == "test":
            raise ParamsError("threshold.split = 'test' fits the threshold on the data scored later, which fit "
                              "does not see; use 'train' or 'val'")
        for name in set(self.score_names) & set(names_that("images")):
            if not images:
                raise ParamsError(f"score.names includes {name!r}, which is defined on images only, but X is "
                                  f"a table; remove it from score.names")
        n = _n_rows(X)
        if n < 2:
            raise InputError(f"X has {n} rows (n_samples = {n}); a detector fits at least 2")
        adapted: dict[str, Any] = {}
        if X_val is None and n < MIN_TRAIN_ROWS + MIN_VAL_ROWS:  # too few to keep some apart: validate on them all
            train_rows, val_rows = np.arange(n), None
            raw_train, raw_val = X, X
            adapted = adaptation("val_fraction", self.val_fraction, 0,
                                 f"X has {n} rows, fewer than {MIN_TRAIN_ROWS + MIN_VAL_ROWS}: early stopping and the "
                                 "threshold read the training rows themselves")
        elif X_val is None:
            n_val, adapted = validation_rows(n, self.val_fraction, f"X ({n} rows)",
                                             "pass more rows, or the validation rows as X_val")
            order = np.random.default_rng(self.params_["train"]["seed"]).permutation(n)
            train_rows, val_rows = order[n_val:], order[:n_val]
            raw_train, raw_val = _rows(X, train_rows), _rows(X, val_rows)
        else:
            train_rows, val_rows = np.arange(n), None
            raw_train, raw_val = X, X_val
        self.encoding_ = None if images else self._fit_encoding(raw_train)
        self.input_shape_ = tuple(_as_images(raw_train, "X").shape[1:]) if images else (self.encoding_.width,)
        x_train, x_val = self.check_input(raw_train, "X"), self.check_input(raw_val, "X_val")
        check_data_fits_likelihood(self.params_["model"]["likelihood"], x_train)
        device = resolve_device(self.params_["train"]["device"])
        categorical = [] if images else self.encoding_.categorical_blocks()
        model, self.history_, self.summary_ = train_model(x_train, x_val, self.params_, device, categorical=categorical)
        self.summary_["adaptations"] = {**adapted, **self.summary_["adaptations"]}
        self._set_fitted(model, x_train)
        seed, th = self.params_["train"]["seed"], self.params_["threshold"]
        if "combined" in self.score_names:
            self.scales_ = fit_combination(self._compute(x_val, seed + SPLITS.index("val"), components=True),
                                           self.params_["score"]["combine"])
        train_scores = self._compute(x_train, seed + SPLITS.index("train"))[self.primary]
        val_scores = None if val_rows is None else self._compute(x_val, seed + SPLITS.index("val"))[self.primary]
        scores = np.empty(n)  # one per row of X, in its order: PyOD's decision_scores_
        scores[train_rows] = train_scores
        if val_rows is not None:
            scores[val_rows] = val_scores
        if self.contamination is not None:
            threshold = percentile_threshold(scores, 100 * (1 - self.contamination))  # PyOD's rule
        else:
            if th["split"] == "train":
                fitted_on = train_scores
            else:
                fitted_on = val_scores if val_scores is not None else \
                    self._compute(x_val, seed + SPLITS.index("val"))[self.primary]
            threshold = choose_threshold(fitted_on, th["method"], th["k"], th["q"])
        self._set_threshold(threshold, scores)
        return self

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # a missing value is modelled, not refused
        return tags

    def _fit_encoding(self, rows: Any) -> ColumnEncoding:
        """The columns of the training rows: a DataFrame's by name and type, an array's numbers."""
        categorical, dropped = list(self.categorical or []), list(self.drop_columns or [])
        if _is_frame(rows):
            return ColumnEncoding.fit(rows, categorical, dropped, where="X")
        if categorical or dropped:
            raise ParamsError("categorical and drop_columns name columns, which an array has not: fit on a "
                              "pandas DataFrame")
        return ColumnEncoding.fit_array(_as_table(rows, "X"))

    def fit_predict(self, X: np.ndarray, y: Any = None) -> np.ndarray:
        """``fit(X)``, then the training rows' flags (``labels_``). PyOD deprecates this method
        in favour of ``fit(X).labels_``, which it is."""
        return self.fit(X, y).labels_

    def _set_fitted(self, model: VAE, x_train: np.ndarray) -> None:
        self.model_ = model.eval()
        self.reference_ = training_reference(model, x_train, self.params_["score"])
        batch = self.params_["score"]["batch_size"]
        self.explanation_ = None if self.encoding_ is None else fit_explanation(
            model, x_train, self.encoding_.feature_column(), batch)
        self.map_scale_ = map_scale(anomaly_maps(model, x_train, batch, progress=False)) \
            if self.encoding_ is None else None
        self.scales_: dict[str, list[float]] | None = None  # of score combined's components

    def _set_threshold(self, threshold: float, fitted_primary: np.ndarray) -> None:
        self.threshold_ = float(threshold)
        self.decision_scores_ = np.asarray(fitted_primary, dtype=np.float64)
        self.n_features_in_ = self.input_shape_[0] if self.encoding_ is None else len(self.encoding_.columns)
        self.labels_ = flag(self.decision_scores_, self.threshold_).astype(np.int64)
        # What PyOD's predict_proba reads: two classes, and (method="unify") the training
        # scores' mean and std.
        self._classes = 2
        self._mu, self._sigma = float(np.mean(self.decision_scores_)), float(np.std(self.decision_scores_))

    # ------------------------------------------------------------------ scoring
    @property
    def primary(self) -> str:
        """The score that ``decision_function`` returns and the threshold applies to."""
        return self.params_["score"]["primary"]

    @property
    def score_names(self) -> list[str]:
        return list(self.params_["score"]["names"])

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """The primary score (``score.primary``) of each row of X; higher = more anomalous."""
        return self.all_scores(X)[self.primary]

    def predict(self, X: np.ndarray, return_confidence: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """1 for each row of X whose primary score lies above ``threshold_``, else 0; with
        ``return_confidence``, also :meth:`predict_confidence`'s values (one scoring pass)."""
        scores = self._fitted().decision_function(X)
        labels = flag(scores, self.threshold_).astype(np.int64)
        return (labels, self._confidence(scores)) if return_confidence else labels

    def predict_confidence(self, X: np.ndarray) -> np.ndarray:
        """How surely each row of X would get the same flag from a detector fitted on a
        slightly different training set, in [0, 1]: PyOD's ExCeeD (Perini, Vercruyssen & Davis,
        "Quantifying the confidence of anomaly detectors in their example-wise predictions",
        ECML PKDD 2020)."""
        return self._confidence(self._fitted().decision_function(X))

    def _confidence(self, scores: np.ndarray) -> np.ndarray:
        """ExCeeD as PyOD's BaseDetector computes it, from scores already computed (PyOD's
        scores X again, and takes ``contamination`` as a number, which ours need not be:
        None means the share of training rows the threshold flags)."""
        n = len(self.decision_scores_)
        n_below = np.searchsorted(np.sort(self.decision_scores_), scores, side="right")  # training scores <= x
        outlier_probability = (1 + n_below) / (2 + n)  # Bayesian estimate, uniform prior
        share = self.labels_.mean() if self.contamination is None else self.contamination
        confidence = 1 - binom.cdf(n - int(n * share), n, outlier_probability)
        return np.where(flag(scores, self.threshold_), confidence, 1 - confidence)

    def all_scores(self, X: np.ndarray) -> dict[str, np.ndarray]:
        """Every score of ``score.names`` for each row of X, by name."""
        parts = list(self.score_stream([X]))
        return {name: np.concatenate([p[name] for p in parts]) for name in self.score_names}

    def score_stream(self, chunks: Iterable[np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
        """Every score of each chunk of rows, in order, as one stream: the scores do not depend
        on how the rows are cut into chunks (the sampled scores' generators run on across
        chunks; rows are scored in whole batches of ``score.batch_size``). Memory is bounded
        by the largest chunk. Sampled scores are seeded as the score stage seeds the test
        split, so the test split's rows give data/scores/test.npz again."""
        self._fitted()
        device = next(self.model_.parameters()).device
        generators = score_generators(self.params_["train"]["seed"] + NEW_DATA_SEED_OFFSET, device)
        batch = self.params_["score"]["batch_size"]
        pending: list[np.ndarray] = []
        n_pending = 0
        for chunk in chunks:
            x = self.check_input(chunk)
            pending.append(x)
            n_pending += len(x)
            if n_pending >= batch:
                rows = np.concatenate(pending)
                whole = len(rows) - len(rows) % batch
                pending, n_pending = [rows[whole:]], len(rows) - whole
                yield self._compute(rows[:whole], generators=generators)
        if n_pending or not pending:
            rows = np.concatenate(pending) if pending else np.empty((0, *self.input_shape_), np.float32)
            yield self._compute(rows, generators=generators)

    def _compute(self, x: np.ndarray, seed: int | None = None,
                 generators: dict[str, torch.Generator] | None = None, components: bool = False) -> dict[str, np.ndarray]:
        """Every score of x; with ``components``, all but ``combined`` (whose scales they give)."""
        score = self.params_["score"]
        if components:
            score = {**score, "names": [name for name in score["names"] if name != "combined"]}
        if len(x) == 0:
            return {name: np.empty(0) for name in score["names"]}
        return compute_scores(self.model_, x, score, seed=0 if seed is None else seed, reference=self.reference_,
                              generators=generators, progress=generators is None, scales=self.scales_)

    def check_input(self, X: Any, name: str = "X") -> np.ndarray:
        """X as the model takes it, else InputError naming the row and column: a table through
        the fitted columns (encoding_.transform: matched by name, numbers scaled, categories
        one-hot, NaN where missing; an unseen category is scored as its column's least likely
        one, and logged), or images checked (the fitted shape, finite, pixels in [0, 1] where
        the likelihood needs them) and cast to float32."""
        if getattr(self, "input_shape_", None) is None:
            self._fitted()
        shape = self.input_shape_
        if len(shape) != 3:
            return self._check_table(X, name)
        x = _as_images(X, name)
        if shape[0] == 1 and x.shape[1:] == shape[1:]:
            x = x[:, None]  # one-channel images given as (N, H, W)
        if x.shape[1:] != shape:
            got = f"images of shape {x.shape[1:]}" if x.ndim > 2 else f"shape {x.shape}"
            raise InputError(f"{name} holds {got}; the detector was fitted on images of shape {shape} (C, H, W)")
        require_float_images(x)
        bad = np.argwhere(~np.isfinite(x))
        if len(bad):
            row, *pixel = (int(i) for i in bad[0])
            value = "NaN" if np.isnan(x[tuple(bad[0])]) else "an infinite value (inf)"
            raise InputError(f"{value}; images hold no missing or infinite pixels", row, tuple(pixel))
        if self.params_["model"]["likelihood"] in ("bernoulli", "discretized_logistic"):
            outside = np.argwhere((x < 0) | (x > 1))
            if len(outside):
                row, *pixel = (int(i) for i in outside[0])
                raise InputError(f"intensity {x[tuple(outside[0])]:g} lies outside [0, 1], which "
                                 f"model.likelihood = {self.params_['model']['likelihood']!r} needs", row, tuple(pixel))
        # C order: the same rows in another memory layout would sum in another order (last bits)
        return np.ascontiguousarray(x.astype(np.float32))

    def _check_table(self, X: Any, name: str) -> np.ndarray:
        encoding = self.encoding_
        if _is_frame(X):
            rows = X
        else:
            rows = _as_table(X, name)
            if encoding.categorical_blocks():
                raise InputError(f"{name} is an array, but the detector was fitted on a table with categories "
                                 f"({', '.join(c.name for c in encoding.columns if c.kind != 'numeric')}): "
                                 "give a pandas DataFrame, its columns named as in fit")
            if rows.shape[1] != len(encoding.columns):
                raise InputError(f"{name} holds rows of {rows.shape[1]} features; the detector was fitted on rows of "
                                 f"{len(encoding.columns)} features")
        encoded = encoding.transform(rows)
        for column, n in encoded.unseen.items():
            log.warning("%s: %d row(s) hold a category of %r unseen in training, scored as its least likely one",
                        name, n, column)
        return encoded.x

    # ------------------------------------------------------------------ explaining
    def explain(self, X: Any) -> Any:
        """Why each row of X scores as it does.

        Tables: a pandas DataFrame, one row per row of X (its index, for a DataFrame) and one
        column per input column (a category's one-hot inputs grouped back into their column),
        each column's contribution in nats to how far the row lies off what the model
        reconstructs (scoring/explanation.py; docs/detector.md, "Explanations"); 0 where a
        value is missing.

        Images: float32 (N, H, W), each image's anomaly map in its pixels, higher = more
        anomalous: the low-passed squared residual that ``smoothed_reconstruction_mse``
        averages (scoring/maps.py; docs/detector.md, "Anomaly maps")."""
        import pandas as pd

        self._fitted()
        if self.encoding_ is None:
            return anomaly_maps(self.model_, self.check_input(X), self.params_["score"]["batch_size"],
                                progress=False)
        contributions = explain_rows(self.model_, self.check_input(X), self.explanation_,
                                     self.params_["score"]["batch_size"])
        index = X.index if _is_frame(X) else None
        return pd.DataFrame(contributions, columns=self.encoding_.names, index=index)

    def _fitted(self) -> Detector:
        if getattr(self, "model_", None) is None:
            raise NotFitted("this Detector is not fitted: call fit(X) first, or Detector.load(folder)")
        return self

    # ------------------------------------------------------------------ saving
    def save(self, folder: str | Path) -> None:
        """Write the detector into ``folder`` (created if need be); detector.json goes last, so
        a folder holding it is complete."""
        self._fitted()
        write_detector_folder(
            folder, model_bytes(self.model_), params=self.params_, input_shape=self.input_shape_,
            val_fraction=self.val_fraction, contamination=self.contamination, threshold=self.threshold_,
            decision_scores=self.decision_scores_, encoding=self.encoding_,
            reference=None if self.reference_ is None else reference_arrays(self.reference_),
            explanation=self.explanation_.arrays() if self.explanation_ is not None else
            None if self.map_scale_ is None else {"map_scale": np.array(self.map_scale_)},
            combined_scales=self.scales_,
        )

    @classmethod
    def load(cls, folder: str | Path, device: str | torch.device | None = None) -> Detector:
        """A detector saved by :meth:`save` (or the ``detector`` stage), on ``device`` (default:
        its ``train.device``). Refuses another format version."""
        folder = Path(folder)
        meta_path = folder / META_FILE
        if not meta_path.is_file():
            raise UserError(f"{folder} is not a saved detector (no detector.json); give the folder written by "
                            "`dvc repro detector` (data/detector) or by Detector.save")
        try:
            meta = json.loads(meta_path.read_text())
        except (ValueError, UnicodeDecodeError) as err:
            raise UserError(f"{meta_path} is not readable JSON ({err}); save the detector again") from err
        found = meta.get("format") if isinstance(meta, dict) else None
        if found != FORMAT:
            raise UserError(f"{folder} holds a detector in format {found!r}, but this vae_anomaly "
                            f"{library_versions()['vae_anomaly']} reads {FORMAT!r} only; save it again with this "
                            "version (`dvc repro detector`, or fit and save)")
        try:
            detector = cls(**meta["params"], val_fraction=meta["val_fraction"],
                           contamination=meta.get("contamination"))
            detector.encoding_ = None if meta.get("columns") is None else ColumnEncoding.from_json(meta["columns"])
            detector.params_ = detector.checked_params()
        except (ParamsError, TypeError, KeyError) as err:
            raise UserError(f"{folder}: its params do not fit this vae_anomaly ({err}); save it again") from err
        for name, saved in meta["versions"].items():
            if name != "python" and library_versions().get(name) != saved:
                log.warning("%s was saved with %s %s, and is loaded with %s; scores may differ slightly",
                            folder, name, saved, library_versions().get(name))
        arrays = read_arrays(folder / ARRAYS_FILE)
        device = resolve_device(detector.params_["train"]["device"]) if device is None else device
        detector.model_ = load_model(folder / MODEL_FILE, device)
        detector.input_shape_ = tuple(meta["input_shape"])
        reference = {k.removeprefix("reference_"): v for k, v in arrays.items() if k.startswith("reference_")}
        detector.reference_ = reference_from_arrays(reference, detector.score_names) if reference else None
        explanation = {k.removeprefix("explanation_"): v for k, v in arrays.items() if k.startswith("explanation_")}
        images = detector.encoding_ is None
        detector.explanation_ = ExplanationReference.from_arrays(explanation) if explanation and not images else None
        detector.map_scale_ = float(explanation["map_scale"]) if "map_scale" in explanation else None
        detector.scales_ = meta.get("combined_scales")
        detector._set_threshold(meta["threshold"]["value"], arrays["decision_scores"])
        return detector


def require_float_images(x: np.ndarray) -> None:
    """Images are float intensities in [0, 1]; integers would be 0..255 (or 0..16), a scale
    the model would read as wildly bright pixels."""
    if not np.issubdtype(x.dtype, np.floating):
        raise InputError(f"X holds {x.dtype} images; a detector takes float intensities in [0, 1] "
                         "(divide 8-bit images by 255)")


def _is_frame(X: Any) -> bool:
    return hasattr(X, "columns") and hasattr(X, "iloc")  # a pandas DataFrame, without importing pandas


def _dimensions(X: Any, name: str) -> int:
    """2 for a table (a DataFrame, or an array of rows), 4 for images; else InputError, in the
    terms scikit-learn's checks look for (a 1-D array, a sparse matrix)."""
    if _is_frame(X):
        return 2
    if hasattr(X, "toarray") or type(X).__module__.startswith("scipy.sparse"):
        raise TypeError(f"{name} is a sparse matrix; a detector takes dense input: convert it with X.toarray()")
    shape = np.asarray(X).shape
    if len(shape) == 1:
        raise InputError(f"{name} is 1-D (shape {shape}); expected a table (N, D) or images (N, C, H, W). "
                         "Reshape your data with X.reshape(-1, 1) for one feature, or X.reshape(1, -1) for one row")
    if len(shape) not in (2, 4):
        raise InputError(f"{name} has shape {shape}; give a table (N, D) or images (N, C, H, W)")
    return len(shape)


def _n_rows(X: Any) -> int:
    return len(X)


def _rows(X: Any, index: np.ndarray) -> Any:
    return X.iloc[index] if _is_frame(X) else np.asarray(X)[index]


def _as_table(X: Any, name: str) -> np.ndarray:
    """An array of table rows: numbers (N, D), NaN where missing."""
    if _dimensions(X, name) != 2:
        raise InputError(f"{name} has shape {np.shape(X)}; the detector was fitted on a table (N, D)")
    x = np.asarray(X)
    if np.iscomplexobj(x):
        raise InputError(f"{name} holds complex numbers; a detector scores real ones")
    if x.dtype == object:  # numbers kept as Python objects read as numbers; anything else is refused
        try:
            return x.astype(np.float64)
        except (TypeError, ValueError):
            pass
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise InputError(f"{name} holds {x.dtype} values: give text and categories as a pandas DataFrame")
    return x.astype(np.float64)


def _as_images(X: Any, name: str) -> np.ndarray:
    if _is_frame(X):
        raise InputError(f"{name} is a table, but the detector was fitted on images (N, C, H, W)")
    x = np.asarray(X)
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise InputError(f"{name} holds {x.dtype} values; images are numbers")
    if x.ndim < 3:
        raise InputError(f"{name} has shape {x.shape}; the detector was fitted on images (N, C, H, W)")
    return x
