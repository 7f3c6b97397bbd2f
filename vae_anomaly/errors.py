"""The errors a user can act on: each is shown as one line, without a traceback, and the
command exits with status 2 (``cli.run_main``)."""
from __future__ import annotations


class UserError(Exception):
    """An error the user can fix (bad input file, missing artifact); shown without traceback."""


class ParamsError(ValueError):
    """A params document that does not match the schema; the message says how to fix it."""


class InputError(UserError, ValueError):
    """Data a detector cannot score: what is wrong (``problem``), and where: ``row`` (0-based
    in the array given) and ``column`` (a feature's index or name, or a pixel's (channel, y, x))."""

    def __init__(self, problem: str, row: int | None = None, column: int | str | tuple[int, ...] | None = None):
        self.problem, self.row, self.column = problem, row, column
        where = "" if row is None else f"X[{row}]" if column is None else f"X[{row}, {column}]"
        super().__init__(f"{where}: {problem}" if where else problem)

