"""Every axis of every plot says what it shows."""
import numpy as np
import yaml
from sklearn.metrics import PrecisionRecallDisplay, RocCurveDisplay

from vae_anomaly.evaluation.metrics import pr_table, ranking_metrics, roc_table
from vae_anomaly.evaluation.plots import loss_curves, roc_pr_figure

from conftest import ROOT


def evaluated_curves(labels: np.ndarray, scores: dict[str, np.ndarray]) -> dict[str, dict]:
    """What the plot stage hands roc_pr_figure: the evaluate stage's curves and metrics."""
    return {name: {**roc_table(labels, s), **pr_table(labels, s), **ranking_metrics(labels, s)}
            for name, s in scores.items()}


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
    fig = roc_pr_figure(evaluated_curves(labels, {"s": rng.normal(size=25) + labels}))
    history = {k: np.arange(1.0, 4.0) for k in
               ("epoch", "train_loss", "val_loss", "train_kl", "val_kl", "kl_weight")}
    for figure in (fig, loss_curves(history)):
        for ax in figure.axes:
            shown = [ax.get_xlabel()] if ax.xaxis.get_visible() else []  # twinx hides its x axis
            for label in shown + [ax.get_ylabel()]:
                assert label and "Positive label" not in label, (figure, label)


def test_roc_pr_figure_draws_what_scikit_learn_draws():
    """The figure is drawn from the evaluate stage's curves, without scikit-learn: each line
    and legend entry as its RocCurveDisplay and PrecisionRecallDisplay draw them."""
    rng = np.random.default_rng(1)
    labels = np.r_[np.zeros(40), np.ones(10)]
    scores = {"s": rng.normal(size=50) + labels, "pyod_knn": rng.normal(size=50) + 2 * labels}
    ax_roc, ax_pr = roc_pr_figure(evaluated_curves(labels, scores)).axes
    for i, (name, s) in enumerate(scores.items()):
        for ax, display in ((ax_roc, RocCurveDisplay), (ax_pr, PrecisionRecallDisplay)):
            expected = display.from_predictions(labels, s, name=name).line_
            line = ax.lines[i]
            np.testing.assert_array_equal(line.get_xydata(), expected.get_xydata())
            assert (line.get_label(), line.get_drawstyle()) == (expected.get_label(), expected.get_drawstyle())
            assert line.get_linestyle() == ("--" if name.startswith("pyod_") else "-")
