"""Every axis of every plot says what it shows."""
import numpy as np
import yaml

from conftest import ROOT
from vae_anomaly.plots import loss_curves, roc_pr_figure


def test_every_dvc_plot_labels_both_axes():
    plots = yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]
    curves = [next(iter(p.items())) for p in plots if isinstance(p, dict)]
    assert len(curves) == 5
    for name, spec in curves:
        assert spec.get("x_label") and spec.get("y_label"), name
        columns = [c for ys in spec["y"].values() for c in ([ys] if isinstance(ys, str) else ys)]
        assert "kl_weight" not in columns or columns == ["kl_weight"], name  # its own scale


def test_figures_label_every_axis_in_plain_words():
    rng = np.random.default_rng(0)
    labels = np.r_[np.zeros(20), np.ones(5)]
    fig = roc_pr_figure(labels, {"s": rng.normal(size=25) + labels})
    history = {k: np.arange(1.0, 4.0) for k in
               ("epoch", "train_loss", "val_loss", "train_kl", "val_kl", "kl_weight")}
    for figure in (fig, loss_curves(history)):
        for ax in figure.axes:
            shown = [ax.get_xlabel()] if ax.xaxis.get_visible() else []  # twinx hides its x axis
            for label in shown + [ax.get_ylabel()]:
                assert label and "Positive label" not in label, (figure, label)
