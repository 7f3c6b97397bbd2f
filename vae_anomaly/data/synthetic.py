"""Data made here: the synthetic table (a linear-Gaussian latent model with three kinds of
injected anomalies) and PyOD's 2-D toy data, each as standardised splits."""
from __future__ import annotations

from typing import Any

import numpy as np

from .sizing import validation_rows
from .splits import NORMAL, OUTLIER, Splits, standardize


def make_synthetic(cfg: dict[str, Any], seed: int) -> Splits:
    """Linear-Gaussian latent data with the anomalies of ``cfg["anomalies"]`` injected into
    the test set, standardised.

    Normal data: z ~ N(0, I_k), x = W z + b + eps, eps ~ N(0, noise_std^2 I), so the features
    are correlated through a k-dimensional latent, as real measurements are. Each anomaly
    kind, in the list's order, takes its ``share`` of the test set; each of its samples starts
    from a fresh normal sample and changes ``n_features`` randomly chosen features (recorded
    in ``Splits.test_changed``, the truth the explanations are measured against):
    - mean_shift: shifted by +-magnitude feature standard deviations;
    - correlation_break: replaced by independent noise with the feature's own mean and std,
      so the marginal is unchanged and only the correlation with the others is lost;
    - variance_explosion: extra noise with ``scale`` times the feature's std.
    """
    rng = np.random.default_rng(seed)
    d, k = cfg["n_features"], cfg["latent_dim"]
    weights = rng.normal(size=(d, k))
    bias = rng.normal(size=d)
    feature_std = np.sqrt((weights**2).sum(axis=1) + cfg["noise_std"] ** 2)

    def normal_samples(n: int) -> np.ndarray:
        z = rng.normal(size=(n, k))
        return z @ weights.T + bias + cfg["noise_std"] * rng.normal(size=(n, d))

    def pick_features(n: int, m: int) -> np.ndarray:
        # m distinct features per sample: the first m of a random permutation of each row.
        return np.argsort(rng.random((n, d)), axis=1)[:, :m]

    counts = [int(round(anomaly["share"] * cfg["n_test"])) for anomaly in cfg["anomalies"]]
    n_normal = cfg["n_test"] - sum(counts)
    train, val = normal_samples(cfg["n_train"]), normal_samples(cfg["n_val"])

    parts, kinds = [normal_samples(n_normal)], [NORMAL] * n_normal
    changed = [np.zeros((n_normal, d), dtype=bool)]
    for anomaly, n in zip(cfg["anomalies"], counts):
        kind = anomaly["kind"]
        x = normal_samples(n)
        cols = pick_features(n, anomaly["n_features"])
        rows = np.arange(n)[:, None]
        changed.append(np.zeros((n, d), dtype=bool))
        changed[-1][rows, cols] = True
        sd = feature_std[cols]
        if kind == "mean_shift":
            sign = rng.choice([-1.0, 1.0], size=cols.shape)
            x[rows, cols] += sign * anomaly["magnitude"] * sd
        elif kind == "correlation_break":
            x[rows, cols] = bias[cols] + sd * rng.normal(size=cols.shape)
        else:  # variance_explosion
            x[rows, cols] += anomaly["scale"] * sd * rng.normal(size=cols.shape)
        parts.append(x)
        kinds += [kind] * n

    order = rng.permutation(cfg["n_test"])
    test_kind = np.array(kinds)[order]
    splits = Splits(
        train, val, np.concatenate(parts)[order],
        (test_kind != NORMAL).astype(np.int64), test_kind, test_changed=np.concatenate(changed)[order],
    )
    return standardize(splits)


def make_blobs2d(cfg: dict[str, Any], seed: int, val_fraction: float) -> Splits:
    """PyOD's ``generate_data``, the data of PyOD's VAE example: a Gaussian blob of inliers
    and uniformly scattered outliers, ``contamination`` of both train and test. Standardised
    with the (contaminated) training statistics, as PyOD's VAE does by default."""
    from pyod.utils.data import generate_data  # imported here: pyod is slow to import

    x_train, x_test, y_train, y_test = generate_data(
        n_train=cfg["n_train"], n_test=cfg["n_test"], n_features=cfg["n_features"],
        contamination=cfg["contamination"], random_state=seed,
    )
    # generate_data puts the outliers last; shuffle before carving out the validation split.
    # Validation is then contaminated like training: the pipeline stays unsupervised.
    order = np.random.default_rng(seed).permutation(len(x_train))
    n_val, adapted = validation_rows(
        len(order), val_fraction, f"data.blobs2d.n_train = {cfg['n_train']}", "raise data.blobs2d.n_train"
    )
    val, train = order[:n_val], order[n_val:]
    y_train, y_test = y_train.astype(np.int64), y_test.astype(np.int64)
    splits = Splits(
        x_train[train], x_train[val], x_test,
        y_test, np.where(y_test == 1, OUTLIER, NORMAL),
        train_label=y_train[train], val_label=y_train[val], adaptations=adapted,
    )
    return standardize(splits)
