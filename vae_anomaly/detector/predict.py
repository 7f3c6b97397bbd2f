"""Scoring a file of new data with a saved detector (``python -m vae_anomaly predict``).

The input is read in chunks of rows (.csv and .parquet by the table reader the file source
uses, data/tables.py; the array of a .npz straight from its zip member), so memory stays
bounded however long the file is. Every chunk is checked (feature count, image shape, numbers, NaN) and an error
names the file, the row and the column; the output is written to a temporary file renamed
into place only when every row is scored, so a failed run leaves no partial output.
"""
from __future__ import annotations

import itertools
import logging
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ..cli import show_progress
from ..data.tables import open_table
from ..errors import InputError, UserError
from ..io import atomic_path
from ..scoring.thresholds import flag
from .detector import Detector

log = logging.getLogger(__name__)

INPUT_FORMATS = (".csv", ".parquet", ".npz")
OUTPUT_FORMATS = (".csv", ".parquet", ".npz")
# Rows read at once: about 16 MB of float64 for 30 features; rounded up to whole score batches.
CHUNK_ROWS = 65536
FLAG_COLUMN = "anomaly"  # 1 where the primary score lies above the threshold


@dataclass
class Source:
    """An input file opened for reading in chunks."""

    path: Path
    columns: list[str]  # the header for tables; [array name] for a .npz
    n_rows: int | None  # None where unknown before reading (.csv)
    chunks: Iterator[tuple[int, Any]]  # (first row, rows: a DataFrame of a table, an array of a .npz), from 0
    position: Callable[[], int]  # units read so far, for the progress bar (bytes or rows)

    def where(self, row: int, column: int | str | tuple[int, ...] | None) -> str:
        """A place in the file, as a person finds it: data rows from 1; for .csv also the line;
        a table's column by name (a position is the header's)."""
        if self.path.suffix == ".npz":
            index = "" if column is None else f", {', '.join(map(str, np.atleast_1d(column)))}"
            return f"{self.path}, {self.columns[0]}[{row}{index}]"
        line = f" (line {row + 2})" if self.path.suffix == ".csv" else ""
        name = "" if column is None else f", column {column if isinstance(column, str) else self.columns[column]!r}"
        return f"{self.path}, row {row + 1}{line}{name}"


def open_source(path: Path, detector: Detector, chunk_rows: int) -> Source:
    suffix = path.suffix.lower()
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    images = len(detector.input_shape_) == 3
    if suffix not in INPUT_FORMATS:
        raise UserError(f"{path}: unknown file type {suffix or '(none)'!r}; predict reads {', '.join(INPUT_FORMATS)}")
    if images and suffix != ".npz":
        raise UserError(f"{path}: this detector scores images of shape {detector.input_shape_}; give them as a "
                        ".npz holding one array X of shape (N, C, H, W)")
    source = _npz_source(path, chunk_rows) if suffix == ".npz" else _table_source(path, chunk_rows)
    if suffix != ".npz":
        try:  # a missing or unexpected column stops here, before any row is scored
            detector.encoding_.check_header(source.columns)
        except InputError as err:
            raise UserError(f"{path}: {err.problem}") from None
    return source


def _table_source(path: Path, chunk_rows: int) -> Source:
    """A .csv or .parquet table through the file source's reader (data/tables.py), its chunks
    as DataFrames, which the detector reads by column (data/columns.py)."""
    table = open_table(path, chunk_rows)
    first = next(table.chunks, None)
    if first is None or not len(first[1]):
        raise UserError(f"{path} has a header but no data rows; nothing to score")
    return Source(path, table.columns, table.n_rows, itertools.chain([first], table.chunks), table.position)


