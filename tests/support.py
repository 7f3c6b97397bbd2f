"""Small builders the tests share, and the project's import graph read from its source."""
from __future__ import annotations

import ast
import gzip
import struct
from pathlib import Path

import numpy as np
from torchvision.datasets.utils import calculate_md5

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


# --- tiny MNIST-layout files (torchvision's idx format), never a download ------------------------

SIDE = 5  # tiny images: SIDE x SIDE pixels
PIXEL_STEP = 25  # every pixel of a class-c image is c * PIXEL_STEP, so pixels tell the class
# 20 training images a class: one class alone fills the minimum training + validation split
N_TRAIN_PER_CLASS, N_TEST_PER_CLASS = 20, 2


def idx_gz(array: np.ndarray) -> bytes:
    """The idx format (magic 0x0000 08 ndim, big-endian int32 sizes, uint8 data), gzip'd."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes(), mtime=0)


def write_raw_files(root, dataset) -> None:
    """``root/<Class>/raw/*.gz`` as torchvision's download leaves them, 10 classes."""
    raw = root / dataset.__name__ / "raw"
    raw.mkdir(parents=True)
    for prefix, per_class in (("train", N_TRAIN_PER_CLASS), ("t10k", N_TEST_PER_CLASS)):
        labels = np.tile(np.arange(10), per_class)
        images = np.broadcast_to(labels[:, None, None] * PIXEL_STEP, (len(labels), SIDE, SIDE))
        (raw / f"{prefix}-images-idx3-ubyte.gz").write_bytes(idx_gz(images))
        (raw / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(idx_gz(labels))


def pin_tiny_md5s(monkeypatch, root, dataset) -> None:
    """Point the class's (filename, md5) list at the tiny files, as if they were official."""
    raw = root / dataset.__name__ / "raw"
    tiny = [(name, calculate_md5(raw / name)) for name, _ in dataset.resources]
    monkeypatch.setattr(dataset, "resources", tiny)
