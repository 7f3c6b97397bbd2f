"""Scoring a file of new data with a saved detector (``python -m vae_anomaly predict``).

The input is read in chunks of rows (.csv and .parquet by the table reader the file source
uses, data/tables.py; the array of a .npz straight from its zip member; image files by the
folder source's reader, data/folders.py, resized to the detector's images), so memory stays
bounded however long the file is. Every chunk is checked (feature count, image shape, numbers, NaN) and an error
names the file, the row and the column; the output is written to a temporary file renamed
into place only when every row is scored, so a failed run leaves no partial output.
"""
from __future__ import annotations

import itertools
import logging
import shutil
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ..cli import show_progress
from ..data.folders import IMAGE_SUFFIXES
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
FILE_COLUMN = "file"  # image files: the file each row scores


@dataclass
class Source:
    """An input file opened for reading in chunks."""

    path: Path
    columns: list[str]  # the header for tables; [array name] for a .npz
    n_rows: int | None  # None where unknown before reading (.csv)
    chunks: Iterator[tuple[int, Any]]  # (first row, rows: a DataFrame of a table, an array of a .npz), from 0
    position: Callable[[], int]  # units read so far, for the progress bar (bytes or rows)
    files: list[Path] | None = None  # image files: the file of each row
    base: Path | None = None  # image files: the folder their names in --maps are relative to

    def where(self, row: int, column: int | str | tuple[int, ...] | None) -> str:
        """A place in the file, as a person finds it: data rows from 1; for .csv also the line;
        a table's column by name (a position is the header's); an image by its file."""
        if self.files is not None:
            return str(self.files[row])
        if self.path.suffix == ".npz":
            index = "" if column is None else f", {', '.join(map(str, np.atleast_1d(column)))}"
            return f"{self.path}, {self.columns[0]}[{row}{index}]"
        line = f" (line {row + 2})" if self.path.suffix == ".csv" else ""
        name = "" if column is None else f", column {column if isinstance(column, str) else self.columns[column]!r}"
        return f"{self.path}, row {row + 1}{line}{name}"


def open_source(path: Path, detector: Detector, chunk_rows: int) -> Source:
    suffix = path.suffix.lower()
    images = len(detector.input_shape_) == 3
    if images and (path.is_dir() or is_glob(str(path)) or suffix in IMAGE_SUFFIXES):
        return _image_source(path, detector.input_shape_, chunk_rows)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    if suffix not in INPUT_FORMATS:
        raise UserError(f"{path}: unknown file type {suffix or '(none)'!r}; predict reads {', '.join(INPUT_FORMATS)}")
    if images and suffix != ".npz":
        raise UserError(f"{path}: this detector scores images of shape {detector.input_shape_}; give a folder of "
                        f"image files ({', '.join(IMAGE_SUFFIXES)}), a glob of them, or a .npz holding one array X "
                        "of shape (N, C, H, W)")
    source = _npz_source(path, chunk_rows) if suffix == ".npz" else _table_source(path, chunk_rows)
    if suffix != ".npz":
        try:  # a missing or unexpected column stops here, before any row is scored
            detector.encoding_.check_header(source.columns)
        except InputError as err:
            raise UserError(f"{path}: {err.problem}") from None
    return source


def _image_source(path: Path, shape: tuple[int, ...], chunk_rows: int) -> Source:
    """Image files (a folder's, a glob's, or one), resized to the detector's (C, H, W) as the
    folder source reads them (data/folders.py), a chunk at a time; an unreadable one stops the
    run with its name, and leaves no output."""
    from ..data.folders import image_files, read_images

    files = image_files(path)
    read = [0]

    def chunks() -> Iterator[tuple[int, np.ndarray]]:
        for start in range(0, len(files), chunk_rows):
            images = read_images(files[start:start + chunk_rows], tuple(shape[1:]), shape[0])
            read[0] = start + len(images)
            yield start, images

    base = path if path.is_dir() else Path(glob_root(str(path))) if is_glob(str(path)) else path.parent
    return Source(path, [FILE_COLUMN], len(files), chunks(), lambda: read[0], files=files, base=base)


def is_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


