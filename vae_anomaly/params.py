"""Load ``params.yaml`` once and validate every key against a declared schema.

Each stage calls :func:`load_params` first, so a typo (``model.bta``), a wrong type, a value
out of range or a missing key stops the run before any work starts, with a message that
names the key, the value and what is allowed.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .data.sizing import MIN_TRAIN_ROWS, MIN_VAL_ROWS
from .data.sources import IMAGE_SOURCES  # the labelled ones, and a folder of image files
from .errors import ParamsError, UserError
from .evaluation.baselines import BASELINES
from .model.schedules import reaches_full_beta
from .scoring import registry


@dataclass(frozen=True)
class Number:
    """A float (ints accepted) in [low, high]; ``low_open`` excludes the low end."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    integer: bool = False
    default: Any = field(default=None, kw_only=True)
    doc: str = field(default="", kw_only=True)  # one line, for docs/params.md

    def allowed(self) -> str:
        kind = "an integer" if self.integer else "a number"
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '>='} {self.low:g}")
        if self.high is not None:
            parts.append(f"<= {self.high:g}")
        return kind + (" " + " and ".join(parts) if parts else "")

    def check(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.integer and not isinstance(value, int):
            return False
        if isinstance(value, float) and not math.isfinite(value):  # nan, .inf, -.inf
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or value <= self.high


def Int(low: float | None = None, high: float | None = None, *, default: int | None = None, doc: str = "") -> Number:
    return Number(low, high, integer=True, default=default, doc=doc)


@dataclass(frozen=True)
class Choice:
    options: tuple[str, ...]
    default: str | None = field(default=None, kw_only=True)
    doc: str = field(default="", kw_only=True)

    def allowed(self) -> str:
        return "one of " + ", ".join(repr(o) for o in self.options)

    def check(self, value: Any) -> bool:
        return isinstance(value, str) and value in self.options


@dataclass(frozen=True)
class ListOf:
    item: Number | Choice
    min_len: int = 1
    unique: bool = True
    default: tuple = field(default=(), kw_only=True)  # a tuple: a list default would be shared
    doc: str = field(default="", kw_only=True)

    def allowed(self) -> str:
        return f"a list of at least {self.min_len} distinct item(s), each {self.item.allowed()}"

    def check(self, value: Any) -> bool:
        if not isinstance(value, list) or len(value) < self.min_len:
            return False
        if self.unique and len({repr(v) for v in value}) != len(value):
            return False
        return all(self.item.check(v) for v in value)


@dataclass(frozen=True)
class KindList:
    """A list of mappings, each a ``kind`` (a key of ``kinds``) with that kind's keys, each kind
    at most once: its name is the name of its metrics (reports/per_type.json). One list is one
    column in `dvc exp show`, where a section per kind would be a column per key."""

    kinds: dict[str, dict[str, Number]]
    default: tuple = field(default=(), kw_only=True)  # of mappings, copied by default_params
    doc: str = field(default="", kw_only=True)

    def allowed(self) -> str:
        kinds = "; ".join(f"{kind}: {', '.join(keys)}" for kind, keys in self.kinds.items())
        return f"a list of mappings, each a kind at most once with its keys ({kinds})"

    def validate_list(self, value: Any, key: str) -> None:
        """Raise ParamsError naming the item and key of ``value`` that is wrong (``key``: the
        list's own dotted key)."""
        if not isinstance(value, list):
            raise ParamsError(f"{key} = {value!r} is not allowed; expected {self.allowed()}")
        kind_spec = Choice(tuple(self.kinds))
        seen: dict[str, int] = {}
        for i, item in enumerate(value):
            where = f"{key}[{i}]"
            if not isinstance(item, dict) or "kind" not in item:
                raise ParamsError(f"{where} = {item!r} is not allowed; expected a mapping with "
                                  f"kind: {kind_spec.allowed()}, and that kind's keys")
            kind = item["kind"]
            if not kind_spec.check(kind):
                raise ParamsError(f"{where}.kind = {kind!r} is not allowed; expected {kind_spec.allowed()}")
            if kind in seen:
                raise ParamsError(f"{where}.kind = {kind!r} repeats {key}[{seen[kind]}]; list each kind "
                                  "at most once (its metrics are reported under its name)")
            seen[kind] = i
            validate(item, {"kind": kind_spec, **self.kinds[kind]}, where + ".")


@dataclass(frozen=True)
class Text:
    """Any string; ``""`` where the key means "not set"."""

    default: str = field(default="", kw_only=True)
    doc: str = field(default="", kw_only=True)

    def allowed(self) -> str:
        return "a string (quoted; \"\" for none)"

    def check(self, value: Any) -> bool:
        return isinstance(value, str)


@dataclass(frozen=True)
class Flag:
    """A YAML boolean: true or false (not "yes", not 1)."""

    default: bool = field(default=False, kw_only=True)
    doc: str = field(default="", kw_only=True)

    def allowed(self) -> str:
        return "true or false"

    def check(self, value: Any) -> bool:
        return isinstance(value, bool)


@dataclass(frozen=True)
class OrAuto:
    """``"auto"``, which :func:`resolve_auto` replaces by the value recommended for the data
    (tables, or images by data.protocol), or a value of ``inner``."""

    inner: Number | Choice | ListOf
    default: str = field(default="auto", kw_only=True)
    doc: str = field(default="", kw_only=True)

    def allowed(self) -> str:
        return f"'auto' or {self.inner.allowed()}"

    def check(self, value: Any) -> bool:
        return value == AUTO or self.inner.check(value)


AUTO = "auto"
SCORES = registry.NAMES  # what each needs: vae_anomaly/scoring/registry.py
LIKELIHOODS = ("gaussian", "bernoulli", "discretized_logistic")
THRESHOLD_METHODS = ("mean_std", "percentile")
KL_SCHEDULES = ("constant", "monotonic", "cyclical")
DATA_SOURCES = ("synthetic", "blobs2d", "digits", "mnist", "fashion_mnist", "file", "folder")
PROTOCOLS = ("held_out", "one_class", "plain")
# Classes of each labelled source (len of torchvision's / scikit-learn's class list; a test
# checks these against the libraries, which are too slow to import here).
N_CLASSES = {"digits": 10, "mnist": 10, "fashion_mnist": 10}

# The anomaly kinds of the synthetic data and the keys each takes (what they do:
# data/synthetic.py, make_synthetic).
SYNTHETIC_ANOMALIES = {
    "mean_shift": {"share": Number(0, 1), "n_features": Int(1), "magnitude": Number()},
    "correlation_break": {"share": Number(0, 1), "n_features": Int(1)},
    "variance_explosion": {"share": Number(0, 1), "n_features": Int(1), "scale": Number(0, low_open=True)},
}

# The whole params document. A dict is a section; a leaf says what its value may be and its
# default: the value of the project's params.yaml (tests/test_params.py holds the two equal)
# and of every key a Detector is not given (:func:`default_params`).
SCHEMA: dict[str, Any] = {
    "data": {
        "source": Choice(DATA_SOURCES, default="synthetic",
                         doc="the dataset ([data sources](data.md)); `file` is your own table, `folder` your own "
                             "images"),
        "seed": Int(0, default=0, doc="seeds the data, the anomaly injection and every split"),
        "val_fraction": Number(0, 0.5, low_open=True, default=0.1,
                               doc="share of the training data kept for validation (every source but `synthetic`)"),
        "max_train": Int(0, default=0,
                         doc="at most this many training rows, a seeded subsample (validation left whole; tables "
                             "keep the scaling of the whole training split); 0 = all"),
        "max_test": Int(0, default=0, doc="at most this many test rows, a seeded subsample; 0 = all"),
        "protocol": Choice(PROTOCOLS, default="held_out",
                           doc="labelled images: `data.classes` are the anomalies (`held_out`), the one normal "
                               "class (`one_class`), or every class is normal (`plain`)"),
        "classes": ListOf(Int(0), min_len=0, default=(1,),
                          doc="class indices, as `data.protocol` reads them"),
        "root": Text(default="",
                     doc="MNIST and Fashion-MNIST: a local torchvision root; `''`: `$VAE_ANOMALY_DATA_ROOT`, "
                         "else `data/raw`"),
        "download": Flag(default=True, doc="whether torchvision may download MNIST and Fashion-MNIST into `data/raw`"),
        "synthetic": {
            "n_features": Int(2, default=30, doc="features of the synthetic table"),
            "latent_dim": Int(1, default=4, doc="size of the Gaussian latent whose linear map gives the features"),
            "noise_std": Number(0, low_open=True, default=0.3, doc="std of the noise added to each feature"),
            "n_train": Int(MIN_TRAIN_ROWS, default=8000, doc="training rows, all normal"),
            "n_val": Int(MIN_VAL_ROWS, default=1000, doc="validation rows, all normal"),
            "n_test": Int(2, default=2000, doc="test rows, normal and anomalies"),
            "anomalies": KindList(SYNTHETIC_ANOMALIES, default=(
                {"kind": "mean_shift", "share": 0.05, "n_features": 3, "magnitude": 1.0},
                {"kind": "correlation_break", "share": 0.05, "n_features": 1},
                {"kind": "variance_explosion", "share": 0.05, "n_features": 1, "scale": 3.0},
            ), doc="injected into the test set: `share` of it, `n_features` changed per sample, shifted by "
                   "`magnitude` stds, decorrelated, or noised by `scale` stds; `[]` for none; "
                   "`-S data.synthetic.anomalies.0.magnitude=2` sets one item's key"),
        },
        "blobs2d": {
            "n_train": Int(2, default=1000, doc="PyOD `generate_data`'s training rows (outliers among them)"),
            "n_test": Int(1, default=100, doc="its test rows"),
            "n_features": Int(2, default=2, doc="its features"),
            "contamination": Number(0, 0.5, low_open=True, default=0.1, doc="its share of outliers, in train and test"),
        },
        "file": {
            "path": Text(default="",
                         doc="your table: `.npz` (arrays X, y), `.csv` or `.parquet` (with a label column) or ODDS "
                             "`.mat` (X, y); see [your own data](howto/own-data.md)"),
            "label_column": Text(default="label",
                                 doc="the label column of a `.csv` or `.parquet`: 0 normal, 1 anomaly"),
            "train_fraction": Number(0, 1, low_open=True, default=0.5,
                                     doc="seeded share of the normal rows used for training; the others and every "
                                         "anomaly are the test set"),
            "categorical": ListOf(Text(), min_len=0, default=(),
                                  doc="columns to read as categories even when they hold numbers (text, booleans "
                                      "and pandas categories are categories already)"),
            "drop_columns": ListOf(Text(), min_len=0, default=(),
                                   doc="columns left out of the model: identifiers, timestamps, free text"),
        },
        "folder": {
            "path": Text(default="",
                         doc="your images in MVTec AD's layout: `train/good/`, `test/good/`, `test/<defect>/`, "
                             "optional `ground_truth/<defect>/<stem>_mask.png` ([images](images.md))"),
            "size": ListOf(Int(1), unique=False, min_len=2, default=(64, 64),
                           doc="height and width every image (and mask) is resized to"),
            "channels": Int(0, 3, default=0, doc="1 (greyscale) or 3 (RGB); 0: 3 if any training image is in colour"),
        },
        "digits": {
            "test_fraction": Number(0, 0.5, low_open=True, default=0.3,
                                    doc="seeded share of the 1,797 digits held out for the test set"),
        },
    },
    "model": {
        "kind": Choice(("vae", "ae", "sparse"), default="vae",
                       doc="`ae`: plain autoencoder (no KL); `sparse`: Sparse VAE, Antelmi et al. 2019 "
                           "([the study](study.md))"),
        "architecture": OrAuto(Choice(("mlp", "conv")),
                               doc="`conv`, for images: stride-2 4×4 convolutions before the MLP; `auto`: "
                                   "`mlp` (the [defect benchmark](images.md#results) measured conv level with it on "
                                   "its development defects, at 3× the training time)"),
        "hidden_dims": OrAuto(ListOf(Int(1), unique=False),
                              doc="encoder layer sizes (the decoder mirrors them)"),
        "conv_channels": ListOf(Int(1), unique=False, default=(32, 64),
                                doc="channels of the convolutions of `model.architecture: conv`"),
        "latent_dim": OrAuto(Int(1), doc="latent size"),
        "likelihood": OrAuto(Choice(LIKELIHOODS),
                             doc="the decoder's: squared error (fixed variance ½), binary cross-entropy (data "
                                 "in [0, 1]), or a distribution over 8-bit pixel values"),
        "beta": Number(0, default=1.0, doc="KL weight (β-VAE)"),
    },
    "train": {
        "seed": Int(0, default=0, doc="seeds the weights, the batches, the scores' samples and the baselines"),
        "epochs": Int(1, default=60, doc="the most epochs trained"),
        "batch_size": Int(1, default=128, doc="rows per training step"),
        "lr": Number(0, low_open=True, default=0.001, doc="Adam's learning rate"),
        "kl_schedule": Choice(KL_SCHEDULES, default="monotonic",
                              doc="the KL weight per epoch (`cyclical`: Fu et al. 2019); one that never reaches "
                                  "full β is refused"),
        "kl_warmup_epochs": Int(0, default=10, doc="`monotonic`: epochs over which the KL weight rises to β"),
        "kl_cycles": Int(1, default=4, doc="`cyclical`: cycles over the epochs"),
        "kl_ramp_fraction": Number(0, 1, low_open=True, default=0.5,
                                   doc="`cyclical`: the share of each cycle over which the KL weight rises"),
        "patience": Int(1, default=8,
                        doc="epochs at full β without validation improvement before stopping (the best epoch's "
                            "weights are kept)"),
        "device": Choice(("auto", "cpu", "cuda"), default="auto",
                         doc="where `train` and `score` run; `auto`: CUDA when present"),
    },
    "score": {
        "names": OrAuto(ListOf(Choice(SCORES)),
                        doc="the [scores](#scores) to compute"),
        "primary": OrAuto(Choice(SCORES),
                          doc="the one thresholded and reported first"),
        "elbo_samples": Int(1, default=16, doc="posterior samples in the negative ELBO"),
        "iwae_samples": Int(1, default=50, doc="K, importance samples of `iwae` and `complexity_corrected`"),
        "complexity_codec": Choice(("jpeg2000", "png"), default="jpeg2000",
                                   doc="lossless codec of the complexity L(x) in `complexity_corrected` and "
                                       "`compressed_length`"),
        "knn_neighbors": Int(1, default=5, doc="k of `latent_knn`, `latent_residual_knn` and `joint_knn`"),
        "combine": OrAuto(ListOf(Choice(SCORES)),
                          doc="the scores `combined` averages, each scaled by its validation median and IQR "
                              "(each in `score.names`)"),
        "regret_steps": Int(1, default=20, doc="`likelihood_regret`: Adam steps fitting each sample's posterior"),
        "regret_lr": Number(0, low_open=True, default=0.1, doc="`likelihood_regret`: their learning rate"),
        "batch_size": Int(1, default=1024, doc="rows scored at once"),
    },
    "threshold": {
        "method": Choice(THRESHOLD_METHODS, default="mean_std",
                         doc="mean + `threshold.k` std, or the `threshold.q`-th percentile"),
        "split": Choice(("train", "val", "test"), default="val",
                        doc="the split whose unlabelled scores it is fitted on"),
        "k": Number(default=3.0, doc="`mean_std`: stds above the mean"),
        "q": Number(0, 100, default=99.0, doc="`percentile`: the percentile"),
    },
    "baselines": {
        "names": ListOf(Choice(BASELINES), min_len=0, default=("iforest", "ecod", "knn", "autoencoder", "vae"),
                        doc="PyOD detectors run beside the VAE (`autoencoder` and `vae` with the VAE's widths and "
                            "`train` budget, early-stopped on the same validation split) and, for images, "
                            "`compressed_length`; `[]` for none"),
        "knn_neighbors": Int(1, default=5, doc="k of the KNN detector"),
        "on_error": Choice(("record", "stop"), default="record",
                           doc="a detector that raises: left out with its error in the metrics, or the stage stops"),
    },
    "plot": {
        "n_images": Int(1, 64, default=10, doc="images per row in the image figures"),
    },
}


# What "auto" becomes, by the data (docs/suite.md chose each on the development halves of its
# tasks): tables get the MLP 128-64-8 with a Gaussian decoder and joint_knn (latent_residual_knn
# before issue 32: 0.874 against 0.880 on the 22 tabular development halves); images
# the MLP 400-20, whose likelihood and scores depend on what is anomalous. With data.protocol
# held_out the anomalies are whole classes never seen, often simpler than the normal ones,
# so the decoder is the discretised logistic (a code length of the 8-bit image) and the score
# sums complexity_corrected, latent_knn and ssim_error (ssim_error added for issue 32, development
# halves, screened on seed 0: +0.010 on held-out MNIST, +0.016 on Fashion-MNIST); otherwise (one_class, plain, and a Detector fit
# on images) the anomalies are images unlike one normal kind, so the decoder is Bernoulli and
# the score averages smoothed_reconstruction_mse, ssim_error, hog_error and latent_knn (added for
# issue 32, development halves: ssim_error +0.010 on one-class MNIST and +0.005 on Fashion-MNIST,
# then hog_error +0.003 and +0.001).
AUTO_ARCHITECTURE = {"tables": {"architecture": "mlp", "hidden_dims": [128, 64], "latent_dim": 8},
                     "images": {"architecture": "mlp", "hidden_dims": [400], "latent_dim": 20}}
# data.source folder: conv and mlp were level on the development defects of the defect
# benchmark (docs/images.md, "Results"); mlp trains in a third of the time.
FOLDER_ARCHITECTURE = "mlp"
AUTO_SCORES = {
    "tables": {"names": ["joint_knn", "latent_residual_knn", "reconstruction_mse", "negative_elbo"],
               "primary": "joint_knn", "combine": ["joint_knn", "reconstruction_mse"]},
    "images_complexity": {"names": ["combined", "complexity_corrected", "latent_knn", "ssim_error", "negative_elbo",
                                    "reconstruction_mse"],
                          "primary": "combined", "combine": ["complexity_corrected", "latent_knn", "ssim_error"]},
    "images": {"names": ["combined", "smoothed_reconstruction_mse", "ssim_error", "hog_error", "latent_knn",
                         "negative_elbo", "reconstruction_mse"],
               "primary": "combined",
               "combine": ["smoothed_reconstruction_mse", "ssim_error", "hog_error", "latent_knn"]},
    # data.source folder: the anomalies are local defects, which the whole image's likelihood
    # sees and the latent distance hardly does (negative_elbo 0.954, combined 0.865 on the
    # development defects of the defect benchmark, docs/images.md)
    "images_folder": {"names": ["negative_elbo", "combined", "smoothed_reconstruction_mse", "latent_knn",
                                "reconstruction_mse"],
                      "primary": "negative_elbo", "combine": ["smoothed_reconstruction_mse", "latent_knn"]},
}


def resolve_sections(model: dict[str, Any], score: dict[str, Any], images: bool, protocol: str) -> None:
    """Replace, in place, each "auto" of the ``model`` and ``score`` sections by its value for
    tables or images (``images``) under ``protocol`` (data.protocol, or "folder" for
    data.source folder: AUTO_ARCHITECTURE, AUTO_SCORES). The scores follow the resolved model:
    complexity_corrected only where it can be computed."""
    data = "images" if images else "tables"
    if protocol == "folder" and model["architecture"] == AUTO:
        model["architecture"] = FOLDER_ARCHITECTURE
    for key, value in AUTO_ARCHITECTURE[data].items():
        if model[key] == AUTO:
            model[key] = copy.deepcopy(value)
    if model["likelihood"] == AUTO:
        model["likelihood"] = ("gaussian" if not images else
                               "discretized_logistic" if protocol == "held_out" else "bernoulli")
    if images:
        complexity = model["likelihood"] == "discretized_logistic" and model["kind"] == "vae"
        data = "images_complexity" if complexity else "images_folder" if protocol == "folder" else "images"
    for key, value in AUTO_SCORES[data].items():
        if score[key] == AUTO:
            score[key] = copy.deepcopy(value)


def resolve_auto(doc: dict[str, Any]) -> dict[str, Any]:
    """A copy of the params document ``doc`` with every "auto" resolved for its data.source
    and data.protocol (:func:`resolve_sections`)."""
    out = copy.deepcopy(doc)
    # A folder's anomalies are local defects of its one normal kind (train/good).
    protocol = "folder" if out["data"]["source"] == "folder" else out["data"]["protocol"]
    resolve_sections(out["model"], out["score"], out["data"]["source"] in IMAGE_SOURCES, protocol)
    return out


def default_params(schema: dict[str, Any] = SCHEMA) -> dict[str, Any]:
    """The params document of every default: a fresh copy, lists as lists (safe to change)."""
    return {name: default_params(spec) if isinstance(spec, dict)
            else copy.deepcopy(list(spec.default)) if isinstance(spec, (ListOf, KindList)) else spec.default
            for name, spec in schema.items()}


def set_dotted(params: dict[str, Any], key: str, value: Any, what: str = "override",
               known_only: bool = False) -> None:
    """Set the dotted ``key`` ("train.epochs") of the nested ``params`` to ``value``. A key
    through something that is not a section stops with a UserError naming ``what`` and the
    key; so does an unknown last part with ``known_only`` (otherwise :func:`validate` reports
    it, with the keys allowed there)."""
    *parents, leaf = key.split(".")
    node = params
    for part in parents:
        if not isinstance(node.get(part), dict):
            raise UserError(f"{what} {key!r}: {part!r} is not a params section")
        node = node[part]
    if known_only and leaf not in node:
        raise UserError(f"{what} {key!r}: no such param")
    node[leaf] = value


def validate(doc: Any, schema: dict[str, Any] = SCHEMA, prefix: str = "") -> dict[str, Any]:
    """Return ``doc`` if it matches ``schema``; otherwise raise ParamsError naming the key. A
    whole document's rules across keys are checked with its "auto" values resolved, and it is
    returned as given (resolve with :func:`resolve_auto`)."""
    where = prefix.rstrip(".") or "the params document"
    if not isinstance(doc, dict):
        raise ParamsError(f"{where} must be a mapping of keys, got {type(doc).__name__}")
    unknown = sorted(set(doc) - set(schema), key=str)  # YAML keys may be int, bool or None
    if unknown:
        key = prefix + str(unknown[0])
        raise ParamsError(
            f"unknown key {key!r}; allowed keys here: {', '.join(prefix + k for k in schema)}"
        )
    for name, spec in schema.items():
        key = prefix + name
        if name not in doc:
            raise ParamsError(f"missing key {key!r}; add it to params.yaml (docs/params.md lists every key)")
        value = doc[name]
        if isinstance(spec, dict):
            validate(value, spec, key + ".")
        elif isinstance(spec, KindList):
            spec.validate_list(value, key)
        elif not spec.check(value):
            raise ParamsError(f"{key} = {value!r} is not allowed; expected {spec.allowed()}")
    if not prefix:
        _check_relations(resolve_auto(doc))
    return doc


def _check_relations(p: dict[str, Any]) -> None:
    """Rules that span several keys."""
    syn = p["data"]["synthetic"]
    for i, anomaly in enumerate(syn["anomalies"]):
        if anomaly["n_features"] > syn["n_features"]:
            raise ParamsError(
                f"data.synthetic.anomalies[{i}].n_features = {anomaly['n_features']} ({anomaly['kind']}) "
                f"exceeds data.synthetic.n_features = {syn['n_features']}"
            )
    shares = sum(anomaly["share"] for anomaly in syn["anomalies"])
    if shares >= 1:
        raise ParamsError(
            f"the shares of data.synthetic.anomalies add up to {shares:g}; they must sum to less "
            "than 1 so the test set keeps normal samples"
        )
    _check_caps(p["data"])
    _check_classes(p["data"])
    check_scores_apply(p["score"], p["model"], p["data"]["source"])
    _check_data_applies(p)
    _check_file(p["data"])
    _check_folder(p["data"], p["model"])
    _check_schedule(p["train"])


def _check_schedule(train: dict[str, Any]) -> None:
    """A KL schedule must reach the full beta: early stopping and the best weights count only
    epochs at full beta, so a schedule that never gets there silently trains every epoch and
    keeps the last one."""
    if reaches_full_beta(train):
        return
    if train["kl_schedule"] == "monotonic":
        raise ParamsError(
            f"train.kl_warmup_epochs = {train['kl_warmup_epochs']} with train.epochs = "
            f"{train['epochs']}: the KL weight never reaches model.beta, so early stopping never "
            "starts; make train.kl_warmup_epochs smaller than train.epochs"
        )
    raise ParamsError(
        f"train.kl_ramp_fraction = {train['kl_ramp_fraction']!r} with train.kl_cycles = "
        f"{train['kl_cycles']} and train.epochs = {train['epochs']}: no epoch of a cycle reaches "
        "model.beta, so early stopping never starts; lower train.kl_ramp_fraction (e.g. 0.5) "
        "or train.kl_cycles"
    )


def check_scores_apply(score: dict[str, Any], model: dict[str, Any], source: str | None = None) -> None:
    """The scores of ``score.names`` that the ``model`` section can give, on ``data.source``
    (None: not known yet, as for a Detector before it sees data)."""
    names, kind = score["names"], model["kind"]
    if score["primary"] not in names:
        raise ParamsError(f"score.primary = {score['primary']!r} must be one of score.names {names}")
    if "combined" in names:
        combine = score["combine"]
        missing = [c for c in combine if c not in names or c == "combined"]
        if len(combine) < 2 or missing:
            raise ParamsError(
                f"score.names includes 'combined', the mean of the scores in score.combine = "
                f"{combine}: list at least two of the other scores in score.names there"
                + (f" ({missing[0]!r} is not one)" if missing else "")
            )
    for name in names:
        if registry.SCORES[name].images and source is not None and source not in IMAGE_SOURCES:
            raise ParamsError(
                f"score.names includes {name!r}, which is defined on images only, but "
                f"data.source = {source!r} is tabular; use it with {', '.join(IMAGE_SOURCES)}"
            )
        problem = registry.model_problem(name, kind, model["likelihood"])
        if problem:
            raise ParamsError(f"score.names includes {name!r}, which {problem}; otherwise remove it from score.names")


def _check_data_applies(p: dict[str, Any]) -> None:
    """Baselines and likelihoods that only some data can use."""
    source = p["data"]["source"]
    if "compressed_length" in p["baselines"]["names"] and source not in IMAGE_SOURCES:
        raise ParamsError(
            "baselines.names includes 'compressed_length', the compressed length of an image, "
            f"but data.source = {source!r} is tabular; use it with {', '.join(IMAGE_SOURCES)}"
        )
    if p["model"]["likelihood"] == "discretized_logistic" and source not in IMAGE_SOURCES:
        raise ParamsError(
            "model.likelihood = 'discretized_logistic' models 8-bit pixel intensities, but "
            f"data.source = {source!r} is tabular; use 'gaussian'"
        )


def _check_caps(data: dict[str, Any]) -> None:
    """A cap on rows is 0 (none) or leaves enough rows to train on and to rank."""
    for key, least in (("max_train", MIN_TRAIN_ROWS), ("max_test", 2)):
        if 0 < data[key] < least:
            raise ParamsError(
                f"data.{key} = {data[key]} leaves too few rows; expected 0 (no cap) or an "
                f"integer >= {least}"
            )


def _check_file(data: dict[str, Any]) -> None:
    if data["file"]["train_fraction"] >= 1:
        raise ParamsError(
            f"data.file.train_fraction = {data['file']['train_fraction']!r} leaves no normal "
            "rows for the test set; expected a number > 0 and < 1"
        )
    if data["source"] == "file" and not data["file"]["path"]:
        raise ParamsError(
            "data.source = 'file' needs data.file.path: a .npz (arrays X, y), .csv or .parquet (with "
            "the label column data.file.label_column) or .mat (X, y) file, 0 normal / 1 anomaly"
        )


def _check_folder(data: dict[str, Any], model: dict[str, Any]) -> None:
    folder = data["folder"]
    if len(folder["size"]) != 2:
        raise ParamsError(f"data.folder.size = {folder['size']!r}: give two numbers, the height and width")
    if folder["channels"] == 2:
        raise ParamsError("data.folder.channels = 2 is not allowed; expected 0 (inferred), 1 (greyscale) or 3 (RGB)")
    if data["source"] != "folder":
        return
    if not folder["path"]:
        raise ParamsError("data.source = 'folder' needs data.folder.path: a folder holding train/good/ (normal "
                          "images), test/good/ and test/<defect>/, as MVTec AD lays them out")
    # Each stride-2 convolution halves the height and width, and its mirror doubles them back.
    factor = 2 ** len(model["conv_channels"])
    if model["architecture"] == "conv" and any(side % factor for side in folder["size"]):
        raise ParamsError(f"data.folder.size = {folder['size']} with model.architecture = 'conv' and "
                          f"{len(model['conv_channels'])} convolutions: each side must be a multiple of {factor}")


def _check_classes(data: dict[str, Any]) -> None:
    """data.classes against data.protocol and the classes of data.source (labelled sources)."""
    n_classes = N_CLASSES.get(data["source"])
    protocol, classes = data["protocol"], data["classes"]
    if n_classes is None or protocol == "plain":
        return
    where = f"data.classes = {classes!r} with data.source = {data['source']!r}"
    bad = [c for c in classes if c >= n_classes]
    if bad:
        raise ParamsError(f"{where}: no class {bad[0]}; class indices are 0 to {n_classes - 1}")
    if protocol == "one_class" and len(classes) != 1:
        raise ParamsError(f"{where}: data.protocol = 'one_class' needs exactly one (normal) class")
    if protocol == "held_out" and not 0 < len(classes) < n_classes:
        raise ParamsError(
            f"{where}: data.protocol = 'held_out' needs 1 to {n_classes - 1} anomalous "
            "classes, so that some classes remain normal"
        )


def load_params(path: str | Path = "params.yaml", resolve: bool = True) -> dict[str, Any]:
    """params.yaml, validated, with every "auto" resolved for its data (``resolve``; False
    keeps them, for callers that change data.source or data.protocol and then resolve)."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path} not found; run from the project root, where params.yaml lives")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise ParamsError(
            f"{path} is not UTF-8 text (bad byte at {err.start}); save it as UTF-8"
        ) from err
    except RecursionError as err:
        raise ParamsError(f"{path} nests lists or mappings too deeply to read") from err
    except yaml.YAMLError as err:
        raise ParamsError(f"{path} is not valid YAML: {_yaml_problem(err)}") from err
    return resolve_auto(validate(doc)) if resolve else validate(doc)


def _yaml_problem(err: yaml.YAMLError) -> str:
    """PyYAML's message on one line: the problem, and where (1-based line and column)."""
    mark = getattr(err, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    return " ".join(f"{getattr(err, 'problem', None) or err}{where}".split())
