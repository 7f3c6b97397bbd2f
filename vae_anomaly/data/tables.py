"""The user's own tables (data.source: file, ``predict``): one reader per file format. .csv
and .parquet through pandas (read whole, or in chunks of rows so that memory stays bounded
however long the file is), any column type; .npz through NumPy and ODDS-style .mat through
SciPy, numbers only. Every error names the file, and where it can the row and the column.
How the columns become the model's input: columns.py."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError

TABLE_FORMATS = (".npz", ".csv", ".parquet", ".mat")


@dataclass
class LabelledTable:
    labels: np.ndarray  # int64, 0 normal, 1 anomaly
    path: str  # the file it was read from
    frame: Any = None  # .csv, .parquet: the columns as read (a pandas DataFrame), labels and ignored ones dropped
    features: np.ndarray | None = None  # .npz, .mat: float64 (N, D), NaN where missing
    feature_names: list[str] | None = None  # the array's columns, as error messages name them
    ignored: list[str] = field(default_factory=list)  # the columns dropped by name: labels, ids


def load_table(path: str | Path, label_column: str, drop_columns: list[str] = ()) -> LabelledTable:
    """A labelled table from ``path``: ``.csv`` (a header row) or ``.parquet``, whose column
    ``label_column`` holds the labels and every other column, but ``drop_columns`` (ids,
    timestamps), is a feature of any type (numbers, text, booleans; empty cells are missing
    values); or ``.npz`` (arrays X and y) or an ODDS-style MATLAB ``.mat`` (X and y, read by
    scipy.io.loadmat), numbers only, NaN where missing. Labels are 0 (normal) or 1 (anomaly).
    An infinite value, a missing array or column and labels other than 0/1 raise UserError
    naming the file and the column."""
    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"data.file.path = {str(path)!r}: no such file; give the path of a .npz, .csv, "
            ".parquet or .mat file, relative to the project root"
        )
    suffix = path.suffix.lower()
    if suffix in (".csv", ".parquet"):
        return _read_frame_table(path, label_column, list(drop_columns))
    if suffix not in (".npz", ".mat"):
        raise UserError(
            f"{path}: unknown file type {suffix or '(none)'!r}; data.source = 'file' reads "
            f"{', '.join(TABLE_FORMATS)}"
        )
    arrays = _read_npz(path) if suffix == ".npz" else _read_mat(path)
    features, labels = _x_and_y(path, arrays)
    if features.shape[1] == 0:
        raise UserError(f"{path} has no feature columns, only labels; at least one is needed")
    names = [f"X column {j}" for j in range(features.shape[1])]
    for j, name in enumerate(names):
        _refuse_infinite(path, name, features[:, j])
    return LabelledTable(_binary_labels(path, "y", labels), str(path), features=features, feature_names=names)


# Rows a table is read in when it is read whole (load_table): one chunk for any table that fits.
WHOLE = 1 << 62


@dataclass
class TableReader:
    """A .csv or .parquet table opened for reading in chunks of rows."""

    path: Path
    columns: list[str]  # the header, as the file names the columns
    n_rows: int | None  # None where unknown before reading (.csv)
    chunks: Iterator[tuple[int, Any]]  # (first row, pandas DataFrame), rows counted from 0
    position: Callable[[], int]  # units read so far, for a progress bar (bytes or rows)


def open_table(path: Path, chunk_rows: int) -> TableReader:
    """The .csv or .parquet ``path`` as chunks of at most ``chunk_rows`` rows (pandas; a .csv's
    numbers parsed exactly, as Python parses them)."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _csv_table(path, chunk_rows)
    if suffix == ".parquet":
        return _parquet_table(path, chunk_rows)
    raise ValueError(f"open_table reads .csv and .parquet, not {suffix!r}")


def read_frame(path: Path) -> Any:
    """The whole .csv or .parquet ``path`` as one pandas DataFrame (:func:`open_table`)."""
    import pandas as pd

    table = open_table(path, WHOLE)
    frames = [frame for _, frame in table.chunks]
    if not frames:
        return pd.DataFrame(columns=table.columns)
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def _csv_table(path: Path, chunk_rows: int) -> TableReader:
    import pandas as pd

    fh = open(path, "rb")
    try:
        reader = pd.read_csv(fh, chunksize=chunk_rows, encoding="utf-8-sig")
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as err:
        fh.close()
        raise UserError(f"{path} is not a readable .csv with a header row ({' '.join(str(err).split())})") from err
    first = _next_frame(reader, path)  # pandas knows the header once it has read a chunk
    columns = [] if first is None else [str(c).strip() for c in first.columns]
    if columns and all(_is_number(c) for c in columns):
        fh.close()
        raise UserError(f"{path}: the first line holds numbers ({', '.join(columns[:3])}, ...); a .csv needs a header "
                        "row naming the columns")

    def chunks() -> Iterator[tuple[int, Any]]:
        start = 0
        with fh:
            frame = first
            while frame is not None:
                frame.columns = columns
                yield start, frame
                start += len(frame)
                frame = _next_frame(reader, path)

    return TableReader(path, columns, None, chunks(), fh.tell)


