"""Score levers for the one-class image families, on the development halves only.

    python -m benchmarks.suite --data-root ../shared/datasets --development --seeds 0 \
        --tasks mnist_one_class,fashion_mnist_one_class
    python -m benchmarks.one_class_levers --data-root ../shared/datasets

The first command trains (or reads) the suite's VAEs and caches their weights under
data/suite_cache; this one reads those weights and measures, per family, the mean development
ROC-AUC of scores the package does not have next to the recommended recipe (the smoothed
residual + latent_knn, `combined`, before issue 32): test-time shifts of the input, a residual
that forgives a one-pixel misalignment, k-NN in the encoder's hidden layer, in pixel space and
on standardised codes, the smoothed residual pooled over its largest 5 % or 20 % of pixels
instead of all, SSIM's error (Gaussian or 7 x 7 window), the error of the edges (Sobel) and of
their histograms of oriented gradients (hog_error, HOG in scikit-image), k-NN on HOG, the
tables' k-NN scores (the mean of the 5 distances in mu; latent_residual_knn's mu and whitened
residual; joint_knn's pixels, mu and whitened residual), and their combinations, some weighted
(each component scaled by its validation median and IQR, as `combined` does). With `--transforms`, also a classifier of the 8 rotations and flips trained
on each task's normal images (transformation_nll). With `--seeds
0,1,2` (after the suite has cached those seeds' models) each number is the mean over seeds, and
each candidate has a "(seeds ensemble)" row too: the ROC-AUC of its scaled scores averaged over
the seeds' models, one detector three times the cost. ``--set KEY=VALUE`` (as the suite's) reads
the VAEs the suite cached with those params, ``--families`` measures fewer families; either writes
to ``--output``. ``--families mnist,fashion_mnist`` measures the held-out (leave-one-class-out)
families instead, on the suite's cached VAEs of those tasks: sums of the package's own scores
(HELD_OUT_CANDIDATES) against their recipe, complexity_corrected + latent_knn.
Writes reports/suite/development-one-class-levers.md (docs/suite-levers.md).
"""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from benchmarks.levers import CACHE, model_path, section, write_report
from benchmarks.suite import parse_overrides
from vae_anomaly.cli import run_main
from vae_anomaly.data.images import DATA_ROOT_ENV
from vae_anomaly.errors import UserError
from vae_anomaly.params import load_params
from vae_anomaly.studies import suite as S

log = logging.getLogger(__name__)

FAMILIES = ("mnist_one_class", "fashion_mnist_one_class")
# Held out (leave-one-class-out, data.protocol held_out): the recipe there is complexity_corrected +
# latent_knn under the discretised logistic decoder; its candidates are sums of the package's own
# scores, as the suite computes them (pipeline.score_splits), with the structural errors of the
# one-class sum beside the recipe.
HELD_OUT_FAMILIES = ("mnist", "fashion_mnist")
HELD_OUT_CANDIDATES = [
    ["complexity_corrected", "latent_knn"],
    ["complexity_corrected", "latent_knn", "hog_error"], ["complexity_corrected", "latent_knn", "ssim_error"],
    ["complexity_corrected", "latent_knn", "ssim_error", "hog_error"],
    ["complexity_corrected", "latent_knn", "smoothed_reconstruction_mse"],
    ["complexity_corrected", "latent_knn", "smoothed_reconstruction_mse", "ssim_error", "hog_error"],
    ["complexity_corrected", "hog_error"], ["hog_error"], ["ssim_error"],
]
OUT = Path("reports/suite/development-one-class-levers.md")
SHIFTS = [(1, 0), (-1, 0), (0, 1), (0, -1)]  # one pixel, in each direction
# The candidates: single scores and the components of scaled means (fit_combination).
CANDIDATES = [
    ["smoothed"], ["smoothed", "latent_knn"],
    ["shifted_inputs"], ["shifted_inputs", "latent_knn"],
    ["aligned"], ["aligned", "latent_knn"],
    ["hidden_knn"], ["smoothed", "hidden_knn"],
    ["pixel_knn"], ["smoothed", "pixel_knn"], ["smoothed", "latent_knn", "pixel_knn"],
    ["top_5"], ["top_5", "latent_knn"], ["top_20"], ["top_20", "latent_knn"], ["smoothed", "top_5"],
    ["ssim"], ["ssim", "latent_knn"], ["smoothed", "ssim", "latent_knn"],
    ["ssim_7"], ["ssim_7", "latent_knn"], ["smoothed", "ssim_7", "latent_knn"], ["smoothed", "ssim", "hidden_knn"],
    ["smoothed", "ssim", "latent_knn", "hidden_knn"], ["top_5", "ssim", "latent_knn"],
    ["gradient"], ["gradient", "latent_knn"], ["smoothed", "gradient", "latent_knn"],
    ["latent_std_knn"], ["smoothed", "latent_std_knn"],
    ["smoothed*2", "latent_knn"], ["smoothed", "latent_knn*2"], ["smoothed", "top_5", "latent_knn"],
    ["latent_mean_knn"], ["smoothed", "ssim", "latent_mean_knn"], ["joint_knn"], ["smoothed", "ssim", "joint_knn"],
    ["latent_residual_knn"], ["smoothed", "ssim", "latent_residual_knn"],
    ["hog_knn"], ["smoothed", "ssim", "latent_knn", "hog_knn"], ["smoothed", "ssim", "hog_knn"],
    ["hog_error"], ["smoothed", "ssim", "latent_knn", "hog_error"],
]
TRANSFORM_CANDIDATES = [["transforms"], ["smoothed", "transforms"], ["smoothed", "latent_knn", "transforms"],
                        ["top_5", "latent_knn", "transforms"]]
