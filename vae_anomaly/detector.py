"""A VAE anomaly detector for new data, with PyOD's conventions: ``fit(X)``,
``decision_function(X)``, ``predict(X)``, the fitted ``decision_scores_``, ``threshold_`` and
``labels_``; higher scores are more anomalous.

It trains, scores and thresholds with the pipeline's own functions (``pipeline.train_model``,
``scores.fit_reference``, ``scores.compute_scores``, ``thresholds.choose_threshold``) and
scales tables as ``prepare`` does (``data.Scaling``), so it scores a row as the stages do;
the ``detector`` stage saves the pipeline's own into ``data/detector/`` (docs/detector.md).

A saved detector is a folder of three files, none read with pickle:
- ``detector.json``: the format version, the params sections, the input's shape, the
  threshold and the library versions it was saved with;
- ``model.pt``: weights and model config (``models.save_model``, loaded with weights_only);
- ``arrays.npz``: the training split's scaling (tables only), the arrays the reference
  scores are fitted from (``scores.reference_arrays``), and the training scores.
"""
from __future__ import annotations

import copy
import json
import platform
from collections.abc import Iterable, Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .data import Scaling
from .io import UserError, log, read_arrays, write_arrays, write_json
from .models import VAE, load_model, resolve_device, save_model
from . import __version__
from .params import IMAGE_ONLY_SCORES, SCHEMA, ParamsError, check_scores_apply, validate
from .pipeline import SPLITS, check_data_fits_likelihood, train_model
from .scores import (
    TrainingReference,
    compute_scores,
    fit_combination,
    fit_reference,
    reference_arrays,
    reference_from_arrays,
    score_generators,
)
from .sizing import validation_rows
from .thresholds import choose_threshold, flag

FORMAT = "vae_anomaly/detector-v1"
SECTIONS = ("model", "train", "score", "threshold")
# The defaults of a detector built in Python: the values of the project's params.yaml. A
# section given to Detector() replaces only the keys it names.
DEFAULTS: dict[str, dict[str, Any]] = {
    "model": {"kind": "vae", "architecture": "mlp", "hidden_dims": [128, 64], "conv_channels": [32, 64],
              "latent_dim": 8, "likelihood": "gaussian", "beta": 1.0},
    "train": {"seed": 0, "epochs": 60, "batch_size": 128, "lr": 0.001, "kl_schedule": "monotonic",
              "kl_warmup_epochs": 10, "kl_cycles": 4, "kl_ramp_fraction": 0.5, "patience": 8, "device": "auto"},
    "score": {"names": ["latent_residual_knn", "reconstruction_mse", "negative_elbo"], "primary": "latent_residual_knn",
              "elbo_samples": 16, "iwae_samples": 50, "complexity_codec": "jpeg2000", "knn_neighbors": 5,
              "combine": ["latent_residual_knn", "reconstruction_mse"], "regret_steps": 20, "regret_lr": 0.1,
              "batch_size": 1024},
    "threshold": {"method": "mean_std", "split": "val", "k": 3.0, "q": 99.0},
}
# The score stage scores split i of SPLITS with seed train.seed + i; new data is scored as
# the test split, so the test split's rows scored again give data/scores/test.npz.
NEW_DATA_SEED_OFFSET = SPLITS.index("test")
LIBRARIES = ("torch", "numpy", "scikit-learn")


class InputError(UserError):
    """Data a detector cannot score: what is wrong (``problem``), and where: ``row`` (0-based
    in the array given) and ``column`` (a feature's index, or a pixel's (channel, y, x))."""

    def __init__(self, problem: str, row: int | None = None, column: int | tuple[int, ...] | None = None):
        self.problem, self.row, self.column = problem, row, column
        where = "" if row is None else f"X[{row}]" if column is None else f"X[{row}, {column}]"
        super().__init__(f"{where}: {problem}" if where else problem)


