"""Labelled image datasets: MNIST and Fashion-MNIST through torchvision, scikit-learn's digits.

Each loader returns :class:`LabelledImages` (float32 images in [0, 1], shape (N, 1, H, W),
and class indices); ``data.split_by_protocol`` turns them into anomaly-detection splits.

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

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .io import UserError, log

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


# ---------------------------------------------------------------------------------------------
# The user's own tabular data (data.source = 'file')
# ---------------------------------------------------------------------------------------------

TABLE_FORMATS = (".npz", ".csv", ".parquet", ".mat")


@dataclass
class LabelledTable:
    features: np.ndarray  # float64 (N, D)
    labels: np.ndarray  # int64, 0 normal, 1 anomaly
    feature_names: list[str]  # one per column of ``features``, as error messages name them
    path: str  # the file it was read from


def load_table(path: str | Path, label_column: str) -> LabelledTable:
    """A labelled table from ``path``: ``.npz`` (arrays X and y), ``.csv`` (a header row; the
    column ``label_column`` holds the labels, every other column is a feature), ``.parquet``
    (its columns, as a .csv's) or an ODDS-style MATLAB ``.mat`` (X and y, read by
    scipy.io.loadmat). Labels are 0 (normal) or
    1 (anomaly). NaN, infinite or non-numeric values, a missing array or label column and
    labels other than 0/1 raise UserError naming the file and the column."""
    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"data.file.path = {str(path)!r}: no such file; give the path of a .npz, .csv, "
            ".parquet or .mat file, relative to the project root"
        )
    suffix = path.suffix.lower()
    if suffix == ".csv":
        features, labels, names, label_name = _read_csv(path, label_column)
    elif suffix == ".parquet":
        features, labels, names, label_name = _read_parquet(path, label_column)
    elif suffix in (".npz", ".mat"):
        arrays = _read_npz(path) if suffix == ".npz" else _read_mat(path)
        features, labels = _x_and_y(path, arrays)
        names, label_name = [f"X column {j}" for j in range(features.shape[1])], "y"
    else:
        raise UserError(
            f"{path}: unknown file type {suffix or '(none)'!r}; data.source = 'file' reads "
            f"{', '.join(TABLE_FORMATS)}"
        )
    if features.shape[1] == 0:
        raise UserError(f"{path} has no feature columns, only labels; at least one is needed")
    for j, name in enumerate(names):
        _require_finite(path, name, features[:, j])
    return LabelledTable(features, _binary_labels(path, label_name, labels), names, str(path))


def _read_csv(path: Path, label_column: str) -> tuple[np.ndarray, np.ndarray, list[str], str]:
    """Python's csv module (no pandas dependency for one table): numbers only, one header row."""
    import csv

    with open(path, newline="", encoding="utf-8-sig") as fh:  # utf-8-sig: Excel's BOM
        rows = list(csv.reader(fh))
    if not rows:
        raise UserError(f"{path} is empty; a .csv data file needs a header row and data rows")
    header = [name.strip() for name in rows[0]]
    _require_label_column(path, header, label_column)
    body = rows[1:]
    if not body:
        raise UserError(f"{path} has a header but no data rows")
    values = np.empty((len(body), len(header)))
    for i, row in enumerate(body):
        line = i + 2  # 1-based, after the header
        if len(row) != len(header):
            raise UserError(f"{path}, line {line}: {len(row)} fields, but the header has {len(header)}")
        for j, cell in enumerate(row):
            try:
                values[i, j] = float(cell) if cell.strip() else np.nan  # an empty cell is missing
            except ValueError:
                raise UserError(
                    f"{path}, line {line}, column {header[j]!r}: {cell!r} is not a number; every "
                    "column must be numeric (encode categories as numbers first)"
                ) from None
    return _split_label_column(values, header, label_column)


def _read_parquet(path: Path, label_column: str) -> tuple[np.ndarray, np.ndarray, list[str], str]:
    """A .parquet table (pandas with pyarrow), its columns as a .csv's: numbers only."""
    import pandas as pd

    try:
        frame = pd.read_parquet(path)
    except Exception as err:  # pyarrow raises its own types for files that are not parquet
        raise UserError(f"{path} is not a readable .parquet file ({' '.join(str(err).split())})") from err
    header = [str(name) for name in frame.columns]
    _require_label_column(path, header, label_column)
    if frame.empty:
        raise UserError(f"{path} has columns but no data rows")
    return _split_label_column(frame_values(frame, path), header, label_column)