def _next_frame(reader: Any, path: Path) -> Any:
    import pandas as pd

    try:
        return next(reader)
    except StopIteration:
        return None
    except (pd.errors.ParserError, ValueError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: {' '.join(str(err).split())}") from err


def _parquet_table(path: Path, chunk_rows: int) -> TableReader:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as err:
        raise UserError(f"{path} is not a readable .parquet file ({' '.join(str(err).split())})") from err
    columns = [str(name) for name in table.schema_arrow.names]
    read = [0]

    def chunks() -> Iterator[tuple[int, Any]]:
        start = 0
        for batch in table.iter_batches(batch_size=min(chunk_rows, max(1, table.metadata.num_rows))):
            yield start, batch.to_pandas()
            start += batch.num_rows
            read[0] = start

    return TableReader(path, columns, table.metadata.num_rows, chunks(), lambda: read[0])


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_frame_table(path: Path, label_column: str, drop_columns: list[str]) -> LabelledTable:
    """A .csv or .parquet table: the label column by name, ``drop_columns`` left out, every
    other column a feature as read."""
    import pandas as pd

    frame = read_frame(path)
    header = [str(name) for name in frame.columns]
    frame.columns = header
    _require_label_column(path, header, label_column)
    absent = [c for c in drop_columns if c not in header]
    if absent:
        raise UserError(f"data.file.drop_columns names {absent[0]!r}, which is not a column of {path} "
                        f"(its columns: {', '.join(header)})")
    if frame.empty:
        raise UserError(f"{path} has a header but no data rows")
    labels = pd.to_numeric(frame[label_column], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    features = frame.drop(columns=[label_column, *drop_columns])
    if features.shape[1] == 0:
        raise UserError(f"{path} has no feature columns, only labels; at least one is needed")
    for name in features.columns:
        if pd.api.types.is_numeric_dtype(features[name]) and not pd.api.types.is_bool_dtype(features[name]):
            _refuse_infinite(path, name, features[name].to_numpy(dtype=np.float64, na_value=np.nan))
    return LabelledTable(_binary_labels(path, label_column, labels), str(path), frame=features.reset_index(drop=True),
                         ignored=[label_column, *drop_columns])


def _require_label_column(path: Path, header: list[str], label_column: str) -> None:
    if label_column not in header:
        raise UserError(
            f"{path} has no label column {label_column!r} (data.file.label_column); its "
            f"columns are: {', '.join(header)}. Set data.file.label_column to the column of "
            "0 (normal) / 1 (anomaly) labels"
        )


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


def _refuse_infinite(path: Path, column: str, values: np.ndarray) -> None:
    """A missing value (NaN, an empty cell) is modelled; an infinite one cannot be."""
    bad = np.flatnonzero(np.isinf(values))
    if len(bad):
        raise UserError(
            f"{path}, column {column!r}: {len(bad)} value(s) are infinite (first in data row {bad[0] + 1}); "
            "replace them by a number, or leave the cells empty (a missing value)"
        )


def _binary_labels(path: Path, column: str, labels: np.ndarray) -> np.ndarray:
    missing = np.flatnonzero(~np.isfinite(labels))
    if len(missing):
        raise UserError(f"{path}, label column {column!r}: {len(missing)} label(s) are missing, text or infinite "
                        f"(first in data row {missing[0] + 1}); every row needs 0 (normal) or 1 (anomaly)")
    bad = np.flatnonzero((labels != 0) & (labels != 1))
    if len(bad):
        found = ", ".join(f"{v:g}" for v in np.unique(labels[bad])[:5])
        raise UserError(
            f"{path}, label column {column!r}: labels must be 0 (normal) or 1 (anomaly), found "
            f"{found} (first in data row {bad[0] + 1})"
        )
    return labels.astype(np.int64)