class Detector:
    """Fit on normal data, score new data (higher = more anomalous), flag what lies above the
    threshold. ``model``, ``train``, ``score`` and ``threshold`` are sections of params.yaml
    (README, "params"); each key not given keeps its value in DEFAULTS. Tables (N, D) are
    standardised with the training rows' mean and std; images (N, C, H, W) are used as they
    are, in [0, 1]. Without ``X_val``, ``fit`` keeps ``val_fraction`` of X (seeded with
    ``train.seed``) for early stopping and, with ``threshold.split: val``, the threshold."""

    def __init__(
        self,
        model: dict[str, Any] | None = None,
        train: dict[str, Any] | None = None,
        score: dict[str, Any] | None = None,
        threshold: dict[str, Any] | None = None,
        val_fraction: float = 0.1,
    ):
        given = {"model": model, "train": train, "score": score, "threshold": threshold}
        self.params = {name: {**copy.deepcopy(DEFAULTS[name]), **(given[name] or {})} for name in SECTIONS}
        for name in SECTIONS:
            validate(self.params[name], SCHEMA[name], f"{name}.")
        check_scores_apply(self.params["score"], self.params["model"])
        validate({"val_fraction": val_fraction}, {"val_fraction": SCHEMA["data"]["val_fraction"]}, "data.")
        self.val_fraction = val_fraction
        self.model_: VAE | None = None
        self.input_shape_: tuple[int, ...] | None = None
        self.scaling_: Scaling | None = None
        self.reference_: TrainingReference | None = None
        self.scales_: dict[str, list[float]] | None = None  # of score combined's components
        self.threshold_: float | None = None
        self.decision_scores_: np.ndarray | None = None
        self.labels_: np.ndarray | None = None

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> Detector:
        """A detector of a validated params document (``params.load_params()``)."""
        return cls(**{name: params[name] for name in SECTIONS}, val_fraction=params["data"]["val_fraction"])

    # ------------------------------------------------------------------ fitting
    def fit(self, X: np.ndarray, y: Any = None, X_val: np.ndarray | None = None) -> Detector:
        """Train on the rows of X (normal data; ``y`` is ignored, as in PyOD), early-stopped on
        ``X_val`` or on ``val_fraction`` of X; then fit the reference scores on the training
        rows and the threshold on the scores of ``threshold.split``."""
        x = self._as_array(X, "X")
        images = x.ndim == 4
        if x.ndim not in (2, 4):
            raise UserError(f"X has shape {x.shape}; a detector fits a table (N, D) or images (N, C, H, W)")
        if self.params["threshold"]["split"] == "test":
            raise ParamsError("threshold.split = 'test' fits the threshold on the data scored later, which fit "
                              "does not see; use 'train' or 'val'")
        for name in set(self.score_names) & set(IMAGE_ONLY_SCORES):
            if not images:
                raise ParamsError(f"score.names includes {name!r}, which measures image complexity, but X is "
                                  f"a table of shape {x.shape}; remove it from score.names")
        if images:
            require_float_images(x)
        adapted: dict[str, Any] = {}
        if X_val is None:
            n_val, adapted = validation_rows(len(x), self.val_fraction, f"X ({len(x)} rows)",
                                             "pass more rows, or the validation rows as X_val")
            order = np.random.default_rng(self.params["train"]["seed"]).permutation(len(x))
            x_train, x_val = x[order[n_val:]], x[order[:n_val]]
        else:
            x_train, x_val = x, self._as_array(X_val, "X_val")
            if x_val.shape[1:] != x.shape[1:]:
                raise UserError(f"X_val has rows of shape {x_val.shape[1:]}, X of shape {x.shape[1:]}")
        scaling = None if images else Scaling.fit(x_train)
        x_train, x_val = (x_train.astype(np.float32), x_val.astype(np.float32)) if images else (
            scaling.apply(x_train), scaling.apply(x_val))
        check_data_fits_likelihood(self.params["model"]["likelihood"], x_train)
        device = resolve_device(self.params["train"]["device"])
        model, self.history_, self.summary_ = train_model(x_train, x_val, self.params, device)
        self.summary_["adaptations"] = {**adapted, **self.summary_["adaptations"]}
        self._set_fitted(model, scaling, x_train)
        seed, split = self.params["train"]["seed"], self.params["threshold"]["split"]
        if "combined" in self.score_names:
            self.scales_ = fit_combination(self._compute(x_val, seed + SPLITS.index("val"), components=True),
                                           self.params["score"]["combine"])
        train_scores = self._compute(x_train, seed + SPLITS.index("train"))
        split_scores = train_scores if split == "train" else self._compute(x_val, seed + SPLITS.index("val"))
        th = self.params["threshold"]
        self._set_threshold(choose_threshold(split_scores[self.primary], th["method"], th["k"], th["q"]),
                            train_scores[self.primary])
        return self

    @classmethod
    def from_pipeline(
        cls, params: dict[str, Any], model: VAE, x_train: np.ndarray, scaling: Scaling | None,
        threshold: float, train_scores: dict[str, np.ndarray], val_scores: dict[str, np.ndarray],
    ) -> Detector:
        """The detector of a pipeline run: the train stage's model, the prepared (scaled)
        training split with its ``scaling``, the threshold stage's threshold and the score
        stage's training and validation scores."""
        detector = cls.from_params(params)
        detector._set_fitted(model, scaling, x_train)
        if "combined" in detector.score_names:
            detector.scales_ = fit_combination(val_scores, params["score"]["combine"])
        detector._set_threshold(threshold, train_scores[detector.primary])
        return detector

    def _set_fitted(self, model: VAE, scaling: Scaling | None, x_train: np.ndarray) -> None:
        score = self.params["score"]
        self.model_, self.scaling_, self.input_shape_ = model.eval(), scaling, tuple(x_train.shape[1:])
        self.reference_ = fit_reference(model, x_train, score["names"], score["batch_size"], score["knn_neighbors"])

    def _set_threshold(self, threshold: float, train_primary: np.ndarray) -> None:
        self.threshold_ = float(threshold)
        self.decision_scores_ = np.asarray(train_primary, dtype=np.float64)
        self.labels_ = flag(self.decision_scores_, self.threshold_).astype(np.int64)

    # ------------------------------------------------------------------ scoring
    @property
    def primary(self) -> str:
        """The score that ``decision_function`` returns and the threshold applies to."""
        return self.params["score"]["primary"]

    @property
    def score_names(self) -> list[str]:
        return list(self.params["score"]["names"])

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """The primary score (``score.primary``) of each row of X; higher = more anomalous."""
        return self.score_samples(X)[self.primary]

    def predict(self, X: np.ndarray) -> np.ndarray:
        """1 for each row of X whose primary score lies above ``threshold_``, else 0."""
        return flag(self.decision_function(X), self._fitted().threshold_).astype(np.int64)

    def score_samples(self, X: np.ndarray) -> dict[str, np.ndarray]:
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
        generators = score_generators(self.params["train"]["seed"] + NEW_DATA_SEED_OFFSET, device)
        batch = self.params["score"]["batch_size"]
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
        score = self.params["score"]
        if components:
            score = {**score, "names": [name for name in score["names"] if name != "combined"]}
        if len(x) == 0:
            return {name: np.empty(0) for name in score["names"]}
        return compute_scores(self.model_, x, score, seed=0 if seed is None else seed, reference=self.reference_,
                              generators=generators, progress=generators is None, scales=self.scales_)

    def check_input(self, X: np.ndarray) -> np.ndarray:
        """X as the model takes it: checked (numbers, the fitted shape, finite, pixels in [0, 1]
        where the likelihood needs it; else InputError naming the row and column) and scaled
        with the training statistics (tables) or cast to float32 (images)."""
        self._fitted()
        shape = self.input_shape_
        x = self._as_array(X, "X")
        if len(shape) == 3 and shape[0] == 1 and x.shape[1:] == shape[1:]:
            x = x[:, None]  # one-channel images given as (N, H, W)
        if x.shape[1:] != shape:
            kind = f"images of shape {shape} (C, H, W)" if len(shape) == 3 else f"rows of {shape[0]} features"
            got = f"images of shape {x.shape[1:]}" if x.ndim > 2 else (
                f"rows of {x.shape[1]} features" if x.ndim == 2 else f"shape {x.shape}")
            raise InputError(f"X holds {got}; the detector was fitted on {kind}")
        images = len(shape) == 3
        if images:
            require_float_images(x)
        bad = np.argwhere(~np.isfinite(x))
        if len(bad):
            row, *column = (int(i) for i in bad[0])
            value = "NaN (a missing value)" if np.isnan(x[tuple(bad[0])]) else "an infinite value"
            raise InputError(f"{value}; fill or drop it before scoring",
                             row, column[0] if len(column) == 1 else tuple(column))
        if images and self.model_.config.likelihood in ("bernoulli", "discretized_logistic"):
            outside = np.argwhere((x < 0) | (x > 1))
            if len(outside):
                row, *pixel = (int(i) for i in outside[0])
                raise InputError(f"intensity {x[tuple(outside[0])]:g} lies outside [0, 1], which "
                                 f"model.likelihood = {self.model_.config.likelihood!r} needs", row, tuple(pixel))
        # C order: the same rows in another memory layout would sum in another order (last bits)
        return np.ascontiguousarray(x.astype(np.float32) if images else self.scaling_.apply(x))

    @staticmethod
    def _as_array(X: Any, name: str) -> np.ndarray:
        x = np.asarray(X)
        if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
            raise InputError(f"{name} holds {x.dtype} values; a detector scores numbers only")
        if x.ndim < 2:
            raise InputError(f"{name} has shape {x.shape}; give a table (N, D) or images (N, C, H, W)")
        return x

    def _fitted(self) -> Detector:
        if self.model_ is None:
            raise UserError("this Detector is not fitted: call fit(X) first, or Detector.load(folder)")
        return self

    # ------------------------------------------------------------------ saving
    def save(self, folder: str | Path) -> None:
        """Write the detector into ``folder`` (created if need be); detector.json goes last, so
        a folder holding it is complete."""
        self._fitted()
        folder = Path(folder)
        save_model(self.model_, folder / "model.pt")
        arrays = {"decision_scores": self.decision_scores_}
        if self.scaling_ is not None:
            arrays.update(scaling_mean=self.scaling_.mean, scaling_std=self.scaling_.std)
        if self.reference_ is not None:
            arrays.update({f"reference_{k}": v for k, v in reference_arrays(self.reference_).items()})
        write_arrays(folder / "arrays.npz", **arrays)
        write_json(folder / "detector.json", {
            "format": FORMAT,
            "input_shape": list(self.input_shape_),
            "params": self.params,
            "val_fraction": self.val_fraction,
            "threshold": {"score": self.primary, "value": self.threshold_},
            "combined_scales": self.scales_,
            "versions": library_versions(),
        })

    @classmethod
    def load(cls, folder: str | Path, device: str | torch.device | None = None) -> Detector:
        """A detector saved by :meth:`save` (or the ``detector`` stage), on ``device`` (default:
        its ``train.device``). Refuses another format version."""
        folder = Path(folder)
        meta_path = folder / "detector.json"
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
            detector = cls(**meta["params"], val_fraction=meta["val_fraction"])
        except (ParamsError, TypeError) as err:
            raise UserError(f"{folder}: its params do not fit this vae_anomaly ({err}); save it again") from err
        for name, saved in meta["versions"].items():
            if name != "python" and library_versions().get(name) != saved:
                log.warning("%s was saved with %s %s, and is loaded with %s; scores may differ slightly",
                            folder, name, saved, library_versions().get(name))
        arrays = read_arrays(folder / "arrays.npz")
        device = resolve_device(detector.params["train"]["device"]) if device is None else device
        detector.model_ = load_model(folder / "model.pt", device)
        detector.input_shape_ = tuple(meta["input_shape"])
        if "scaling_mean" in arrays:
            detector.scaling_ = Scaling(arrays["scaling_mean"], arrays["scaling_std"])
        reference = {k.removeprefix("reference_"): v for k, v in arrays.items() if k.startswith("reference_")}
        detector.reference_ = reference_from_arrays(reference, detector.score_names) if reference else None
        detector.scales_ = meta.get("combined_scales")
        detector._set_threshold(meta["threshold"]["value"], arrays["decision_scores"])
        return detector


def require_float_images(x: np.ndarray) -> None:
    """Images are float intensities in [0, 1]; integers would be 0..255 (or 0..16), a scale
    the model would read as wildly bright pixels."""
    if not np.issubdtype(x.dtype, np.floating):
        raise InputError(f"X holds {x.dtype} images; a detector takes float intensities in [0, 1] "
                         "(divide 8-bit images by 255)")


def library_versions() -> dict[str, str]:
    """Versions of Python, this package and the libraries that decide the scores."""
    versions = {"python": platform.python_version(), "vae_anomaly": __version__}
    for name in LIBRARIES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "unknown"
    return versions
