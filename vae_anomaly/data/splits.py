"""Splits of a dataset: train, val, test (normal + anomalies).

Train and val are normal only, except for ``blobs2d``, whose training data is contaminated
as in PyOD's examples. Test labels (0 normal, 1 anomaly) and each test sample's kind
(``"normal"`` or the anomaly type or class) are kept apart from the features so that only
the evaluation ever reads them.

Labelled images are split into normal and anomalous classes by ``data.protocol``
(:func:`split_by_protocol`), a user's labelled table by its labels (:func:`split_table`).
Tables are (N, D) float32, encoded with the training split's columns (columns.py: numbers
standardised, categories one-hot, NaN where missing), kept in ``Splits.encoding`` so that new
rows are encoded alike; images are float32 (N, C, H, W) in [0, 1].
"""
from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from . import images as image_sources
from . import tables
from .columns import ColumnEncoding
from .sizing import MIN_TRAIN_ROWS, MIN_VAL_ROWS, Adaptations, validation_rows

if TYPE_CHECKING:
    from .folders import FolderImages

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")  # the members of prepare's features.npz, in their seed order
NORMAL = "normal"
OUTLIER = "outlier"  # the one anomaly kind of blobs2d
ANOMALY = "anomaly"  # the one anomaly kind of a user's file (data.source = 'file')


@dataclass
class Splits:
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    test_label: np.ndarray  # 0 normal, 1 anomaly
    test_kind: np.ndarray  # "normal" or the anomaly type, one string per test sample
    # Labels of the training and validation samples, only where those are contaminated
    # (blobs2d); None where they are normal by construction.
    train_label: np.ndarray | None = None
    val_label: np.ndarray | None = None
    # What a small dataset changed (data.val_fraction raised to its minimum), by param.
    adaptations: Adaptations = field(default_factory=dict)
    # The training split's columns the tables were encoded with; None for images, which stay
    # in [0, 1].
    encoding: ColumnEncoding | None = None
    # Which columns each test row's anomaly changed, where the data knows (synthetic): bool
    # (N_test, columns), all False for normal rows. Only evaluate reads it.
    test_changed: np.ndarray | None = None
    # Images of a folder: the defect pixels of each test image, bool (N_test, H, W), and
    # whether each one's mask is known (normal images, and defects with a mask file). Only
    # evaluate and plot read them.
    test_mask: np.ndarray | None = None
    mask_known: np.ndarray | None = None

    def labels(self) -> dict[str, np.ndarray]:
        """The arrays of data/prepared/labels.npz: the test labels, and train/val labels and the
        changed columns if any."""
        arrays = {"test_label": self.test_label, "test_kind": self.test_kind}
        for name in ("train_label", "val_label", "test_changed", "test_mask", "mask_known"):
            if getattr(self, name) is not None:
                arrays[name] = getattr(self, name)
        return arrays

    def summary(self) -> dict[str, Any]:
        """Counts per split and per test kind, for the prepare stage's JSON summary."""
        def split(x: np.ndarray, label: np.ndarray | None) -> dict[str, int]:
            counts = {"n": len(x)}
            return counts if label is None else {**counts, "n_anomalies": int(label.sum())}

        return {
            "n_features": int(np.prod(self.train.shape[1:])),
            "train": split(self.train, self.train_label),
            "val": split(self.val, self.val_label),
            "test": {
                "n": len(self.test),
                "n_anomalies": int(self.test_label.sum()),
                "by_kind": dict(sorted(Counter(self.test_kind.tolist()).items())),
            },
            "adaptations": self.adaptations,
        }


def standardize(splits: Splits, names: list[str] | None = None) -> Splits:
    """Scale every split of a numeric table with the mean and std of the training split alone
    (its columns named ``names``, default x0, x1, ...)."""
    encoding = ColumnEncoding.fit_array(splits.train, names)
    return replace(
        splits, train=encoding.transform(splits.train).x, val=encoding.transform(splits.val).x,
        test=encoding.transform(splits.test).x, encoding=encoding,
    )


def split_by_protocol(
    images: image_sources.LabelledImages,
    protocol: str,
    classes: list[int],
    val_fraction: float,
    rng: np.random.Generator,
) -> Splits:
    """Normal and anomalous classes of a labelled dataset, by ``data.protocol``:

    - held_out: the listed classes are the anomalies, the others normal;
    - one_class: the one listed class is normal, all others are anomalies;
    - plain: every class is normal (train on everything; the test set has no anomalies).

    Images of anomalous classes are dropped from the training data; validation is a seeded
    ``val_fraction`` of the remaining (normal) training images. Each anomalous test image's
    kind is its class name, so evaluation reports metrics per anomalous class.
    """
    n_classes = len(images.class_names)
    if protocol == "held_out":
        anomalous = sorted(set(classes))
    elif protocol == "one_class":
        anomalous = sorted(set(range(n_classes)) - set(classes))
    elif protocol == "plain":
        anomalous = []
    else:
        raise ValueError(f"unknown data.protocol {protocol!r}")  # params validation lists them

    normal_train = images.train_images[~np.isin(images.train_labels, anomalous)]
    order = rng.permutation(len(normal_train))
    n_val, adapted = validation_rows(
        len(order), val_fraction,
        f"data.protocol = {protocol!r} with data.classes = {classes} on {len(images.train_labels)} training images",
        "choose data.protocol and data.classes that leave more normal training images",
    )
    is_anomaly = np.isin(images.test_labels, anomalous)
    names = np.array(images.class_names)
    return Splits(
        normal_train[order[n_val:]], normal_train[order[:n_val]], images.test_images,
        is_anomaly.astype(np.int64), np.where(is_anomaly, names[images.test_labels], NORMAL),
        adaptations=adapted,
    )


