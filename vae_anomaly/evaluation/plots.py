"""The plot stage's figures (matplotlib; saved by io.save_figure). Neither scikit-learn nor
SciPy: the evaluate stage computes the ROC and PR curves, so the plot stage draws without them."""
from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no screen needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.mlab import GaussianKDE  # noqa: E402

from ..data.figures import ANOMALY_COLOR, NORMAL_COLOR  # noqa: E402
from ..scoring.thresholds import flag  # noqa: E402
from .baselines import FIGURE_PREFIX  # noqa: E402

THRESHOLD_COLOR = "black"


def score_histogram(
    scores: np.ndarray, labels: np.ndarray, threshold: float | None, score_name: str
) -> plt.Figure:
    """Histogram (left) and kernel density (right) of normal (green) and anomalous (red)
    scores, the threshold marked (None: a score that is not thresholded). Heavy-tailed
    positive scores are shown on a log axis."""
    fig, (ax_hist, ax_kde) = plt.subplots(1, 2, figsize=(11, 4), layout="tight")
    log_x = bool(np.all(scores > 0)) and scores.max() / scores.min() > 100
    space = np.geomspace if log_x else np.linspace
    bins = space(scores.min(), scores.max(), 60)
    grid = space(scores.min(), scores.max(), 400)
    for label, name, color in ((0, "normal", NORMAL_COLOR), (1, "anomaly", ANOMALY_COLOR)):
        part = scores[labels == label]
        if not len(part):
            continue
        # stepfilled: one polygon, not a patch per bin; the same pixels, drawn in half the time
        ax_hist.hist(part, bins=bins, density=True, alpha=0.5, color=color, label=f"{name} (n={len(part)})",
                     histtype="stepfilled")
        if len(np.unique(part)) > 1:
            # The KDE runs on log scores when the axis is logarithmic, so its bandwidth suits it.
            # matplotlib's GaussianKDE (violinplot's) is SciPy's gaussian_kde, Scott's rule too.
            kde = GaussianKDE(np.log(part) if log_x else part)
            density = kde(np.log(grid)) / grid if log_x else kde(grid)
            ax_kde.plot(grid, density, color=color, label=name)
            ax_kde.fill_between(grid, density, color=color, alpha=0.2)
    for ax, kind in ((ax_hist, "histogram"), (ax_kde, "density (KDE)")):
        if threshold is not None:
            ax.axvline(threshold, color=THRESHOLD_COLOR, linestyle="--", label=f"threshold {threshold:.4g}")
        if log_x:
            ax.set_xscale("log")
        ax.set_xlabel(score_name)
        ax.set_ylabel("density")
        ax.set_title(f"Test scores, {kind}")
        ax.legend()
    return fig


def loss_curves(history: dict[str, np.ndarray]) -> plt.Figure:
    """Training and validation loss per epoch, with the KL term and the KL weight."""
    fig, (ax_loss, ax_kl) = plt.subplots(1, 2, figsize=(10, 4), layout="tight")
    ax_loss.plot(history["epoch"], history["train_loss"], label="train (at the epoch's KL weight)")
    ax_loss.plot(history["epoch"], history["val_loss"], label="validation (at full beta)")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss per sample")
    ax_loss.legend()
    ax_kl.plot(history["epoch"], history["train_kl"], label="train KL")
    ax_kl.plot(history["epoch"], history["val_kl"], label="validation KL")
    ax_kl.set_xlabel("epoch")
    ax_kl.set_ylabel("KL per sample")
    weight_ax = ax_kl.twinx()
    weight_ax.plot(history["epoch"], history["kl_weight"], color="gray", linestyle=":", label="KL weight")
    weight_ax.set_ylabel("KL weight (effective beta)")
    ax_kl.legend(loc="upper left")
    weight_ax.legend(loc="upper right")
    return fig


def roc_pr_figure(curves: dict[str, dict[str, Any]]) -> plt.Figure:
    """ROC and PR curves of every score, overlaid, with ROC-AUC and average precision in the
    legend; baselines (names starting with baselines.FIGURE_PREFIX) dashed. ``curves``: by
    name, the evaluate stage's curves (metrics.roc_table, metrics.pr_table) and ranking metrics
    (metrics.ranking_metrics), drawn as scikit-learn's RocCurveDisplay and PrecisionRecallDisplay
    draw them."""
    fig, (ax_roc, ax_pr) = plt.subplots(1, 2, figsize=(12, 5.5), layout="tight")
    for name, c in curves.items():
        linestyle = "--" if name.startswith(FIGURE_PREFIX) else "-"
        ax_roc.plot(c["fpr"], c["tpr"], linestyle=linestyle, label=f"{name} (AUC = {c['roc_auc']:0.2f})")
        ax_pr.plot(c["recall"], c["precision"], linestyle=linestyle, drawstyle="steps-post",
                   label=f"{name} (AP = {c['pr_auc']:0.2f})")
    for ax in (ax_roc, ax_pr):
        ax.set(xlim=(-0.01, 1.01), ylim=(-0.01, 1.01), aspect="equal")
        ax.legend(fontsize=7)
    ax_roc.plot([0, 1], [0, 1], color="gray", linestyle=":")
    ax_roc.set(title="ROC", xlabel="false positive rate", ylabel="true positive rate")
    ax_pr.set(title="Precision-recall", xlabel="recall", ylabel="precision")
    return fig


