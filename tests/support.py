"""Small builders the tests share, and the project's import graph read from its source."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def score_params(names: list[str], batch_size: int = 16, elbo_samples: int = 1,
                 iwae_samples: int = 8, k: int = 5) -> dict:
    """A ``score`` params section for calling vae_anomaly.scoring.scores.compute_scores directly."""
    return {"names": names, "batch_size": batch_size, "elbo_samples": elbo_samples,
            "iwae_samples": iwae_samples, "complexity_codec": "jpeg2000", "knn_neighbors": k,
            "regret_steps": 5, "regret_lr": 0.1, "combine": []}


PACKAGES = ("stages", "vae_anomaly")  # the project's code; anything else is a library


def module_file(name: str, root: Path = ROOT) -> Path | None:
    """The file of a project module ("vae_anomaly.io" -> vae_anomaly/io.py), None if not ours."""
    if name.split(".")[0] not in PACKAGES:
        return None
    path = root.joinpath(*name.split("."))
    if path.is_dir():
        return path / "__init__.py"
    return path.with_suffix(".py") if path.with_suffix(".py").is_file() else None


def imported_modules(path: Path, root: Path = ROOT) -> set[str]:
    """Every module ``path`` imports anywhere in it (in functions too, and for type checking:
    over- rather than under-counting), absolute names; a package's __init__ counts as
    imported with any of its modules."""
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from .io import x, from . import __version__
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [base]).strip(".")
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # from pkg import module
    return {".".join(n.split(".")[:i]) for n in names for i in range(1, len(n.split(".")) + 1)}
