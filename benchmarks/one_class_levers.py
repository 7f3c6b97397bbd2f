"""Score levers for the one-class image families, on the development halves only.

    python -m benchmarks.suite --data-root ../shared/datasets --development --seeds 0 \
        --tasks mnist_one_class,fashion_mnist_one_class
    python -m benchmarks.one_class_levers --data-root ../shared/datasets

The first command trains (or reads) the suite's VAEs and caches their weights under
data/suite_cache; this one reads those weights and measures, per family, the mean development
ROC-AUC of scores the package does not have next to the recommended recipe (the smoothed
residual + latent_knn, `combined`): test-time shifts of the input, a residual that forgives a
one-pixel misalignment, k-NN in the encoder's hidden layer and in pixel space, and their
combinations (each component scaled by its validation median and IQR, as `combined` does).
Writes reports/suite/development-one-class-levers.md (docs/suite.md, "What did not work").
"""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from vae_anomaly.cli import run_main
from vae_anomaly.data.images import DATA_ROOT_ENV
from vae_anomaly.errors import UserError
from vae_anomaly.io import atomic_path
from vae_anomaly.params import load_params
from vae_anomaly.studies import suite as S

log = logging.getLogger(__name__)

FAMILIES = ("mnist_one_class", "fashion_mnist_one_class")
OUT = Path("reports/suite/development-one-class-levers.md")
SHIFTS = [(1, 0), (-1, 0), (0, 1), (0, -1)]  # one pixel, in each direction
# The candidates: single scores and the components of scaled means (fit_combination).
CANDIDATES = [
    ["smoothed"], ["smoothed", "latent_knn"],
    ["shifted_inputs"], ["shifted_inputs", "latent_knn"],
    ["aligned"], ["aligned", "latent_knn"],
    ["hidden_knn"], ["smoothed", "hidden_knn"],
    ["pixel_knn"], ["smoothed", "pixel_knn"], ["smoothed", "latent_knn", "pixel_knn"],
]


def features(model: Any, x: np.ndarray, batch: int = 1000) -> dict[str, np.ndarray]:
    """Per image of ``x``: the smoothed residual's mean (smoothed_reconstruction_mse), its mean
    over the input shifted one pixel each way (test-time augmentation, zero-padded), the
    smallest over the reconstruction shifted so (a residual that forgives misalignment), the
    posterior mean and the encoder's hidden layer."""
    import torch
    from scipy.ndimage import gaussian_filter, shift

    from vae_anomaly.scoring.scores import SMOOTHING_SIGMA

    def moved(a: np.ndarray, dy: int, dx: int) -> np.ndarray:
        return shift(a, (0, 0, dy, dx), order=0, cval=0.0)

    def smoothed(residual: np.ndarray) -> np.ndarray:
        low = gaussian_filter(residual, sigma=(0, 0, SMOOTHING_SIGMA, SMOOTHING_SIGMA))
        return np.square(low).reshape(len(residual), -1).mean(axis=1)

    @torch.no_grad()
    def encoded(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        t = torch.as_tensor(a, dtype=torch.float32)
        mu, _ = model.encode(t)
        hidden = model.encoder(model.features(model.filled(t)))
        return model.mean(model.decode(mu)).numpy(), mu.numpy(), hidden.numpy()

    out: dict[str, list[np.ndarray]] = {k: [] for k in ("smoothed", "shifted_inputs", "aligned", "latent", "hidden")}
    for start in range(0, len(x), batch):
        xb = x[start:start + batch]
        recon, mu, hidden = encoded(xb)
        out["smoothed"].append(smoothed(xb - recon))
        out["latent"].append(mu)
        out["hidden"].append(hidden)
        inputs = [moved(xb, *d) for d in SHIFTS]
        out["shifted_inputs"].append(np.mean([smoothed(xb - recon)] + [smoothed(s - encoded(s)[0]) for s in inputs], axis=0))
        out["aligned"].append(np.min([smoothed(xb - recon)] + [smoothed(xb - moved(recon, *d)) for d in SHIFTS], axis=0))
    return {k: np.concatenate(v) for k, v in out.items()}


def task_levers(task: S.Task, suite: S.Suite, seed: int, cache: Path) -> dict[str, float]:
    """Each candidate's development ROC-AUC on ``task``, from the cached VAE of ``seed``."""
    from sklearn.metrics import roc_auc_score
    from sklearn.neighbors import NearestNeighbors

    from vae_anomaly.model.vae import load_model
    from vae_anomaly.scoring.combination import combined, fit_combination

    data = S.prepare(task, suite.split_seed)
    path = cache / f"{task.name.replace('/', '__')}-model-{seed}-{S.model_key(task, seed, S.data_digest(data))}.pt"
    if not path.is_file():
        raise UserError(f"{path} not found: run the suite on {task.name} with seed {seed} first (this script's docstring)")
    model = load_model(path).eval()
    parts = {split: features(model, data.features[split]) for split in ("train", "val", "test")}
    parts["train"]["pixel"] = data.features["train"].reshape(len(data.features["train"]), -1)
    k = task.params["score"]["knn_neighbors"]
    for space, name in (("latent", "latent_knn"), ("hidden", "hidden_knn"), ("pixel", "pixel_knn")):
        neighbors = NearestNeighbors(n_neighbors=k).fit(parts["train"][space])
        for split in ("val", "test"):
            points = data.features[split].reshape(len(data.features[split]), -1) if space == "pixel" else parts[split][space]
            parts[split][name] = neighbors.kneighbors(points)[0][:, -1]
    dev = data.development
    out = {}
    for components in CANDIDATES:
        scores = parts["test"][components[0]] if len(components) == 1 else combined(
            parts["test"], fit_combination(parts["val"], components))
        out[" + ".join(components)] = float(roc_auc_score(data.labels[dev], scores[dev]))
    log.info("%s: %s", task.name, {name: round(v, 4) for name, v in out.items()})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", default=os.environ.get(DATA_ROOT_ENV, ""),
                        help=f"folder with MNIST/ and FashionMNIST/ (default: ${DATA_ROOT_ENV})")
    parser.add_argument("--seed", type=int, default=0, help="the training seed of the cached models")
    args = parser.parse_args()
    suite = S.load_suite(yaml.safe_load(Path("benchmarks/suite.yaml").read_text()), load_params(resolve=False),
                         args.data_root.rstrip("/"))
    lines = ["# One-class image levers (development halves: for choosing, not for reporting)", "",
             f"Mean development ROC-AUC over each family's 10 classes, the cached VAE of seed {args.seed} "
             "(python -m benchmarks.one_class_levers; docs/suite.md).", ""]
    for family in FAMILIES:
        tasks = [t for t in suite.tasks if t.family == family]
        results = [task_levers(t, suite, args.seed, Path("data/suite_cache")) for t in tasks]
        means = {name: np.mean([r[name] for r in results]) for name in results[0]}
        lines += [f"## {family}", "", "| score | mean ROC-AUC |", "| --- | --- |",
                  *(f"| {name} | {value:.4f} |" for name, value in sorted(means.items(), key=lambda kv: -kv[1])), ""]
    with atomic_path(OUT) as tmp:
        tmp.write_text("\n".join(lines))
    log.info("wrote %s", OUT)
    print("\n".join(lines))


if __name__ == "__main__":
    run_main(main)
