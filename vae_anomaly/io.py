"""Reading and writing stage artifacts, and running a stage or script from the command line.

Every write goes to a temporary file in the target's folder, is flushed to disk (``fsync``)
and is then renamed over the target (``os.replace`` is atomic on POSIX), so a process killed
mid-write, or a machine that loses power, leaves the previous artifact or none, never a
truncated one.
"""
from __future__ import annotations

import argparse
import atexit
import contextlib
import gc
import json
import logging
import math
import os
import signal
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("vae_anomaly")


class UserError(Exception):
    """An error the user can fix (bad input file, missing artifact); shown without traceback."""


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
    names = list(columns)
    rows = zip(*(columns[n] for n in names))
    with atomic_path(path) as tmp, open(tmp, "w") as fh:
        fh.write(",".join(names) + "\n")
        for row in rows:
            fh.write(",".join(_fmt(v) for v in row) + "\n")
    log.info("wrote %s", path)


def read_csv(path: str | Path, delimiter: str = ",") -> dict[str, np.ndarray]:
    """A table of numbers with a header row, by column (``delimiter="\t"`` for .tsv)."""
    path = Path(path)
    _require(path)
    log.info("read %s", path)
    table = np.genfromtxt(path, delimiter=delimiter, names=True, dtype=float, ndmin=1)
    return {name: table[name] for name in table.dtype.names}


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


_quiet = False  # set by quiet_inner_work


def show_progress() -> bool:
    """Progress bars only on a terminal, never in CI (the CI variable set): in a piped log
    every redraw of a bar is one more carriage-return-separated copy of it."""
    return not _quiet and sys.stderr.isatty() and not os.environ.get("CI")


@contextlib.contextmanager
def quiet_inner_work() -> Iterator[None]:
    """Inside work that reports its own progress, one bar and one log line per piece (the
    study's runs): no progress bars and only the package's warnings, both restored after."""
    global _quiet
    quiet, level = _quiet, log.level
    _quiet = True
    log.setLevel(max(logging.WARNING, log.getEffectiveLevel()))
    try:
        yield
    finally:
        _quiet = quiet
        log.setLevel(level)


def exit_on_ctrl_c() -> None:
    """Make Ctrl-C stop the process with one line and exit status 130 rather than a traceback
    from wherever it landed (often deep inside PyOD or torch). SystemExit still runs every
    ``finally`` on the way out, so :func:`atomic_path` removes its temporary file and no
    output is left half-written. Installed by the command-line packages (stages, scripts,
    benchmarks) when run with ``python -m``, before their slow imports."""

    def stop(signum: int, frame: Any) -> None:
        sys.stderr.write("interrupted (Ctrl-C): stopped; every output is complete or untouched\n")
        raise SystemExit(128 + signal.SIGINT)

    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not where it is ignored
        signal.signal(signal.SIGINT, stop)


def log_to_stderr() -> None:
    """The log lines of a command, and of the worker processes it starts, on stderr."""
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s: %(message)s")


def exit_without_final_collections() -> None:
    """When this process exits, skip the garbage collections Python runs over every live object
    while it shuts down: with torch and scikit-learn loaded they took 0.85 s of each process's
    exit, after its work was done (measured: exit 1.10 s, 0.25 s with the objects frozen).
    ``gc.freeze`` (made for forking servers: collections then pass over the frozen objects) runs
    as an exit handler, before those collections; the other handlers still run (logging
    flushes), and no output waits for a collection: every file is written and closed by
    ``atomic_path`` before the process ends. Memory is the system's again at exit either way."""
    atexit.unregister(gc.freeze)  # registered once, however many commands this process runs
    atexit.register(gc.freeze)


def run_main(main: Callable[[], None]) -> None:
    """Run a command-line ``main``: log to stderr, user errors as one line and exit status 2."""
    from .params import ParamsError

    log_to_stderr()
    exit_without_final_collections()
    try:
        main()
    except (ParamsError, UserError) as err:
        log.error("%s", err)
        sys.exit(2)


def run_stage(main: Callable[[], None], argv: list[str] | None = None) -> None:
    """Run a DVC stage's ``main`` (:func:`run_main`); ``--help`` prints the stage's docstring
    and writes nothing. A stage takes no arguments: params.yaml says what it does."""
    module = main.__globals__
    name = module["__spec__"].name if module.get("__spec__") else module["__name__"]
    argparse.ArgumentParser(
        prog=f"python -m {name}",
        description=f"{module['__doc__'].strip()}\n\nA DVC stage: it reads params.yaml and the "
        "inputs dvc.yaml lists, and takes no arguments. Run it with `dvc repro`.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    ).parse_args(argv)
    run_main(main)