# A component written "name*w" weighs w in the candidate's mean (the others 1): a recipe
# constant to be chosen on the development halves, never per task.
# The smoothed residual pooled over its largest pixels instead of all (share of the pixels).
TOP_SHARES = {"top_5": 0.05, "top_20": 0.20}


def features(model: Any, x: np.ndarray, batch: int = 1000) -> dict[str, np.ndarray]:
    """Per image of ``x``: the smoothed residual's mean (smoothed_reconstruction_mse), its mean
    over the input shifted one pixel each way (test-time augmentation, zero-padded), the
    smallest over the reconstruction shifted so (a residual that forgives misalignment), the
    pooled largest residuals, SSIM's, the edges' and HOG's errors, the HOG descriptor, the
    posterior mean and the encoder's hidden layer."""
    import torch
    from scipy.ndimage import gaussian_filter, shift

    from vae_anomaly.scoring.scores import SMOOTHING_SIGMA, image_hog, image_ssim

    def moved(a: np.ndarray, dy: int, dx: int) -> np.ndarray:
        return shift(a, (0, 0, dy, dx), order=0, cval=0.0)

    def smoothed_map(residual: np.ndarray) -> np.ndarray:
        low = gaussian_filter(residual, sigma=(0, 0, SMOOTHING_SIGMA, SMOOTHING_SIGMA))
        return np.square(low).reshape(len(residual), -1)

    def smoothed(residual: np.ndarray) -> np.ndarray:
        return smoothed_map(residual).mean(axis=1)

    def gradient(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """The mean squared difference of the Sobel gradient magnitudes: edges the reconstruction
        lacks or adds, whatever their brightness."""
        from scipy.ndimage import sobel

        def magnitude(c: np.ndarray) -> np.ndarray:
            return np.hypot(sobel(c, axis=-1), sobel(c, axis=-2))
        return np.square(magnitude(a) - magnitude(b)).reshape(len(a), -1).mean(axis=1)

    def top(squared: np.ndarray, share: float) -> np.ndarray:
        """The mean of the largest ``share`` of an image's smoothed squared residuals: an
        anomaly confined to a few strokes is not averaged away by the background."""
        most = max(1, round(share * squared.shape[1]))
        return np.sort(squared, axis=1)[:, -most:].mean(axis=1)

    @torch.no_grad()
    def encoded(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        t = torch.as_tensor(a, dtype=torch.float32)
        mu, _ = model.encode(t)
        hidden = model.encoder(model.features(model.filled(t)))
        return model.mean(model.decode(mu)).numpy(), mu.numpy(), hidden.numpy()

    out: dict[str, list[np.ndarray]] = {k: [] for k in ("smoothed", "shifted_inputs", "aligned", "latent", "hidden",
                                                         "ssim", "ssim_7", "gradient", "hog", "hog_error",
                                                         *TOP_SHARES)}
    for start in range(0, len(x), batch):
        xb = x[start:start + batch]
        recon, mu, hidden = encoded(xb)
        squared = smoothed_map(xb - recon)
        base = squared.mean(axis=1)
        out["smoothed"].append(base)
        for name, share in TOP_SHARES.items():
            out[name].append(top(squared, share))
        out["ssim"].append(1 - image_ssim(xb, recon, gaussian=True))  # ssim_error's
        out["ssim_7"].append(1 - image_ssim(xb, recon))  # scikit-image's uniform 7 x 7 window
        out["gradient"].append(gradient(xb, recon))
        out["hog"].append(image_hog(xb))  # the histograms of oriented gradients, hog_error's
        out["hog_error"].append(np.square(out["hog"][-1] - image_hog(recon)).sum(axis=1))
        out["latent"].append(mu)
        out["hidden"].append(hidden)
        inputs = [moved(xb, *d) for d in SHIFTS]
        out["shifted_inputs"].append(np.mean([base] + [smoothed(s - encoded(s)[0]) for s in inputs], axis=0))
        out["aligned"].append(np.min([base] + [smoothed(xb - moved(recon, *d)) for d in SHIFTS], axis=0))
    return {k: np.concatenate(v) for k, v in out.items()}


def transformed(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each image of ``x`` (n, c, h, w) under the 8 transformations of the square (4 rotations,
    with and without a horizontal flip), and which one each copy had."""
    copies = [np.rot90(np.flip(x, -1) if flip else x, turn, axes=(-2, -1)) for flip in (0, 1) for turn in range(4)]
    return np.concatenate(copies), np.repeat(np.arange(8), len(x))


def transformation_nll(train: np.ndarray, splits: dict[str, np.ndarray], seed: int,
                       epochs: int = 15) -> dict[str, np.ndarray]:
    """Per image of each split: the cross-entropy of a classifier, trained on the normal training
    images only, at telling which of the 8 transformations each copy had, summed over the copies
    (Golan & El-Yaniv 2018's idea, GeoTrans, with a small MLP in place of their wide ResNet).
    A normal image's orientation is learnt; another class's is less sure."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    x, y = transformed(train)
    x = torch.as_tensor(x.reshape(len(x), -1).copy(), dtype=torch.float32)
    y = torch.as_tensor(y)
    net = nn.Sequential(nn.Linear(x.shape[1], 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 8))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for rows in torch.randperm(len(x), generator=gen).split(256):
            opt.zero_grad()
            nn.functional.cross_entropy(net(x[rows]), y[rows]).backward()
            opt.step()
    out = {}
    with torch.no_grad():
        for split, images in splits.items():
            tx, ty = transformed(images)
            logits = net(torch.as_tensor(tx.reshape(len(tx), -1).copy(), dtype=torch.float32))
            nll = nn.functional.cross_entropy(logits, torch.as_tensor(ty), reduction="none").numpy()
            out[split] = nll.reshape(8, len(images)).sum(axis=0)
    return out


def task_levers(task: S.Task, suite: S.Suite, seed: int, cache: Path,
                transforms: bool = False) -> tuple[dict[str, float], dict[str, np.ndarray], np.ndarray]:
    """Each candidate's development ROC-AUC on ``task``, from the cached VAE of ``seed``, and its
    development scores on the validation scale (median 0, IQR 1), which seeds can average, and the
    development labels."""
    import torch
    from sklearn.neighbors import NearestNeighbors

    from vae_anomaly.model.vae import load_model
    from vae_anomaly.scoring.reference import as_float64, encode_and_reconstruct, fit_whitener, joint_coordinates

    data = S.prepare(task, suite.split_seed)
    path = model_path(task, seed, data, cache)
    if not path.is_file():
        raise UserError(f"{path} not found: run the suite on {task.name} with seed {seed} first (this script's docstring)")
    model = load_model(path).eval()
    if task.params["data"]["protocol"] == "held_out":
        from vae_anomaly.pipeline import score_splits

        names = sorted({name for components in HELD_OUT_CANDIDATES for name in components})
        score = {**S.with_seed(task.params, seed)["score"], "names": names}
        parts = score_splits(model, data.features, score, seed, splits=("val", "test"))
        return candidate_aucs(task, seed, data, parts, HELD_OUT_CANDIDATES)
    parts = {split: features(model, data.features[split]) for split in ("train", "val", "test")}
    k = task.params["score"]["knn_neighbors"]
    center, spread = parts["train"]["latent"].mean(axis=0), parts["train"]["latent"].std(axis=0) + 1e-8
    for split in ("train", "val", "test"):  # codes standardised per dimension on the training split
        parts[split]["latent_std"] = (parts[split]["latent"] - center) / spread
    images = {split: torch.as_tensor(data.features[split], dtype=torch.float32) for split in ("train", "val", "test")}
    with torch.no_grad():  # the package's coordinates of latent_residual_knn (mu, r W) and joint_knn (x, mu, r W)
        whitener = fit_whitener(as_float64(encode_and_reconstruct(model, images["train"])[1]))
        for split, t in images.items():
            parts[split]["pixel"] = data.features[split].reshape(len(t), -1)
            parts[split]["mu_r"], parts[split]["x_mu_r"] = (joint_coordinates(model, t, whitener, with_input)
                                                            for with_input in (False, True))
    for space, name, mean in (("latent", "latent_knn", False), ("hidden", "hidden_knn", False),
                              ("pixel", "pixel_knn", False), ("latent_std", "latent_std_knn", False),
                              ("latent", "latent_mean_knn", True), ("mu_r", "latent_residual_knn", False),
                              ("x_mu_r", "joint_knn", True), ("hog", "hog_knn", False)):
        neighbors = NearestNeighbors(n_neighbors=k).fit(parts["train"][space])
        for split in ("val", "test"):
            distances = neighbors.kneighbors(parts[split][space])[0]
            parts[split][name] = distances.mean(axis=1) if mean else distances[:, -1]
    if transforms:
        nll = transformation_nll(data.features["train"], {s: data.features[s] for s in ("val", "test")}, seed)
        for split in ("val", "test"):
            parts[split]["transforms"] = nll[split]
    return candidate_aucs(task, seed, data, parts, CANDIDATES + (TRANSFORM_CANDIDATES if transforms else []))


def candidate_aucs(task: S.Task, seed: int, data: S.Prepared, parts: dict[str, dict[str, np.ndarray]],
                   candidates: list[list[str]]) -> tuple[dict[str, float], dict[str, np.ndarray], np.ndarray]:
    """Each candidate's development ROC-AUC from the components' validation and test ``parts``,
    its development scores on the validation scale, and the development labels (task_levers)."""
    from sklearn.metrics import roc_auc_score

    from vae_anomaly.scoring.combination import combined, fit_combination

    dev = data.development
    out, scaled = {}, {}
    for components in candidates:
        name = " + ".join(components)
        weights = dict((c.split("*")[0], float(c.split("*")[1]) if "*" in c else 1.0) for c in components)
        scales = fit_combination(parts["val"], list(weights))
        scaled[name] = (sum(w * combined(parts["test"], {c: scales[c]}) for c, w in weights.items())
                        / sum(weights.values()))[dev]
        out[name] = float(roc_auc_score(data.labels[dev], scaled[name]))
    log.info("%s/%d: %s", task.name, seed, {name: round(v, 4) for name, v in out.items()})
    return out, scaled, data.labels[dev]


def ensembles(task: S.Task, suite: S.Suite, seeds: list[int], cache: Path,
              transforms: bool = False) -> dict[str, float]:
    """Per candidate: the mean development ROC-AUC over ``seeds``, and (with several seeds) the
    ROC-AUC of the seeds' ensemble, the mean of their scaled scores (``seeds ensemble``)."""
    from sklearn.metrics import roc_auc_score

    runs = [task_levers(task, suite, seed, cache, transforms) for seed in seeds]
    out = {name: float(np.mean([auc[name] for auc, _, _ in runs])) for name in runs[0][0]}
    if len(seeds) > 1:
        labels = runs[0][2]
        for name in runs[0][1]:
            out[f"{name} (seeds ensemble)"] = float(roc_auc_score(labels, np.mean([s[name] for _, s, _ in runs], axis=0)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", default=os.environ.get(DATA_ROOT_ENV, ""),
                        help=f"folder with MNIST/ and FashionMNIST/ (default: ${DATA_ROOT_ENV})")
    parser.add_argument("--seeds", default="0", help="comma-separated training seeds of the cached models")
    parser.add_argument("--output", type=Path, default=OUT, help=f"the report (default: {OUT})")
    parser.add_argument("--transforms", action="store_true",
                        help="also measure a classifier of the 8 rotations and flips (transformation_nll)")
    parser.add_argument("--families", default=",".join(FAMILIES),
                        help=f"comma-separated, of {', '.join(FAMILIES + HELD_OUT_FAMILIES)} (default: the first two)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a params override, as the suite's --set: the cached VAEs the suite trained with it")
    args = parser.parse_args()
    seeds = [int(seed) for seed in args.seeds.split(",")]
    families = args.families.split(",")
    if unknown := set(families) - set(FAMILIES) - set(HELD_OUT_FAMILIES):
        raise UserError(f"--families: {', '.join(sorted(unknown))} unknown; choose among "
                        f"{', '.join(FAMILIES + HELD_OUT_FAMILIES)}")
    if (args.set or set(families) != set(FAMILIES)) and args.output == OUT:
        raise UserError(f"--set and --families measure other models or fewer families: give --output another file "
                        f"than {OUT}")
    suite = S.load_suite(yaml.safe_load(Path("benchmarks/suite.yaml").read_text()), load_params(resolve=False),
                         args.data_root.rstrip("/"), parse_overrides(args.set))
    lines = ["# One-class image levers (development halves: for choosing, not for reporting)", "",
             f"Mean development ROC-AUC over each family's 10 classes and the cached VAEs of seeds {seeds} "
             "(python -m benchmarks.one_class_levers; docs/suite-levers.md).", ""]
    if args.set:
        lines[-1:-1] = ["With " + ", ".join(f"`{item}`" for item in args.set) + "."]
    for family in families:
        tasks = [t for t in suite.tasks if t.family == family]
        results = [ensembles(t, suite, seeds, CACHE, args.transforms) for t in tasks]
        lines += section(family, {name: np.mean([r[name] for r in results]) for name in results[0]})
    write_report(lines, args.output)


if __name__ == "__main__":
    run_main(main)
