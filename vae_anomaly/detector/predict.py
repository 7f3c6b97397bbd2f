"""Scoring a file of new data with a saved detector (``python -m vae_anomaly predict``).

The input is read in chunks of rows (.csv and .parquet by the table reader the file source
uses, data/tables.py; the array of a .npz straight from its zip member), so memory stays
bounded however long the file is. Every chunk is checked (feature count, image shape, numbers, NaN) and an error
names the file, the row and the column; the output is written to a temporary file renamed
into place only when every row is scored, so a failed run leaves no partial output.
"""
from __future__ import annotations

import logging
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..cli import show_progress
from ..data.tables import frame_values, open_table
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
    columns: list[str]  # feature names for tables; [array name] for a .npz
    n_rows: int | None  # None where unknown before reading (.csv)
    chunks: Iterator[tuple[int, np.ndarray]]  # (first row, rows), rows counted from 0
    position: Callable[[], int]  # units read so far, for the progress bar (bytes or rows)

    def where(self, row: int, column: int | tuple[int, ...] | None) -> str:
        """A place in the file, as a person finds it: data rows from 1; for .csv also the line."""
        if self.path.suffix == ".npz":
            index = "" if column is None else f", {', '.join(map(str, np.atleast_1d(column)))}"
            return f"{self.path}, {self.columns[0]}[{row}{index}]"
        line = f" (line {row + 2})" if self.path.suffix == ".csv" else ""
        name = "" if column is None else f", column {self.columns[column]!r}"
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
    if suffix == ".npz":
        return _npz_source(path, chunk_rows)
    source = _table_source(path, chunk_rows)
    n_features = detector.input_shape_[0]
    if len(source.columns) != n_features:
        shown = ", ".join(source.columns[:8]) + (", ..." if len(source.columns) > 8 else "")
        raise UserError(f"{path} has {len(source.columns)} columns ({shown}); the detector takes {n_features} "
                        "features, one column each, in the order it was trained on (drop any label or id column)")
    return source


def _table_source(path: Path, chunk_rows: int) -> Source:
    """A .csv or .parquet table through the file source's reader, its chunks as numbers."""
    table = open_table(path, chunk_rows)
    csv_lines = path.suffix.lower() == ".csv"
    chunks = ((start, frame_values(frame, path, start, csv_lines)) for start, frame in table.chunks)
    return Source(path, table.columns, table.n_rows, chunks, table.position)


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
                 chunk_rows: int = CHUNK_ROWS, device: str | None = None) -> dict[str, int]:
    """Score every row of ``input_path`` with the detector saved in ``detector_dir`` and write
    one row per input row to ``output_path``: every score, and ``anomaly`` (1 where the
    primary score lies above the threshold). Returns the counts of rows and flags."""
    input_path, output_path = Path(input_path), Path(output_path)
    if output_path.suffix.lower() not in OUTPUT_FORMATS:
        raise UserError(f"--output {output_path}: unknown file type {output_path.suffix or '(none)'!r}; predict "
                        f"writes {', '.join(OUTPUT_FORMATS)}")
    if output_path.resolve() == input_path.resolve():
        raise UserError(f"--output {output_path} is the input file; give another path")
    if chunk_rows < 1:
        raise UserError(f"--chunk-rows {chunk_rows}: expected a positive number of rows")
    detector = Detector.load(detector_dir, device)
    batch = detector.params_["score"]["batch_size"]
    source = open_source(input_path, detector, -(-chunk_rows // batch) * batch)
    columns = [*detector.score_names, FLAG_COLUMN]
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

        def chunks() -> Iterator[np.ndarray]:
            for start, rows in source.chunks:
                current["start"] = start
                yield rows
                bar.update(source.position() - bar.n)

        try:
            for scores in detector.score_stream(chunks()):
                flags = flag(scores[detector.primary], detector.threshold_).astype(np.int64)
                writer.write({**scores, FLAG_COLUMN: flags})
                counted["rows"] += len(flags)
                counted["flagged"] += int(flags.sum())
        except InputError as err:  # the detector's place in the chunk, as the file's place
            where = source.path if err.row is None else source.where(current["start"] + err.row, err.column)
            raise UserError(f"{where}: {err.problem}") from None
        finally:
            writer.close()
    log.info("wrote %s: %d rows, %d flagged as anomalies", output_path, counted["rows"], counted["flagged"])
    return counted