def _npz_source(path: Path, chunk_rows: int) -> Source:
    """The array X of a .npz (or its only array), read row chunks at a time from the zip
    member without loading it whole (np.load would)."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        raise UserError(f"{path} is not a readable .npz ({err})") from err
    names = [n.removesuffix(".npy") for n in archive.namelist() if n.endswith(".npy")]
    if "X" in names:
        name = "X"
    elif len(names) == 1:
        name = names[0]
    else:
        archive.close()
        raise UserError(f"{path} holds the arrays {', '.join(names) or '(none)'}; predict reads the array 'X' "
                        "(or a file holding one array only)")
    member = archive.open(f"{name}.npy")
    try:
        major, _ = np.lib.format.read_magic(member)
        header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        shape, fortran_order, dtype = header(member)
    except ValueError as err:
        archive.close()
        raise UserError(f"{path}: the array {name!r} is not a readable .npy array ({err})") from err
    if dtype.hasobject or not (np.issubdtype(dtype, np.number) or dtype == bool):
        archive.close()
        raise UserError(f"{path}: the array {name!r} holds {dtype} values; predict scores numbers only")
    if len(shape) < 2:
        archive.close()
        raise UserError(f"{path}: the array {name!r} has shape {shape}; give one row (or image) per entry of its "
                        "first axis: (N, D) or (N, C, H, W)")
    row_shape = shape[1:]
    row_bytes = dtype.itemsize * int(np.prod(row_shape))
    read = [0]

    def chunks() -> Iterator[tuple[int, np.ndarray]]:
        with archive, member:
            if fortran_order:  # column-major: rows are not contiguous; read it whole
                yield 0, np.load(path, allow_pickle=False)[name]
                read[0] = shape[0]
                return
            for start in range(0, shape[0], chunk_rows):
                n = min(chunk_rows, shape[0] - start)
                data = member.read(n * row_bytes)
                if len(data) != n * row_bytes:
                    raise UserError(f"{path}: the array {name!r} ends after {start} rows; the file is truncated")
                read[0] = start + n
                yield start, np.frombuffer(data, dtype=dtype).reshape(n, *row_shape)

    return Source(path, [name], shape[0], chunks(), lambda: read[0])


class OutputWriter:
    """Writes score rows to ``tmp`` in the format of ``path``'s suffix, chunk after chunk."""

    def __init__(self, path: Path, tmp: Path, columns: list[str]):
        self.path, self.tmp, self.columns = path, tmp, columns
        self.kind = path.suffix.lower()
        self.parts: list[dict[str, np.ndarray]] = []  # .npz: the columns, written at the end
        self.parquet = None
        if self.kind == ".csv":
            self.fh = open(tmp, "w", newline="")

    def write(self, columns: dict[str, np.ndarray]) -> None:
        import pandas as pd

        if self.kind == ".npz":
            self.parts.append(columns)
            return
        frame = pd.DataFrame(columns, columns=self.columns)
        if self.kind == ".csv":
            frame.to_csv(self.fh, header=self.fh.tell() == 0, index=False)  # floats round-trip exactly
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(frame, preserve_index=False)
        if self.parquet is None:
            self.parquet = pq.ParquetWriter(self.tmp, table.schema)
        self.parquet.write_table(table)

    def close(self) -> None:
        if self.kind == ".csv":
            if self.fh.tell() == 0:
                self.fh.write(",".join(self.columns) + "\n")
            self.fh.close()
        elif self.kind == ".parquet":
            if self.parquet is None:  # no rows: an empty table with the columns
                self.write({name: np.empty(0, np.int64 if name == FLAG_COLUMN else np.float64) for name in self.columns})
            self.parquet.close()
        else:
            with open(self.tmp, "wb") as fh:
                np.savez(fh, **{name: np.concatenate([p[name] for p in self.parts]) if self.parts
                                else np.empty(0) for name in self.columns})