def top_columns_figure(contributions: np.ndarray, names: list[str], scores: np.ndarray, score_name: str,
                       n_rows: int = 6, top: int = 5) -> plt.Figure:
    """The ``n_rows`` highest-scoring rows, each a bar chart of its ``top`` columns by
    contribution (``contributions``: (N, columns), as Detector.explain gives them)."""
    rows = np.argsort(-scores, kind="stable")[:n_rows]
    ncol = min(3, len(rows))
    nrow = -(-len(rows) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 2.4 * nrow), layout="tight", squeeze=False)
    for ax, row in zip(axes.flat, rows):
        best = np.argsort(-contributions[row], kind="stable")[:top][::-1]
        ax.barh([names[j] for j in best], contributions[row, best], color=ANOMALY_COLOR)
        ax.set_title(f"test row {row}: {score_name} {scores[row]:.4g}", fontsize=9)
        ax.tick_params(labelsize=8)
    for ax in axes.flat[len(rows):]:
        ax.set_visible(False)
    fig.supxlabel("contribution to the score (nats)", fontsize=9)
    return fig


def image_rows(rows: list[tuple[str, Any]], ncol: int) -> plt.Figure:
    """Rows of images (N, C, H, W) in [0, 1], one titled row each, tiled by torchvision."""
    import torch  # imported here: it costs seconds, and tabular runs draw no images
    from torchvision.utils import make_grid

    fig, axes = plt.subplots(len(rows), 1, figsize=(ncol * 0.75, len(rows) * 1.0 + 0.4), squeeze=False,
                             layout="tight")
    for ax, (title, images) in zip(axes[:, 0], rows):
        grid = make_grid(torch.as_tensor(images[:ncol]).clamp(0, 1), nrow=ncol, padding=2, pad_value=1.0)
        ax.imshow(grid.permute(1, 2, 0).numpy(), interpolation="nearest")
        ax.set_title(title, fontsize=9, loc="left")
        ax.axis("off")
    return fig


MAP_COLORMAP = "inferno"  # anomaly maps: dark where normal, bright where anomalous


def heat_maps(maps: np.ndarray, vmax: float) -> np.ndarray:
    """Anomaly maps (N, H, W) as RGB images (N, 3, H, W) in [0, 1] by MAP_COLORMAP, 0 to
    ``vmax`` (one scale for every map, so that brightness compares across images)."""
    scaled = np.clip(np.asarray(maps, dtype=np.float64) / max(float(vmax), 1e-12), 0.0, 1.0)
    return plt.get_cmap(MAP_COLORMAP)(scaled)[..., :3].transpose(0, 3, 1, 2).astype(np.float32)


def map_figure(images: np.ndarray, maps: np.ndarray, kinds: np.ndarray, masks: np.ndarray | None,
               known: np.ndarray | None, n: int, seed: int, vmax: float) -> plt.Figure:
    """Test images of each kind (normal first, then each anomaly kind) above their anomaly maps
    and, where known, their defect masks; ``n`` seeded picks of each. The maps share one
    scale, 0 to ``vmax`` (scoring.maps.map_scale)."""
    rng = np.random.default_rng(seed)
    rows = []
    for kind in sorted(set(kinds.tolist()), key=lambda k: (k != "normal", k)):
        pool = np.flatnonzero(kinds == kind)
        pick = np.sort(rng.choice(pool, size=min(n, len(pool)), replace=False))
        rows += [(f"{kind}: test images", images[pick]),
                 (f"anomaly maps (0 to {vmax:.3g})", heat_maps(maps[pick], vmax))]
        if masks is not None and kind != "normal" and known[pick].all():
            rows.append(("defect masks", masks[pick][:, None].astype(np.float32)))
    return image_rows(rows, n)


# Outcome of each sample at the threshold: (label, flagged) -> (name, colour, marker)
OUTCOMES = {
    (0, False): ("TN", NORMAL_COLOR, "o"),
    (1, True): ("TP", ANOMALY_COLOR, "^"),
    (0, True): ("FP", "tab:orange", "s"),
    (1, False): ("FN", "tab:purple", "v"),
}


def outcome_scatter(
    x: np.ndarray, labels: np.ndarray, scores: np.ndarray, threshold: float, title: str
) -> plt.Figure:
    """2-D data coloured by outcome at the threshold: true/false positives/negatives."""
    fig, ax = plt.subplots(figsize=(5.5, 5), layout="tight")
    flagged = flag(scores, threshold)
    for (label, is_flagged), (name, color, marker) in OUTCOMES.items():
        sel = (labels == label) & (flagged == is_flagged)
        ax.scatter(x[sel, 0], x[sel, 1], c=color, marker=marker, s=18, alpha=0.8,
                   label=f"{name} ({int(sel.sum())})")
    ax.set_xlabel("feature 1")
    ax.set_ylabel("feature 2")
    ax.set_title(title)
    ax.legend()
    return fig
