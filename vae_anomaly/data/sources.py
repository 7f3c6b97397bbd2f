"""The dataset of ``data.source`` as splits: ``synthetic`` and ``blobs2d`` (made here,
synthetic.py), the labelled images ``digits``, ``mnist`` and ``fashion_mnist`` (images.py)
the user's own labelled table, ``file`` (tables.py), and the user's own images, ``folder``
(folders.py: MVTec AD's layout)."""
from __future__ import annotations

from typing import Any

import numpy as np

from . import images as image_sources
from . import synthetic, tables
from .splits import Splits, cap_rows, split_by_protocol, split_folder, split_table

IMAGE_SOURCES = ("digits", "mnist", "fashion_mnist", "folder")


def make_splits(data_params: dict[str, Any]) -> Splits:
    """The dataset named by ``data.source``, with at most ``data.max_train`` training and
    ``data.max_test`` test rows."""
    splits = _source_splits(data_params)
    return cap_rows(splits, data_params["max_train"], data_params["max_test"], data_params["seed"])


def _source_splits(data_params: dict[str, Any]) -> Splits:
    source, seed = data_params["source"], data_params["seed"]
    if source == "synthetic":
        return synthetic.make_synthetic(data_params["synthetic"], seed)
    if source == "file":
        cfg = data_params["file"]
        table = tables.load_table(cfg["path"], cfg["label_column"], cfg["drop_columns"])
        return split_table(table, cfg["train_fraction"], data_params["val_fraction"], seed, cfg["categorical"])
    if source == "folder":
        from . import folders  # here: Pillow is read only for folders of images

        cfg = data_params["folder"]
        images = folders.load_folder(cfg["path"], tuple(cfg["size"]), cfg["channels"])
        return split_folder(images, data_params["val_fraction"], seed, cfg["path"])
    if source == "blobs2d":
        return synthetic.make_blobs2d(data_params["blobs2d"], seed, data_params["val_fraction"])
    rng = np.random.default_rng(seed)
    if source == "digits":
        images = image_sources.load_digits_images(data_params["digits"]["test_fraction"], rng)
    elif source in image_sources.TORCHVISION_CLASSES:
        images = image_sources.load_torchvision(source, data_params["root"], data_params["download"])
    else:
        raise ValueError(f"unknown data.source {source!r}")  # params validation lists the sources
    return split_by_protocol(
        images, data_params["protocol"], data_params["classes"], data_params["val_fraction"], rng
    )
