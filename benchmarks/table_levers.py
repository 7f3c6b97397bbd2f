"""Score levers for the tabular families, on the development halves only.

    python -m benchmarks.suite --data-root ../shared/datasets --development --tasks odds,synthetic
    python -m benchmarks.table_levers --data-root ../shared/datasets

The first command trains (or reads) the suite's VAEs of seeds 0, 1, 2 and caches their weights
under data/suite_cache; this one reads those weights and measures, per family, the mean
development ROC-AUC of k-NN scores in the VAE's coordinates that the package does not have,
beside the two it has (``latent_residual_knn``, ``joint_knn``) and PyOD's KNN and AutoEncoder
(their cached suite scores): which blocks the coordinates hold (the input x, the posterior mean
mu, the whitened residual r W, the encoder's hidden layer h), how the residual is scaled, the
k-th distance or the mean of the k, the reference rows, the seeds' ensemble, a scaled mean
with the squared residual, blocks at equal variance, the posterior's log-variance as a block,
one k-NN per block, a distance relative to the neighbours' own (a simplified LOF), scikit-learn's
LOF, an isolation forest in the same coordinates, alone and beside the k-NN, the input's block
mapped column by column to normal quantiles or by Yeo-Johnson's power transform (on every column,
or on the skewed ones only), and feature bagging of the input's block. Writes
reports/suite/development-table-levers.md (docs/suite-levers.md); ``--only`` measures a subset,
into another file.
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
from vae_anomaly.cli import run_main
from vae_anomaly.data.images import DATA_ROOT_ENV
from vae_anomaly.errors import UserError
from vae_anomaly.params import load_params
from vae_anomaly.studies import suite as S

log = logging.getLogger(__name__)

FAMILIES = ("odds", "synthetic")
SEEDS = (0, 1, 2)
OUT = Path("reports/suite/development-table-levers.md")
# Each candidate: the blocks of its coordinates, and options (lever below). "x": the input, "mu":
# the posterior mean, "r": the residual whitened with Ledoit-Wolf (as the package), "r_diag": the
# residual over each column's training std, "h": the encoder's hidden layer.
CANDIDATES: dict[str, dict[str, Any]] = {
    "mu + r, k-th (latent_residual_knn)": {"blocks": ["mu", "r"]},
    "x + mu + r, mean of k (joint_knn)": {"blocks": ["x", "mu", "r"], "mean": True},
    "x, k-th (PyOD's KNN)": {"blocks": ["x"]},
    "x, mean of k": {"blocks": ["x"], "mean": True},
    "x whitened, k-th": {"blocks": ["x_white"]},
    "mu + r, k = 1": {"blocks": ["mu", "r"], "k": 1},
    "mu + r, k = 3": {"blocks": ["mu", "r"], "k": 3},
    "mu + r, mean of k": {"blocks": ["mu", "r"], "mean": True},
    "mu + r, mean of 3": {"blocks": ["mu", "r"], "mean": True, "k": 3},
    "mu + r, mean of 10": {"blocks": ["mu", "r"], "mean": True, "k": 10},
    "x + mu + r, k-th": {"blocks": ["x", "mu", "r"]},
    "x/2 + mu + r, k-th": {"blocks": ["x/2", "mu", "r"]},
    "2x + mu + r, k-th": {"blocks": ["2x", "mu", "r"]},
    "x + r, mean of k": {"blocks": ["x", "r"], "mean": True},
    "x + mu + r_diag, mean of k": {"blocks": ["x", "mu", "r_diag"], "mean": True},
    "x + mu + r + h, mean of k": {"blocks": ["x", "mu", "r", "h"], "mean": True},
    "mu + r + h, mean of k": {"blocks": ["mu", "r", "h"], "mean": True},
    "mu standardised + r, k-th": {"blocks": ["mu_std", "r"]},
    "2 mu + r, k-th": {"blocks": ["2mu", "r"]},
    "r only, k-th": {"blocks": ["r"]},
    "x + mu + r, mean of k, reference train + val": {"blocks": ["x", "mu", "r"], "mean": True, "val_too": True},
    "x + mu + r, mean of k, + squared residual (scaled mean)": {"blocks": ["x", "mu", "r"], "mean": True,
                                                                 "plus_mse": True},
    "x + mu + r, mean of 3": {"blocks": ["x", "mu", "r"], "mean": True, "k": 3},
    "x + mu + r, mean of 10": {"blocks": ["x", "mu", "r"], "mean": True, "k": 10},
    "x + mu + r + log sigma^2, mean of k": {"blocks": ["x", "mu", "r", "logvar"], "mean": True},
    "x + mu + r, mean of 20": {"blocks": ["x", "mu", "r"], "mean": True, "k": 20},
    "x + mu + r, each block at unit variance, mean of k": {"blocks": ["x", "mu", "r"], "mean": True, "unit": True},
    "x, mu, r: three k-NN means, scaled mean": {"blocks": ["x", "mu", "r"], "mean": True, "separate": True},
    "x + mu + r, mean of k over the neighbours' own (relative density)": {"blocks": ["x", "mu", "r"], "mean": True,
                                                                          "relative": True},
    "x + mu + r, LOF (k = 20)": {"blocks": ["x", "mu", "r"], "lof": 20},
    "x + mu + r, isolation forest": {"blocks": ["x", "mu", "r"], "iforest": True},
    "x + mu + r, mean of k, + isolation forest (scaled mean)": {"blocks": ["x", "mu", "r"], "mean": True,
                                                                "plus_iforest": True},
    "x quantile-normal, mean of k": {"blocks": ["x_q"], "mean": True},
    "x quantile-normal + mu + r, mean of k": {"blocks": ["x_q", "mu", "r"], "mean": True},
    "x Yeo-Johnson, mean of k": {"blocks": ["x_yj"], "mean": True},
    "x Yeo-Johnson + mu + r, mean of k": {"blocks": ["x_yj", "mu", "r"], "mean": True},
    "x Yeo-Johnson where skewed + mu + r, mean of k": {"blocks": ["x_yj_skewed", "mu", "r"], "mean": True},
    "x feature-bagged + mu + r, mean of k, scaled mean of 10": {"blocks": ["x", "mu", "r"], "mean": True,
                                                                "bagged": 10},
}
ENSEMBLED = ("mu + r, k-th (latent_residual_knn)", "x + mu + r, mean of k (joint_knn)")
BASELINES = ("pyod_knn", "pyod_autoencoder")


def coordinates(model: Any, data: S.Prepared) -> dict[str, dict[str, np.ndarray]]:
    """Per split: the blocks candidates are built of (CANDIDATES), fitted on the training rows."""
    import torch
    from scipy.stats import skew
    from sklearn.preprocessing import PowerTransformer, QuantileTransformer

    from vae_anomaly.scoring.reference import as_float64, encode_and_reconstruct, fit_whitener, model_inputs

    raw = {}
    with torch.no_grad():
        for split in ("train", "val", "test"):
            x = torch.as_tensor(data.features[split], dtype=torch.float32)
            mu, residual = encode_and_reconstruct(model, x)
            hidden = model.encoder(model.features(model.filled(x)))
            raw[split] = {"x": as_float64(model_inputs(model, x)), "mu": as_float64(mu), "r_raw": as_float64(residual),
                          "h": as_float64(hidden), "logvar": as_float64(model.encode(x)[1])}
    train = raw["train"]
    # each column mapped through its training distribution: to normal quantiles (clipped outside the
    # training range), or by Yeo-Johnson's power transform (monotone, unclipped), both fitted on train
    quantile = QuantileTransformer(n_quantiles=min(1000, len(train["x"])), output_distribution="normal",
                                   random_state=0).fit(train["x"])
    power = PowerTransformer(method="yeo-johnson").fit(train["x"])
    # Yeo-Johnson only on the columns whose training skewness is beyond 1 in size (the usual rule of
    # thumb for a highly skewed distribution): a symmetric column, such as a Gaussian blob's, stays as is
    skewed = np.abs(skew(train["x"], axis=0)) > 1
    w_r, w_x = fit_whitener(train["r_raw"]), fit_whitener(train["x"])
    r_sd, mu_mean, mu_sd = train["r_raw"].std(axis=0) + 1e-8, train["mu"].mean(axis=0), train["mu"].std(axis=0) + 1e-8
    for blocks in raw.values():
        x_yj = power.transform(blocks["x"])
        blocks.update(x_q=quantile.transform(blocks["x"]), x_yj=x_yj, x_yj_skewed=np.where(skewed, x_yj, blocks["x"]),
                      r=blocks["r_raw"] @ w_r, r_diag=blocks["r_raw"] / r_sd, x_white=blocks["x"] @ w_x,
                      mu_std=(blocks["mu"] - mu_mean) / mu_sd, **{"x/2": blocks["x"] / 2, "2x": 2 * blocks["x"],
                                                                  "2mu": 2 * blocks["mu"]})
    return raw


def iforest(stack: Any) -> dict[str, np.ndarray]:
    """An isolation forest's scores (higher: more anomalous) of the validation and test rows, fitted on
    the training rows of the coordinates ``stack`` builds."""
    from sklearn.ensemble import IsolationForest

    forest = IsolationForest(n_estimators=200, random_state=0).fit(stack("train"))
    return {split: -forest.score_samples(stack(split)) for split in ("val", "test")}


def candidate_scores(blocks: dict[str, dict[str, np.ndarray]], lever: dict[str, Any], k: int) -> np.ndarray:
    """The candidate's test scores, on its validation scale (median 0, IQR 1, as ``combined``)."""
    from sklearn.neighbors import NearestNeighbors

    from vae_anomaly.scoring.combination import combined, fit_combination

    def stack(split: str, blocks_: list[str] = lever["blocks"]) -> np.ndarray:
        if lever.get("unit"):  # each block divided by the square root of its total training variance
            return np.hstack([blocks[split][b] / np.sqrt(blocks["train"][b].var(axis=0).sum() + 1e-12) for b in blocks_])
        return np.hstack([blocks[split][b] for b in blocks_])

    def knn(blocks_: list[str]) -> dict[str, np.ndarray]:
        reference = np.vstack([stack("train", blocks_)] + ([stack("val", blocks_)] if lever.get("val_too") else []))
        n = min(lever.get("k", k), len(reference) - 1)
        neighbors = NearestNeighbors(n_neighbors=n).fit(reference)
        if lever.get("relative"):  # each reference row's own mean distance to its k others
            own = neighbors.kneighbors(reference, n_neighbors=n + 1)[0][:, 1:].mean(axis=1)
        out = {}
        for split in ("val", "test"):
            d, index = neighbors.kneighbors(stack(split, blocks_))
            out[split] = d.mean(axis=1) if lever.get("mean") else d[:, -1]
            if lever.get("relative"):  # over the neighbours' own mean distance (a simplified LOF)
                out[split] = out[split] / (own[index].mean(axis=1) + 1e-12)
        return out

    if lever.get("lof"):
        from sklearn.neighbors import LocalOutlierFactor

        lof = LocalOutlierFactor(n_neighbors=lever["lof"], novelty=True).fit(stack("train"))
        parts = {split: {"lof": -lof.score_samples(stack(split))} for split in ("val", "test")}
    elif lever.get("iforest"):
        parts = {split: {"iforest": v} for split, v in iforest(stack).items()}
    elif lever.get("bagged"):
        # feature bagging (Lazarevic & Kumar 2005): each member's k-NN sees mu, r W and a random
        # subset of between half and all but one of the input's columns; their scaled mean
        rng, d = np.random.default_rng(0), blocks["train"]["x"].shape[1]
        blocks = {split: dict(arrays) for split, arrays in blocks.items()}  # the subsets stay local (stack and knn read this copy)
        members = {}
        for member in range(lever["bagged"]):
            columns = rng.choice(d, size=rng.integers(max(1, d // 2), max(2, d)), replace=False)
            for split in blocks:
                blocks[split][f"x_bag{member}"] = blocks[split]["x"][:, columns]
            members[f"bag{member}"] = knn([f"x_bag{member}", "mu", "r"])
        parts = {split: {m: members[m][split] for m in members} for split in ("val", "test")}
    elif lever.get("separate"):
        per_block = {b: knn([b]) for b in lever["blocks"]}
        parts = {split: {b: per_block[b][split] for b in per_block} for split in ("val", "test")}
    else:
        nearest = knn(lever["blocks"])
        parts = {split: {"knn": nearest[split]} for split in ("val", "test")}
    if lever.get("plus_mse"):
        for split in parts:
            parts[split]["mse"] = np.square(blocks[split]["r_raw"]).mean(axis=1)
    if lever.get("plus_iforest"):
        for split, v in iforest(stack).items():
            parts[split]["iforest"] = v
    return combined(parts["test"], fit_combination(parts["val"], list(parts["val"])))


def task_levers(task: S.Task, suite: S.Suite, cache: Path, candidates: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Each candidate's development ROC-AUC on ``task``, the mean over the cached VAEs of SEEDS, and
    the seeds' ensembles (the mean of their scaled scores) of ENSEMBLED."""
    from sklearn.metrics import roc_auc_score

    from vae_anomaly.model.vae import load_model

    data = S.prepare(task, suite.split_seed)
    dev = data.development
    labels, k = data.labels[dev], task.params["score"]["knn_neighbors"]
    if not all(model_path(task, seed, data, cache).is_file() for seed in SEEDS):
        raise UserError(f"{task.name}: the suite's VAEs of seeds {SEEDS} are not cached: run this script's first command")
    runs = S.task_scores(task, suite, "cpu", cache)[1]  # the cached baselines' scores, PyOD's KNN and AutoEncoder
    aucs: dict[str, list[float]] = {}
    ensembles: dict[str, list[np.ndarray]] = {name: [] for name in ENSEMBLED if name in candidates}
    for seed, run in zip(SEEDS, runs):
        model = load_model(model_path(task, seed, data, cache)).eval()
        blocks = coordinates(model, data)
        for name, lever in candidates.items():
            scores = candidate_scores(blocks, lever, k)
            aucs.setdefault(name, []).append(roc_auc_score(labels, scores[dev]))
            if name in ENSEMBLED:
                ensembles[name].append(scores[dev])
        for name in BASELINES:
            aucs.setdefault(name, []).append(roc_auc_score(labels, run[name][dev]))
    out = {name: float(np.mean(values)) for name, values in aucs.items()}
    for name, runs_scores in ensembles.items():
        out[f"{name} (seeds ensemble)"] = float(roc_auc_score(labels, np.mean(runs_scores, axis=0)))
    log.info("%s: %s", task.name, {name: round(v, 4) for name, v in out.items()})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", default=os.environ.get(DATA_ROOT_ENV, ""),
                        help=f"folder with odds/ (default: ${DATA_ROOT_ENV})")
    parser.add_argument("--output", type=Path, default=OUT, help=f"the report (default: {OUT})")
    parser.add_argument("--only", nargs="+", default=[], metavar="TEXT",
                        help="measure only the candidates whose names contain one of these (default: all)")
    args = parser.parse_args()
    if args.only and args.output == OUT:
        raise UserError(f"--only measures some of the candidates: give --output another file than {OUT}, "
                        "which holds them all")
    candidates = {name: lever for name, lever in CANDIDATES.items()
                  if not args.only or any(text in name for text in args.only)}
    suite = S.load_suite(yaml.safe_load(Path("benchmarks/suite.yaml").read_text()), load_params(resolve=False),
                         args.data_root.rstrip("/"))
    lines = ["# Tabular levers (development halves: for choosing, not for reporting)", "",
             f"Mean development ROC-AUC over each family's tasks and the cached VAEs of seeds {list(SEEDS)} "
             "(python -m benchmarks.table_levers; docs/suite-levers.md). x: the standardised input, mu: the "
             "posterior mean, r: the residual whitened by the training residuals' Ledoit-Wolf precision, "
             "r_diag: the residual over each column's training std, h: the encoder's hidden layer; k = 5 "
             "unless named.", ""]
    per_task: dict[str, dict[str, float]] = {}
    for family in FAMILIES:
        per_task.update({t.name: task_levers(t, suite, CACHE, candidates) for t in suite.tasks if t.family == family})
    for family in (*FAMILIES, "both"):
        names = [t for t in per_task if family == "both" or t.startswith(f"{family}/")]
        title = f"all {len(names)} tabular tasks" if family == "both" else f"{family} ({len(names)} tasks)"
        lines += section(title, {c: np.mean([per_task[t][c] for t in names]) for c in per_task[names[0]]})
    write_report(lines, args.output)


if __name__ == "__main__":
    run_main(main)
