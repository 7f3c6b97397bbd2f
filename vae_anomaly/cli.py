"""The command-line runtime shared by the stages, scripts, benchmarks and ``python -m
vae_anomaly``: one log format, user errors as one line, Ctrl-C without a traceback, progress
bars on a terminal only."""
from __future__ import annotations

import argparse
import atexit
import contextlib
import gc
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator
from typing import Any

from .errors import ParamsError, UserError

PACKAGE_LOGGER = logging.getLogger("vae_anomaly")  # every module's logger is its child
LOG_FORMAT = "%(name)s %(levelname)s: %(message)s"

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
    quiet, level = _quiet, PACKAGE_LOGGER.level
    _quiet = True
    PACKAGE_LOGGER.setLevel(max(logging.WARNING, PACKAGE_LOGGER.getEffectiveLevel()))
    try:
        yield
    finally:
        _quiet = quiet
        PACKAGE_LOGGER.setLevel(level)


def exit_on_ctrl_c() -> None:
    """Make Ctrl-C stop the process with one line and exit status 130 rather than a traceback
    from wherever it landed (often deep inside PyOD or torch). SystemExit still runs every
    ``finally`` on the way out, so ``io.atomic_path`` removes its temporary file and no output
    is left half-written. Installed by the command-line packages (stages, scripts,
    benchmarks) when run with ``python -m``, before their slow imports."""

    def stop(signum: int, frame: Any) -> None:
        sys.stderr.write("interrupted (Ctrl-C): stopped; every output is complete or untouched\n")
        raise SystemExit(128 + signal.SIGINT)

    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not where it is ignored
        signal.signal(signal.SIGINT, stop)


def log_to_stderr(level: int = logging.INFO) -> None:
    """The log lines of a command, and of the worker processes it starts, on stderr."""
    logging.basicConfig(level=level, format=LOG_FORMAT)


def exit_without_final_collections() -> None:
    """When this process exits, skip the garbage collections Python runs over every live object
    while it shuts down (with torch and scikit-learn loaded, most of a process's exit:
    docs/performance.md). ``gc.freeze`` runs as an exit handler, before those collections; the
    other handlers still run (logging flushes), and every file is written and closed by
    ``io.atomic_path`` before the process ends."""
    atexit.unregister(gc.freeze)  # registered once, however many commands this process runs
    atexit.register(gc.freeze)


def run_main(main: Callable[[], None]) -> None:
    """Run a command-line ``main``: log to stderr, user errors as one line and exit status 2."""
    log_to_stderr()
    exit_without_final_collections()
    try:
        main()
    except (ParamsError, UserError) as err:
        PACKAGE_LOGGER.error("%s", err)  # one line: "vae_anomaly ERROR: ..."
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