def _require_label_column(path: Path, header: list[str], label_column: str) -> None:
    if label_column not in header:
        raise UserError(
            f"{path} has no label column {label_column!r} (data.file.label_column); its "
            f"columns are: {', '.join(header)}. Set data.file.label_column to the column of "
            "0 (normal) / 1 (anomaly) labels"
        )


def _split_label_column(values: np.ndarray, header: list[str], label_column: str) -> tuple[
        np.ndarray, np.ndarray, list[str], str]:
    label_index = header.index(label_column)
    names = [name for j, name in enumerate(header) if j != label_index]
    return np.delete(values, label_index, axis=1), values[:, label_index], names, label_column


def frame_values(frame: Any, path: Path, first_row: int = 0, csv_lines: bool = False) -> np.ndarray:
    """A pandas DataFrame of numbers as float64 (missing values NaN); the first cell that is
    not a number raises UserError naming the file, its data row (counted from 1, plus
    ``first_row``; for a .csv also its line) and its column."""
    import pandas as pd

    for name in frame.columns:
        column = frame[name]
        if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
            continue
        numbers = pd.to_numeric(column, errors="coerce")
        bad = np.flatnonzero(numbers.isna().to_numpy() & column.notna().to_numpy())
        i = int(bad[0]) if len(bad) else 0
        line = f" (line {first_row + i + 2})" if csv_lines else ""
        raise UserError(
            f"{path}, row {first_row + i + 1}{line}, column {str(name)!r}: {column.iloc[i]!r} is not a "
            "number; every column must be numeric (encode categories as numbers first)"
        )
    return frame.to_numpy(dtype=np.float64, na_value=np.nan)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except (OSError, ValueError) as err:  # not a zip, or object arrays (which need pickle)
        raise UserError(f"{path} is not a readable .npz of numeric arrays ({err})") from err


def _read_mat(path: Path) -> dict[str, np.ndarray]:
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    try:
        return loadmat(path)
    except NotImplementedError as err:  # scipy reads MATLAB files up to v7.2
        raise UserError(
            f"{path} is a MATLAB v7.3 (HDF5) file, which scipy.io.loadmat cannot read; save it "
            "with `save(..., '-v7')` or convert it to .npz (arrays X and y)"
        ) from err
    except (MatReadError, ValueError, TypeError, OSError) as err:
        raise UserError(f"{path} is not a readable MATLAB .mat file ({err})") from err


def _x_and_y(path: Path, arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The arrays X (N, D) and y (N or N x 1) of a .npz or .mat file, as float64."""
    for name in ("X", "y"):
        if name not in arrays:
            found = ", ".join(k for k in arrays if not k.startswith("__")) or "none"
            raise UserError(
                f"{path} has no array {name!r} (found: {found}); a .npz or .mat data file needs "
                "X (features, one row per sample) and y (labels, 0 normal / 1 anomaly)"
            )
    x, y = np.asarray(arrays["X"]), np.asarray(arrays["y"])
    if x.ndim != 2:
        raise UserError(f"{path}: X has shape {x.shape}; it must be 2-D (samples x features)")
    if y.ndim == 2 and 1 in y.shape:
        y = y.ravel()  # ODDS stores y as a column vector
    if y.ndim != 1 or len(y) != len(x):
        raise UserError(f"{path}: y has shape {y.shape}; it must hold one label per row of X {x.shape}")
    for name, array in (("X", x), ("y", y)):
        if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
            raise UserError(f"{path}: {name} holds {array.dtype} values; it must be numeric")
    return x.astype(np.float64), y.astype(np.float64)


def _require_finite(path: Path, column: str, values: np.ndarray) -> None:
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        kind = "NaN or empty" if np.isnan(values[bad[0]]) else "infinite"
        raise UserError(
            f"{path}, column {column!r}: {len(bad)} value(s) are NaN, empty or infinite (first, "
            f"{kind}, in data row {bad[0] + 1}); fill or drop them before training"
        )


def _binary_labels(path: Path, column: str, labels: np.ndarray) -> np.ndarray:
    _require_finite(path, column, labels)
    bad = np.flatnonzero((labels != 0) & (labels != 1))
    if len(bad):
        found = ", ".join(f"{v:g}" for v in np.unique(labels[bad])[:5])
        raise UserError(
            f"{path}, label column {column!r}: labels must be 0 (normal) or 1 (anomaly), found "
            f"{found} (first in data row {bad[0] + 1})"
        )
    return labels.astype(np.int64)
