"""The folder a detector is saved in, written by ``Detector.save`` and by the ``detector``
stage alike (:func:`write_detector_folder`), and the params a detector is checked with.

NumPy and the params schema only: no torch, scikit-learn, SciPy or PyOD, so that the detector
stage packages what the train and score stages computed (the model file, the training split's
reference and scores) without loading them. ``Detector.load`` reads the folder back
(detector.py).

A saved detector is a folder of three files, none read with pickle:
- ``detector.json``: the format version, the params sections, ``val_fraction`` and
  ``contamination``, the input's shape, a table's columns (data/columns.py: each one's name,
  kind, scaling or categories), the threshold and the library versions it was saved with;
- ``model.pt``: weights and model config (``model.vae.save_model``, loaded with weights_only);
- ``arrays.npz``: the arrays the reference scores are fitted from
  (``scoring.reference.reference_arrays``), those of the explanations (tables), and the
  fitted rows' scores.
"""
from __future__ import annotations

import copy
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import __version__
from ..errors import ParamsError
from ..io import write_arrays, write_bytes, write_json
from ..params import SCHEMA, Number, check_scores_apply, default_params, resolve_sections, validate

if TYPE_CHECKING:
    from ..data.columns import ColumnEncoding

FORMAT = "vae_anomaly/detector-v2"  # v2: a table's columns (kinds, scaling, categories) in detector.json
MODEL_FILE, ARRAYS_FILE, META_FILE = "model.pt", "arrays.npz", "detector.json"
SECTIONS = ("model", "train", "score", "threshold")
# PyOD's range for the share of training rows flagged (BaseDetector checks the same).
CONTAMINATION = Number(0, 0.5, low_open=True)
LIBRARIES = ("torch", "numpy", "scikit-learn")


def checked_params(
    sections: dict[str, Any], val_fraction: Any, contamination: Any = None, images: bool = False,
) -> dict[str, dict[str, Any]]:
    """The four ``sections`` (each a dict of keys given, or None) in force: each key given,
    every other at its default, each "auto" resolved for tables or ``images`` (as params.yaml's
    for data.protocol one_class: a detector learns one normal kind); checked as params.yaml is
    (a ParamsError names the key), with ``val_fraction`` and ``contamination``."""
    defaults = default_params()
    params = {}
    for name in SECTIONS:
        given = sections[name]
        if not isinstance(given, (dict, type(None))):
            raise ParamsError(f"{name} = {given!r}: give a dict of the {name} section's keys "
                              "(as in params.yaml), or None for every default")
        params[name] = validate({**defaults[name], **copy.deepcopy(given or {})}, SCHEMA[name], f"{name}.")
    resolve_sections(params["model"], params["score"], images, protocol="one_class")
    check_scores_apply(params["score"], params["model"])
    validate({"val_fraction": val_fraction}, {"val_fraction": SCHEMA["data"]["val_fraction"]}, "data.")
    if contamination is not None and not CONTAMINATION.check(contamination):
        raise ParamsError(f"contamination = {contamination!r} is not allowed; expected None (the threshold "
                          f"section's rule) or {CONTAMINATION.allowed()} (the share of training rows flagged)")
    return params


def library_versions() -> dict[str, str]:
    """Versions of Python, this package and the libraries that decide the scores (read from
    the installed packages' metadata: none of them is imported)."""
    versions = {"python": platform.python_version(), "vae_anomaly": __version__}
    for name in LIBRARIES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "unknown"
    return versions


def write_detector_folder(
    folder: str | Path,
    model_file: bytes,
    *,
    params: dict[str, dict[str, Any]],
    input_shape: tuple[int, ...],
    val_fraction: float,
    contamination: float | None,
    threshold: float,
    decision_scores: np.ndarray,
    encoding: ColumnEncoding | None,
    reference: dict[str, np.ndarray] | None,
    explanation: dict[str, np.ndarray] | None,
    combined_scales: dict[str, list[float]] | None,
) -> None:
    """Write a detector into ``folder`` (created if need be): ``model_file``, the bytes of
    ``model.vae.save_model``'s checkpoint; the checked ``params``; the fitted rows' primary
    scores (``decision_scores``), the table's columns (``encoding``, None for images), the
    reference arrays (``reference.reference_arrays``, None without reference scores) and the
    explanations' (``ExplanationReference.arrays``, None for images); the ``combined`` score's
    scales (None without it). detector.json goes last, so a folder holding it is complete."""
    folder = Path(folder)
    write_bytes(folder / MODEL_FILE, model_file)
    arrays = {"decision_scores": np.asarray(decision_scores, dtype=np.float64)}
    for prefix, group in (("reference", reference), ("explanation", explanation)):
        arrays.update({f"{prefix}_{k}": v for k, v in (group or {}).items()})
    write_arrays(folder / ARRAYS_FILE, **arrays)
    write_json(folder / META_FILE, {
        "format": FORMAT,
        "input_shape": list(input_shape),
        "params": params,
        "val_fraction": val_fraction,
        "contamination": contamination,
        "threshold": {"score": params["score"]["primary"], "value": float(threshold)},
        "combined_scales": combined_scales,
        "columns": None if encoding is None else encoding.to_json(),
        "versions": library_versions(),
    })
