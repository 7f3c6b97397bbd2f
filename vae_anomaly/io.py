"""Reading and writing the pipeline's own artifacts (.npz arrays, JSON, small CSV tables).

Every write goes to a temporary file in the target's folder, is flushed to disk (``fsync``)
and is then renamed over the target (``os.replace`` is atomic on POSIX), so a process killed
mid-write, or a machine that loses power, leaves the previous artifact or none, never a
truncated one.
"""
from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import os
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UserError

log = logging.getLogger(__name__)

_UMASK = os.umask(0)
os.umask(_UMASK)  # reading the umask means setting it: put it straight back


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes it owner-only; give it a normal file's mode
        _fsync(tmp)  # the data on disk before the name points at it, or a crash leaves it empty
        os.replace(tmp, path)
        _fsync(path.parent)  # and the rename itself
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _fsync(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    log.info("wrote %s", path)


def write_json(path: str | Path, obj: Any) -> None:
    """``obj`` as JSON, keys in the order given (`dvc exp show` lists metrics in file order,
    so the headline goes first); NaN and infinity, which are not JSON, are refused."""
    bad = _non_finite(obj)
    if bad:
        key, value = bad
        raise UserError(
            f"{path}: {key} = {value} is not a finite number, and JSON holds none; check the "
            "files this stage read (its log above names each one)"
        )
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, allow_nan=False) + "\n")
    log.info("wrote %s", path)


def _non_finite(obj: Any, key: str = "") -> tuple[str, float] | None:
    """The dotted key and value of the first NaN or infinity in ``obj``, else None."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return key or "the value", obj
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for name, value in items:
        found = _non_finite(value, f"{key}.{name}" if key else str(name))
        if found:
            return found
    return None


def read_json(path: str | Path) -> Any:
    path = Path(path)
    _require(path)
    log.info("read %s", path)
    return json.loads(path.read_text())


def write_arrays(path: str | Path, **arrays: np.ndarray) -> None:
    # np.savez appends ".npz" to names without it, so hand it an open file instead.
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    log.info("wrote %s (%s)", path, ", ".join(f"{k}{tuple(v.shape)}" for k, v in arrays.items()))


def read_arrays(path: str | Path, *names: str) -> dict[str, np.ndarray]:
    """The arrays of the .npz ``path``, or only those ``names`` (an .npz member is read when
    asked for, so a stage that needs two splits holds only those in memory)."""
    path = Path(path)
    _require(path)
    with np.load(path, allow_pickle=False) as npz:
        _require_members(path, names, npz.files)
        arrays = {k: npz[k] for k in names or npz.files}
    log.info("read %s (%s)", path, ", ".join(f"{k}{tuple(v.shape)}" for k, v in arrays.items()))
    return arrays


def read_shape(path: str | Path, name: str) -> tuple[int, ...]:
    """The shape of the array ``name`` of the .npz ``path``, from the member's .npy header
    alone (``np.load`` of an .npz reads a member whole, and ``mmap_mode`` ignores .npz): a
    stage that needs a split's shape, not its rows, reads a few hundred bytes."""
    path = Path(path)
    _require(path)
    with zipfile.ZipFile(path) as archive:
        _require_members(path, [name], [member.removesuffix(".npy") for member in archive.namelist()])
        with archive.open(f"{name}.npy") as member:
            version = np.lib.format.read_magic(member)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            shape, _, _ = read_header(member)
    log.info("read the shape of %s in %s: %s", name, path, shape)
    return shape


def _require_members(path: Path, names: Iterable[str], members: list[str]) -> None:
    missing = [k for k in names if k not in members]
    if missing:
        raise UserError(f"{path} holds no {', '.join(missing)} (it has {', '.join(members)}); "
                        "re-run the stage that writes it")


def read_bytes(path: str | Path) -> bytes:
    path = Path(path)
    _require(path)
    data = path.read_bytes()
    log.info("read %s", path)
    return data


def write_csv(path: str | Path, columns: dict[str, np.ndarray | list]) -> None:
    """A table by column, one header row; floats to 6 significant digits (the ROC and PR
    curves that `dvc plots` draws)."""
    names = list(columns)
    rows = zip(*(columns[n] for n in names))
    write_rows(path, names, ([_fmt(v) for v in row] for row in rows))


def write_rows(path: str | Path, header: list[str], rows: Iterable[Iterable[str]]) -> None:
    """A .csv of text cells under ``header``, written atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    log.info("wrote %s", path)


def read_rows(path: str | Path, delimiter: str = ",") -> tuple[list[str], list[dict[str, str]]]:
    """The header and the rows (text cells by column) of a .csv or, with ``delimiter="\t"``,
    a .tsv that this project or DVCLive wrote: the csv module (pandas reads users' tables,
    data/tables.py)."""
    path = Path(path)
    _require(path)
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh, delimiter=delimiter)
        rows = list(reader)
    log.info("read %s (%d rows)", path, len(rows))
    return list(reader.fieldnames or []), rows


def read_csv(path: str | Path, delimiter: str = ",") -> dict[str, np.ndarray]:
    """A table of numbers with a header row, by column (``delimiter="\t"`` for .tsv)."""
    header, rows = read_rows(path, delimiter)
    return {name: np.array([float(row[name]) for row in rows]) for name in header}


def _fmt(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, (float, np.floating)) else str(value)


def _require(path: Path) -> None:
    if not path.is_file():
        raise UserError(f"{path} not found; run the stage that writes it first (`dvc repro`)")


def require_finite(values: np.ndarray, what: str, fix: str) -> None:
    """Raise a UserError when ``values`` hold NaN or infinity: ``what`` names them (a score
    of a split, a threshold), ``fix`` says what to do. A NaN would otherwise pass silently:
    it compares False with everything, so it flags nothing and never counts as a best."""
    values = np.asarray(values, dtype=float)
    bad = ~np.isfinite(values)
    if not bad.any():
        return
    if values.ndim == 0:
        raise UserError(f"{what} is {values.item()}; {fix}")
    first = int(np.flatnonzero(bad)[0])
    raise UserError(
        f"{what} is not finite in {int(bad.sum())} of {values.size} rows "
        f"(the first, row {first}, is {values.flat[first]}); {fix}"
    )


def save_figure(fig: Any, path: str | Path, crop: bool = False) -> None:
    """A matplotlib figure as a PNG: at the size it was made, its layout engine (``layout=
    "tight"`` or ``"constrained"``) fitting its content in as savefig draws it; or, with
    ``crop``, cut to what it draws (``bbox_inches="tight"``, the prepare stage's examples). No
    PNG metadata (it would embed the matplotlib version), so reruns give equal files."""
    import matplotlib.pyplot as plt  # loaded already by whoever made the figure

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight" if crop else None, metadata={"Software": None})
    plt.close(fig)
    log.info("wrote %s", path)