def glob_root(pattern: str) -> str:
    """The folders of a glob before its first wildcard ("D/test/*/*.png" -> "D/test")."""
    parts = Path(pattern).parts
    fixed = next(i for i, part in enumerate(parts) if is_glob(part))
    return str(Path(*parts[:fixed])) if fixed else "."


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
                 chunk_rows: int = CHUNK_ROWS, device: str | None = None, explain: int = 0,
                 maps_dir: str | Path | None = None) -> dict[str, int]:
    """Score every row of ``input_path`` with the detector saved in ``detector_dir`` and write
    one row per input row to ``output_path``: for image files the file, every score, ``anomaly``
    (1 where the primary score lies above the threshold) and, with ``explain`` K > 0 (tables),
    the K columns that contribute most to the row's score and their contributions
    (Detector.explain). With ``maps_dir`` (images), each image's anomaly map (Detector.explain)
    goes into that folder as a PNG heat map and a .npy array. Returns the counts of rows and
    flags."""
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
        raise UserError(f"--explain {explain}: this detector scores images; --explain names the columns of a table "
                        "(for images, --maps DIR writes where each image is anomalous)")
    if maps_dir is not None and detector.encoding_ is not None:
        raise UserError(f"--maps {maps_dir}: this detector scores table rows; --maps writes the anomaly maps of "
                        "images (for tables, --explain K names the columns)")
    if detector.encoding_ is not None and explain > len(detector.encoding_.columns):
        raise UserError(f"--explain {explain}: the detector's table has {len(detector.encoding_.columns)} columns")
    batch = detector.params_["score"]["batch_size"]
    source = open_source(input_path, detector, -(-chunk_rows // batch) * batch)
    top = [f"top{k}_{part}" for k in range(1, explain + 1) for part in ("column", "contribution")]
    files = [FILE_COLUMN] if source.files is not None else []
    columns = [*files, *detector.score_names, FLAG_COLUMN, *top]
    maps = None if maps_dir is None else MapWriter(Path(maps_dir), source, detector.map_scale_)
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
        reasons: list[dict[str, np.ndarray]] = []  # each chunk's files, top columns, until its rows are scored

        def chunks() -> Iterator[Any]:
            for start, rows in source.chunks:
                current["start"] = start
                extra = {}  # the output columns of these rows beside their scores
                if source.files is not None:
                    extra[FILE_COLUMN] = np.array([str(f) for f in source.files[start:start + len(rows)]])
                if explain:
                    extra.update(top_columns(detector.explain(rows), explain))
                if extra:
                    reasons.append(extra)
                if maps is not None:
                    maps.write(start, detector.explain(rows))
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
            if maps is not None:
                maps.discard()
            raise UserError(f"{where}: {err.problem}") from None
        except BaseException:
            if maps is not None:
                maps.discard()
            raise
        finally:
            writer.close()
    log.info("wrote %s: %d rows, %d flagged as anomalies", output_path, counted["rows"], counted["flagged"])
    if maps is not None:
        maps.finish()
    return counted


class MapWriter:
    """Each image's anomaly map as ``<name>.png`` (a heat map, 0 to the detector's map scale:
    the 99.9th percentile of its training images' map values) and ``<name>.npy`` (the float32
    map), ``<name>`` the image file's path below the input folder (or the glob's fixed part),
    without its suffix. Written into a temporary folder beside ``folder``, which replaces it
    only once every row is scored: a failed run leaves no partial maps."""

    def __init__(self, folder: Path, source: Source, scale: float | None):
        if source.files is None:
            raise UserError(f"--maps {folder}: give the images as files (a folder, a glob or one file) so that each "
                            "map is named after its image")
        if folder.exists() and not folder.is_dir():
            raise UserError(f"--maps {folder} is a file; give a folder")
        self.folder, self.source, self.scale = folder, source, scale
        self.tmp = folder.with_name(f".{folder.name}.tmp")
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        self.tmp.mkdir(parents=True)
        self.names = [self.name(f) for f in source.files]
        repeated = next((n for n, count in Counter(self.names).items() if count > 1), None)
        if repeated is not None:
            shutil.rmtree(self.tmp)
            raise UserError(f"--maps {folder}: two input files would both write the map {repeated!r}; give the images "
                            "of one folder, or a glob whose files differ below its fixed part")

    def name(self, file: Path) -> str:
        try:
            relative = file.relative_to(self.source.base)
        except ValueError:
            relative = Path(file.name)
        return relative.with_suffix("").as_posix()

    def write(self, start: int, maps: np.ndarray) -> None:
        from PIL import Image

        from ..evaluation.plots import heat_maps

        scale = self.scale if self.scale is not None else float(np.quantile(maps, 0.999))
        rgb = np.round(heat_maps(maps, scale) * 255).astype(np.uint8).transpose(0, 2, 3, 1)
        for i, (values, picture) in enumerate(zip(maps, rgb)):
            stem = self.tmp / self.names[start + i]
            stem.parent.mkdir(parents=True, exist_ok=True)
            np.save(stem.with_suffix(".npy"), values.astype(np.float32))
            Image.fromarray(picture, mode="RGB").save(stem.with_suffix(".png"))

    def finish(self) -> None:
        if self.folder.exists():
            shutil.rmtree(self.folder)
        self.tmp.rename(self.folder)
        log.info("wrote %d anomaly maps (.png and .npy) into %s", len(self.names), self.folder)

    def discard(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


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
