"""Labelled image datasets: MNIST and Fashion-MNIST through torchvision, scikit-learn's digits.

Each loader returns :class:`LabelledImages` (float32 images in [0, 1], shape (N, 1, H, W),
and class indices); ``splits.split_by_protocol`` turns them into anomaly-detection splits.

MNIST and Fashion-MNIST are read from a folder laid out as torchvision's ``root``
(``<root>/MNIST/raw/*.gz``, ``<root>/FashionMNIST/raw/*.gz``): ``data.root``, else the
environment variable ``VAE_ANOMALY_DATA_ROOT``, else the download cache ``data/raw``, which
torchvision fills when ``data.download`` is true. Wherever the files come from, each .gz is
checked against the md5 that torchvision itself pins (the class's ``resources``), so the
same params give the same data.

torchvision and scikit-learn are imported inside the loaders: importing torchvision alone
takes seconds, and the tabular sources need neither.
"""
from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError

log = logging.getLogger(__name__)

DATA_ROOT_ENV = "VAE_ANOMALY_DATA_ROOT"
DOWNLOAD_CACHE = Path("data/raw")
# data.source -> the torchvision.datasets class (also the folder name under the root)
TORCHVISION_CLASSES = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}


@dataclass
class LabelledImages:
    train_images: np.ndarray  # float32 (N, 1, H, W) in [0, 1]
    train_labels: np.ndarray  # int64 class index per image
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: list[str]  # indexed by class index


def torchvision_class(source: str) -> type:
    from torchvision import datasets

    return getattr(datasets, TORCHVISION_CLASSES[source])


def data_root(root_param: str) -> tuple[Path | None, str]:
    """The local torchvision root and where it came from; (None, ...) when neither is set."""
    if root_param:
        return Path(root_param).expanduser(), f"data.root = {root_param!r}"
    from_env = os.environ.get(DATA_ROOT_ENV, "")
    if from_env:
        return Path(from_env).expanduser(), f"${DATA_ROOT_ENV} = {from_env!r}"
    return None, f"the download cache (neither data.root nor ${DATA_ROOT_ENV} is set)"


def verify_raw_files(dataset: type, root: Path, origin: str) -> None:
    """Check every raw file of ``dataset`` under ``root`` against torchvision's md5.

    The same check torchvision makes on a download (``resources`` and ``check_integrity``),
    made on local files too; a missing or different file raises UserError saying how to fix it.
    """
    from torchvision.datasets.utils import calculate_md5, check_integrity

    raw = root / dataset.__name__ / "raw"
    for filename, md5 in dataset.resources:
        path = raw / filename
        if check_integrity(path, md5):
            continue
        problem = "is missing" if not path.is_file() else f"has md5 {calculate_md5(path)}"
        raise UserError(
            f"{path} {problem}; expected the official file with md5 {md5} "
            f"(torchvision.datasets.{dataset.__name__}.resources), read from {origin}. "
            f"Provide it: set data.root (params.yaml, or `dvc exp run -S data.root=DIR`) or the "
            f"environment variable {DATA_ROOT_ENV} to a folder holding "
            f"{dataset.__name__}/raw/{filename}, or leave both unset with data.download: true "
            f"so that torchvision downloads it into {DOWNLOAD_CACHE}"
        )


def download(dataset: type, cache: Path) -> None:
    """Let torchvision fetch the raw files into ``cache`` (it skips files already verified)."""
    from torchvision.datasets.utils import check_integrity

    raw = cache / dataset.__name__ / "raw"
    if all(check_integrity(raw / filename, md5) for filename, md5 in dataset.resources):
        return
    log.info("downloading %s into %s", dataset.__name__, cache)
    try:
        dataset(cache, train=True, download=True)
    except (RuntimeError, OSError) as err:
        raise UserError(
            f"could not download {dataset.__name__} into {cache} ({' '.join(str(err).split())}). "
            f"Without internet, set data.root or {DATA_ROOT_ENV} to a folder holding "
            f"{dataset.__name__}/raw/*.gz"
        ) from err


def load_torchvision(
    source: str, root_param: str, allow_download: bool, cache: Path = DOWNLOAD_CACHE
) -> LabelledImages:
    """MNIST or Fashion-MNIST: the official train and test files, md5-checked."""
    from torchvision.datasets.utils import extract_archive

    dataset = torchvision_class(source)
    root, origin = data_root(root_param)
    if root is None:
        root = cache
        if allow_download:
            download(dataset, cache)
    verify_raw_files(dataset, root, origin)
    log.info("reading %s from %s (%s)", dataset.__name__, root / dataset.__name__ / "raw", origin)
    # torchvision reads the uncompressed idx files; unpack the verified .gz files into a
    # temporary root, so a read-only local folder works and no stale copy outlives the run.
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / dataset.__name__ / "raw"
        raw.mkdir(parents=True)
        for filename, _ in dataset.resources:
            extract_archive(root / dataset.__name__ / "raw" / filename, raw)
        train, test = dataset(tmp, train=True), dataset(tmp, train=False)
    return LabelledImages(
        unit_images(train.data.numpy()), train.targets.numpy().astype(np.int64),
        unit_images(test.data.numpy()), test.targets.numpy().astype(np.int64),
        list(dataset.classes),
    )


def unit_images(pixels: np.ndarray, max_value: float = 255.0) -> np.ndarray:
    """(N, H, W) intensities in [0, max_value] -> float32 (N, 1, H, W) in [0, 1]."""
    return (pixels[:, None] / max_value).astype(np.float32)


def load_digits_images(test_fraction: float, rng: np.random.Generator) -> LabelledImages:
    """scikit-learn's bundled 8x8 digits (1,797 images, intensities 0..16), a seeded test split."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = rng.permutation(len(digits.target))
    n_test = max(1, round(test_fraction * len(order)))
    test, train = order[:n_test], order[n_test:]
    images, labels = unit_images(digits.images, 16.0), digits.target.astype(np.int64)
    return LabelledImages(
        images[train], labels[train], images[test], labels[test],
        [str(d) for d in digits.target_names],
    )