def predict_file(detector_dir: str | Path, input_path: str | Path, output_path: str | Path,
                 chunk_rows: int = CHUNK_ROWS, device: str | None = None, explain: int = 0) -> dict[str, int]:
    """Score every row of ``input_path`` with the detector saved in ``detector_dir`` and write
    one row per input row to ``output_path``: every score, ``anomaly`` (1 where the primary
    score lies above the threshold) and, with ``explain`` K > 0 (tables), the K columns that
    contribute most to the row's score and their contributions (Detector.explain). Returns the
    counts of rows and flags."""
    input_path, output_path = Path(input_path), Path(output_path)
    if output_path.suffix.lower() not in OUTPUT_FORMATS:
        raise UserError(f"--output {output_path}: unknown file type {output_path.suffix or '(none)'!r}; predict "
                        f"writes {', '.join(OUTPUT_FORMATS)}")
    if output_path.resolve() == input_path.resolve():
        raise UserError(f"--output {output_path} is the input file; give another path")
    if chunk_rows < 1:
        raise UserError(f"--chunk-rows {chunk_rows}: expected a positive number of rows")
    if explain < 0:
        raise UserError(f"--explain {explain}: expected a number of columns >= 0")
    detector = Detector.load(detector_dir, device)
    if explain and detector.encoding_ is None:
        raise UserError(f"--explain {explain}: this detector scores images; --explain names the columns of a table")
    if detector.encoding_ is not None and explain > len(detector.encoding_.columns):
        raise UserError(f"--explain {explain}: the detector's table has {len(detector.encoding_.columns)} columns")
    batch = detector.params_["score"]["batch_size"]
    source = open_source(input_path, detector, -(-chunk_rows // batch) * batch)
    top = [f"top{k}_{part}" for k in range(1, explain + 1) for part in ("column", "contribution")]
    columns = [*detector.score_names, FLAG_COLUMN, *top]
    log.info("scoring %s (%s) with %s: %s; %s flags %s > %.6g", input_path,
             f"{source.n_rows} rows" if source.n_rows is not None else f"{input_path.stat().st_size} bytes",
             detector_dir, ", ".join(detector.score_names), FLAG_COLUMN, detector.primary, detector.threshold_)
    counted = {"rows": 0, "flagged": 0}
    by_bytes = source.n_rows is None
    with atomic_path(output_path) as tmp, tqdm(
        total=input_path.stat().st_size if by_bytes else source.n_rows, unit="B" if by_bytes else "row",
        unit_scale=True, desc="predict", disable=not show_progress(),
    ) as bar:
        writer = OutputWriter(output_path, tmp, columns)
        current = {"start": 0}  # first row of the chunk the detector checks now
        reasons: list[dict[str, np.ndarray]] = []  # each chunk's top columns, until its rows are scored

        def chunks() -> Iterator[Any]:
            for start, rows in source.chunks:
                current["start"] = start
                if explain:
                    reasons.append(top_columns(detector.explain(rows), explain))
                yield rows
                bar.update(source.position() - bar.n)

        try:
            for scores in detector.score_stream(chunks()):
                flags = flag(scores[detector.primary], detector.threshold_).astype(np.int64)
                writer.write({**scores, FLAG_COLUMN: flags, **_take(reasons, len(flags))})
                counted["rows"] += len(flags)
                counted["flagged"] += int(flags.sum())
        except InputError as err:  # the detector's place in the chunk, as the file's place
            where = source.path if err.row is None else source.where(current["start"] + err.row, err.column)
            raise UserError(f"{where}: {err.problem}") from None
        finally:
            writer.close()
    log.info("wrote %s: %d rows, %d flagged as anomalies", output_path, counted["rows"], counted["flagged"])
    return counted


def top_columns(contributions: Any, k: int) -> dict[str, np.ndarray]:
    """The ``k`` columns of each row of Detector.explain's DataFrame that contribute most, and
    their contributions, as the output columns top1_column, top1_contribution, ..."""
    values = contributions.to_numpy()
    order = np.argsort(-values, axis=1, kind="stable")[:, :k]
    names = np.array(contributions.columns, dtype=object)
    out = {}
    for j in range(k):
        out[f"top{j + 1}_column"] = names[order[:, j]].astype(str)
        out[f"top{j + 1}_contribution"] = values[np.arange(len(values)), order[:, j]]
    return out


def _take(parts: list[dict[str, np.ndarray]], n: int) -> dict[str, np.ndarray]:
    """The first ``n`` rows of the queued ``parts`` (each a dict of equal-length columns), removed
    from the queue: the explanations of the rows a scored batch holds."""
    if not parts:
        return {}
    taken = []
    while n > 0:
        head = parts[0]
        size = len(next(iter(head.values())))
        if size <= n:
            taken.append(parts.pop(0))
            n -= size
        else:
            taken.append({name: values[:n] for name, values in head.items()})
            parts[0] = {name: values[n:] for name, values in head.items()}
            n = 0
    return {name: np.concatenate([t[name] for t in taken]) for name in taken[0]}
