"""The prepare stage's picture of its data: example images, or a scatter of tabular samples
(saved cropped to what it draws: ``io.save_figure(..., crop=True)``)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only, no screen needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .splits import Splits  # noqa: E402

NORMAL_COLOR, ANOMALY_COLOR = "tab:green", "tab:red"  # as in the plot stage's figures
N_EXAMPLES = 32  # images per panel, 8 per row


def examples_figure(splits: Splits) -> plt.Figure:
    """Image sources: the first images of each split; tabular sources: a scatter."""
    return image_examples(splits) if splits.train.ndim == 4 else tabular_scatter(splits)


def image_examples(splits: Splits) -> plt.Figure:
    """Grids of training images, normal test images and anomalous test images."""
    import torch
    from torchvision.utils import make_grid

    anomalous = splits.test_label == 1
    kinds = sorted(set(splits.test_kind[anomalous].tolist()))
    panels = [
        ("training set", splits.train),
        ("test set, normal", splits.test[~anomalous]),
        ("test set, anomalous" + (f": {', '.join(kinds)}" if 0 < len(kinds) <= 3 else ""),
         splits.test[anomalous]),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.8))
    for ax, (title, images) in zip(axes, panels):
        ax.set_axis_off()
        ax.set_title(f"{title} ({len(images):,})", fontsize=10)
        if len(images) == 0:
            ax.text(0.5, 0.5, "none", ha="center", va="center", transform=ax.transAxes)
            continue
        grid = make_grid(torch.from_numpy(images[:N_EXAMPLES]), nrow=8, padding=1, pad_value=1.0)
        ax.imshow(grid[0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    fig.tight_layout()
    return fig


def tabular_scatter(splits: Splits) -> plt.Figure:
    """Training and test samples, anomalies in red: the features themselves for 2-D data,
    the one feature against the row number for 1-D data, otherwise their projection on the
    training split's first two principal components. A missing entry is drawn at 0 (the
    training mean, once standardised)."""
    train, test = np.nan_to_num(splits.train), np.nan_to_num(splits.test)
    mean = train.mean(axis=0)
    if train.shape[1] <= 2:
        basis, axis_name = np.eye(train.shape[1]), "feature {}"
    else:
        basis = np.linalg.svd(train - mean, full_matrices=False)[2][:2].T
        axis_name = "principal component {} of the training split"

    panels = [
        ("training split", train, splits.train_label),
        ("test split", test, splits.test_label),
    ]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5), sharex=True, sharey=True)
    for ax, (title, x, label) in zip(axes, panels):
        points = (x - mean) @ basis
        if points.shape[1] == 1:
            points = np.column_stack([points[:, 0], np.arange(len(x))])
        label = np.zeros(len(x), dtype=int) if label is None else label
        for value, color, name in ((0, NORMAL_COLOR, "normal"), (1, ANOMALY_COLOR, "anomaly")):
            chosen = points[label == value]
            if len(chosen):
                ax.scatter(*chosen.T, s=4, alpha=0.5, color=color,
                           label=f"{name} ({len(chosen):,})")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(axis_name.format(1))
        ax.legend(loc="best", fontsize=8, markerscale=3)
    axes[0].set_ylabel(axis_name.format(2) if splits.train.shape[1] > 1 else "row")
    fig.tight_layout()
    return fig
