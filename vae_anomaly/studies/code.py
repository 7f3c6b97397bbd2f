"""What a computation reads of the package's code: the modules an entry module imports, followed
through every ``import`` of the package (at module level or inside functions), and one digest of
their sources. The suite keys each detector's cached scores by it (vae_anomaly/studies/suite.py),
so that a change to the plots, the metrics or the suite's tables recomputes no scores, and a
change to the VAE's scoring recomputes the VAE's and not PyOD's.

Written here rather than taken from a library: Python's own ``modulefinder`` runs on files
and follows the standard library and third-party packages too; this needs the package's
modules only, and reads them without importing them.
"""
from __future__ import annotations

import ast
import hashlib
import importlib.metadata
from functools import cache
from pathlib import Path

PACKAGE = "vae_anomaly"
ROOT = Path(__file__).parents[1]  # the package's folder
# Third-party packages whose versions change what the detectors compute.
DISTRIBUTIONS = ("numpy", "scikit-learn", "scipy", "torch", "pyod")


def module_path(module: str, root: Path = ROOT) -> Path | None:
    """The file of ``module`` (dotted, starting with the package's name), or None."""
    parts = module.split(".")[1:]
    base = root.joinpath(*parts)
    for path in (base / "__init__.py", base.with_suffix(".py")):
        if path.is_file():
            return path
    return None


def imported_modules(module: str, root: Path = ROOT) -> set[str]:
    """The package's modules that ``module``'s source imports, anywhere in it."""
    path = module_path(module, root)
    assert path is not None, module
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            # "from .x import y": y is a module of x, or a name defined in x
            names = [f"{base}.{alias.name}" if module_path(f"{base}.{alias.name}", root) else base
                     for alias in node.names]
        else:
            continue
        found.update(name for name in names
                     if name.split(".")[0] == PACKAGE and module_path(name, root) is not None)
    return found


def closure(entries: tuple[str, ...], root: Path = ROOT) -> list[str]:
    """Sorted: the ``entries`` and every package module they import, transitively."""
    seen: set[str] = set()
    todo = list(entries)
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(imported_modules(module, root) - seen)
    return sorted(seen)


@cache
def code_digest(entries: tuple[str, ...], root: Path = ROOT, alone: tuple[str, ...] = ()) -> str:
    """A digest of the sources of ``closure(entries)``, of the modules ``alone`` (their own
    source, not what they import) and of DISTRIBUTIONS' versions."""
    digest = hashlib.sha256()
    for module in sorted(set(closure(entries, root)) | set(alone)):
        digest.update(module.encode() + b"\0" + module_path(module, root).read_bytes())
    for name in DISTRIBUTIONS:
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            version = "absent"
        digest.update(f"{name}=={version}".encode())
    return digest.hexdigest()[:16]