def split_folder(images: FolderImages, val_fraction: float, seed: int, where: str) -> Splits:
    """A folder of images as splits: a seeded ``val_fraction`` of train/good for validation,
    the rest for training; test/good and every test/<defect> for the test set, each defect
    image's kind its folder's name, with the defect masks where known."""
    order = np.random.default_rng(seed).permutation(len(images.train))
    n_val, adapted = validation_rows(len(order), val_fraction, f"the {len(order)} images of {where}/train/good",
                                     f"put more normal images in {where}/train/good")
    test_label = (images.test_kind != NORMAL).astype(np.int64)
    return Splits(images.train[order[n_val:]], images.train[order[:n_val]], images.test, test_label,
                  images.test_kind, adaptations=adapted, test_mask=images.test_mask, mask_known=images.mask_known)


def split_table(
    table: tables.LabelledTable, train_fraction: float, val_fraction: float, seed: int,
    categorical: list[str] = (),
) -> Splits:
    """A user's labelled table as splits: a seeded ``train_fraction`` of the normal rows for
    training (``val_fraction`` of those kept for validation); the other normal rows and every
    anomaly for the test set. Encoded with the training split's columns (``categorical``: the
    columns to read as categories whatever they hold)."""
    rng = np.random.default_rng(seed)
    normal = rng.permutation(np.flatnonzero(table.labels == 0))
    n_fit = max(0, min(round(train_fraction * len(normal)), len(normal) - 1))  # >= 1 normal test row
    n_val, adapted = validation_rows(
        n_fit, val_fraction,
        f"data.file.train_fraction = {train_fraction:g} of the {len(normal)} normal rows (label 0) of {table.path}",
        _more_training_rows(len(normal)),
    )
    fit, held_out = normal[:n_fit], normal[n_fit:]
    test_rows = rng.permutation(np.concatenate([held_out, np.flatnonzero(table.labels == 1)]))
    test_label = table.labels[test_rows]
    rows = {"train": fit[n_val:], "val": fit[:n_val], "test": test_rows}
    kinds = np.where(test_label == 1, ANOMALY, NORMAL)
    if table.frame is None:  # an array (.npz, .mat): numbers only
        x = table.features
        splits = Splits(x[rows["train"]], x[rows["val"]], x[rows["test"]], test_label, kinds, adaptations=adapted)
        return standardize(splits, table.feature_names)
    frame = table.frame
    encoding = ColumnEncoding.fit(frame.iloc[rows["train"]], categorical, table.ignored,
                                  where=f"the training rows of {table.path}")
    encoded = {}
    for split, index in rows.items():
        part = encoding.transform(frame.iloc[index])
        for name, n in part.unseen.items():
            log.info("%s split: %d rows hold a category of %r unseen in training (scored as its least likely)",
                     split, n, name)
        encoded[split] = part.x
    return Splits(encoded["train"], encoded["val"], encoded["test"], test_label, kinds, adaptations=adapted,
                  encoding=encoding)


def _more_training_rows(n_normal: int) -> str:
    """What to change when a table's normal rows give too few for training and validation."""
    needed = MIN_TRAIN_ROWS + MIN_VAL_ROWS
    if n_normal > needed:  # one normal row must stay for the test set
        return f"raise data.file.train_fraction to {math.ceil(100 * needed / n_normal) / 100:.2f} or more"
    return f"use a table with more normal rows: at least {needed + 1}, {2 * needed} at data.file.train_fraction 0.5"


def cap_rows(splits: Splits, max_train: int, max_test: int, seed: int) -> Splits:
    """A seeded subsample of at most ``max_train`` training rows and ``max_test`` test rows
    (0: no cap), in their original order; validation is left whole. Tables keep the encoding
    of the whole training split, so a cap changes which rows a model sees, not their units."""
    rng = np.random.default_rng([seed, 1])  # apart from the draws that built the splits

    def keep(n: int, cap: int) -> np.ndarray:
        return np.sort(rng.choice(n, cap, replace=False)) if 0 < cap < n else np.arange(n)

    train, test = keep(len(splits.train), max_train), keep(len(splits.test), max_test)
    return replace(
        splits, train=splits.train[train], test=splits.test[test],
        test_label=splits.test_label[test], test_kind=splits.test_kind[test],
        train_label=None if splits.train_label is None else splits.train_label[train],
        **{name: None if getattr(splits, name) is None else getattr(splits, name)[test]
           for name in ("test_changed", "test_mask", "mask_known")},
    )
