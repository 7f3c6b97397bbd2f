"""plot: PNG figures of scores, ROC and PR curves (the evaluate stage's), images and training."""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import numpy as np

from stages.paths import (CURVES, FEATURES, FIGURES_DIR, LABELS, MODEL, REFERENCE, SCORES_DIR, TEST_EXPLANATION,
                          TEST_MAPS, THRESHOLD, TRAINING_LOG)
from vae_anomaly.cli import run_stage
from vae_anomaly.data.columns import read_encoding
from vae_anomaly.data.splits import SPLITS
from vae_anomaly.evaluation import plots
from vae_anomaly.evaluation.baselines import FIGURE_PREFIX
from vae_anomaly.io import read_arrays, read_json, save_figure
from vae_anomaly.model.training_log import read_history
from vae_anomaly.params import load_params

if TYPE_CHECKING:  # torch and the model are imported only to draw images (load_model)
    from vae_anomaly.model.vae import VAE

log = logging.getLogger(__name__)


def image_figures(
    model: VAE, test_x: np.ndarray, labels: np.ndarray, scores: np.ndarray, n: int, seed: int
) -> dict[str, plt.Figure]:
    """Reconstructions of random normal and anomalous test images under their originals,
    samples from the prior, and the most anomalous test images."""
    import torch  # here: tabular runs draw no images and start without it

    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)

    @torch.no_grad()
    def reconstruct(x: np.ndarray) -> torch.Tensor:
        mu, _ = model.encode(torch.as_tensor(x))
        return model.mean(model.decode(mu))

    rows = []
    for label, name in ((0, "normal"), (1, "anomalous")):
        pool = np.flatnonzero(labels == label)
        if len(pool):
            pick = test_x[np.sort(rng.choice(pool, size=min(n, len(pool)), replace=False))]
            rows += [(f"{name} test images", pick), ("their reconstructions", reconstruct(pick))]
    z = torch.randn((2 * n, model.config.latent_dim), generator=generator)
    with torch.no_grad():
        prior = model.mean(model.decode(z))
    worst = np.argsort(-scores, kind="stable")[: 2 * n]
    worst_rows = [(f"highest scores ({scores[worst[0]]:.4g} to {scores[worst[n - 1]]:.4g})", test_x[worst[:n]])]
    if len(worst) > n:
        worst_rows.append(("next highest", test_x[worst[n:]]))
    return {
        "reconstructions": plots.image_rows(rows, n),
        "prior_samples": plots.image_rows([("samples from the prior", prior[:n]), ("", prior[n:])], n),
        "most_anomalous": plots.image_rows(worst_rows, n),
    }


ELBO = "negative_elbo"


def make_figures(
    features: dict[str, np.ndarray],
    labels: dict[str, np.ndarray],
    scores: dict[str, dict[str, np.ndarray]],
    primary: str,
    threshold: float,
    history: dict[str, np.ndarray],
    model: Callable[[], VAE],
    plot_p: dict[str, Any],
    curves: dict[str, dict[str, Any]] | None = None,
    explanation: tuple[np.ndarray, list[str]] | None = None,
    maps: np.ndarray | None = None,
    map_vmax: float = 1.0,
) -> dict[str, plt.Figure]:
    """Every figure that applies to this data, by file name (without .png); ``curves`` (see
    figure_curves; none when the test set holds one class) make the ROC and PR figure;
    ``explanation`` (tables: the test rows' contributions by column, and the column names)
    the figure of the most anomalous rows' top columns; ``maps`` (images: the test images'
    anomaly maps, drawn 0 to ``map_vmax``) the figure of images beside their maps and masks.
    ``model`` loads the model, called only for images: tabular runs draw without torch."""
    test_label, test = labels["test_label"], scores["test"]
    figures = {
        "loss": plots.loss_curves(history),
        "score_histogram": plots.score_histogram(test[primary], test_label, threshold, primary),
    }
    if ELBO in test and primary != ELBO:  # the VAE's own score, beside the thresholded one
        figures[f"score_histogram_{ELBO}"] = plots.score_histogram(test[ELBO], test_label, None, ELBO)
    if curves:
        figures["roc_pr"] = plots.roc_pr_figure(curves)
    if explanation is not None:
        figures["top_columns"] = plots.top_columns_figure(*explanation, test[primary], primary)
    if features["test"].ndim == 4:
        figures.update(image_figures(model(), features["test"], test_label, test[primary],
                                     plot_p["n_images"], plot_p["seed"]))
        if maps is not None:
            figures["anomaly_maps"] = plots.map_figure(features["test"], maps, labels["test_kind"],
                                                       labels.get("test_mask"), labels.get("mask_known"),
                                                       plot_p["n_images"], plot_p["seed"], map_vmax)
    elif features["test"].shape[1] == 2:
        for split in ("train", "test"):
            if f"{split}_label" in labels:
                figures[f"scatter_{split}"] = plots.outcome_scatter(
                    features[split], labels[f"{split}_label"], scores[split][primary], threshold,
                    f"{split}: outcomes at the threshold ({primary})",
                )
    return figures


def figure_curves(arrays: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    """The evaluate stage's curves ("<group>/<name>/<column>", group scores or baselines) by
    name in the figure, the PyOD baselines' with FIGURE_PREFIX, each with its ranking metrics
    (ROC-AUC, PR-AUC: the 0-d arrays) as numbers."""
    curves: dict[str, dict[str, Any]] = {}
    for key, values in arrays.items():
        group, name, column = key.split("/")
        shown = FIGURE_PREFIX + name if group == "baselines" else name
        curves.setdefault(shown, {})[column] = values.item() if values.ndim == 0 else values
    return curves


def main() -> None:
    params = load_params()
    # data.seed picks the images shown (one seed column fewer in `dvc exp show` than a plot.seed)
    primary, plot_p = params["score"]["primary"], {**params["plot"], "seed": params["data"]["seed"]}
    log.info("read params.yaml: score.primary=%s plot=%s", primary, plot_p)
    features = read_arrays(FEATURES, *SPLITS)
    labels = read_arrays(LABELS)
    scores = {split: read_arrays(f"{SCORES_DIR}/{split}.npz") for split in ("train", "test")}
    threshold = read_json(THRESHOLD)["threshold"]

    def model() -> VAE:
        from vae_anomaly.model.vae import load_model

        return load_model(MODEL)

    curves = figure_curves(read_arrays(CURVES))
    encoding = read_encoding(FEATURES)
    explanation = None
    if encoding is not None:
        explanation = read_arrays(TEST_EXPLANATION, "ours")["ours"], encoding.names
    maps, map_vmax = None, 1.0
    if features["test"].ndim == 4:
        maps = read_arrays(TEST_MAPS)["maps"]
        map_vmax = float(read_arrays(REFERENCE, "explanation_map_scale")["explanation_map_scale"])
    figures = make_figures(features, labels, scores, primary, threshold, read_history(TRAINING_LOG), model, plot_p,
                           curves, explanation, maps, map_vmax)
    for name, fig in figures.items():
        save_figure(fig, f"{FIGURES_DIR}/{name}.png")


if __name__ == "__main__":
    run_stage(main)
