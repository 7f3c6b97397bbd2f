"""Training and scoring from params: the one code path that the train and score stages, the
Detector, the detection suite and the study share."""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from .data.sizing import capped_batch_size
from .data.splits import SPLITS
from .errors import UserError
from .model.training import fit, seed_everything
from .model.vae import VAE, VAEConfig, build_model
from .scoring.combination import combined, fit_combination
from .scoring.latent import active_dims_by_kl, posterior_statistics
from .scoring.reference import TrainingReference, fit_reference
from .scoring.scores import compute_scores

log = logging.getLogger(__name__)


def model_config(model: dict[str, Any], input_shape: tuple[int, ...], categorical: list[list[int]] = ()) -> VAEConfig:
    """The architecture of the ``model`` params section for data of ``input_shape`` whose
    categorical columns are the one-hot blocks ``categorical`` ([start, width] each)."""
    return VAEConfig(
        input_shape=list(input_shape),
        hidden_dims=model["hidden_dims"],
        latent_dim=model["latent_dim"],
        architecture=model["architecture"],
        conv_channels=model["conv_channels"],
        likelihood=model["likelihood"],
        kind=model["kind"],
        categorical=[list(block) for block in categorical],
    )


def check_data_fits_likelihood(likelihood: str, train_x: np.ndarray) -> None:
    """Bernoulli and the discretised logistic model pixel intensities in [0, 1]."""
    if likelihood in ("bernoulli", "discretized_logistic") and (train_x.min() < 0 or train_x.max() > 1):
        raise UserError(
            f"model.likelihood = {likelihood!r} needs data in [0, 1] (pixel intensities), but the "
            f"training data spans [{train_x.min():.3g}, {train_x.max():.3g}]; use 'gaussian'"
        )


def train_model(
    train_x: np.ndarray, val_x: np.ndarray, params: dict[str, Any], device: torch.device,
    on_epoch: Callable[[dict[str, float]], None] | None = None, categorical: list[list[int]] = (),
) -> tuple[VAE, list[dict[str, float]], dict[str, Any]]:
    """Build and fit the model of ``params`` (sections ``model`` and ``train``) on table rows
    whose categorical columns are the blocks ``categorical`` (ColumnEncoding.categorical_blocks),
    or images; return it, its history (one row per epoch, each also given to ``on_epoch`` as it
    ends) and the summary that ``train_metrics.json`` records."""
    model_p, train_p = params["model"], params["train"]
    config = model_config(model_p, train_x.shape[1:], categorical)
    check_data_fits_likelihood(config.likelihood, train_x)
    seed_everything(train_p["seed"])
    model = build_model(config).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("model (%d parameters) on %s:\n%s", n_params, device, model)

    batch_size, adapted = capped_batch_size("train.batch_size", train_p["batch_size"], len(train_x))
    history = fit(model, train_x, val_x, model_p["beta"], {**train_p, "batch_size": batch_size}, device, on_epoch)
    at_full_beta = [row for row in history if row["kl_weight"] >= model_p["beta"]] or history
    best = min(at_full_beta, key=lambda row: row["val_loss"])
    summary = {
        "epochs_run": len(history),
        "best_epoch": best["epoch"],
        "val_loss": best["val_loss"],
        "val_recon": best["val_recon"],
        "val_kl": best["val_kl"],
        "final_train_loss": history[-1]["train_loss"],
        "n_parameters": n_params,
        "adaptations": adapted,
        **posterior_collapse(model, val_x, batch_size),
    }
    return model, history, summary


def posterior_collapse(model: VAE, val_x: np.ndarray, batch_size: int) -> dict[str, Any]:
    """Active latent dimensions on the validation split, and whether the posterior collapsed:
    no dimension's KL to the prior, averaged over the samples, above the active-unit cut-off,
    so q(z|x) is (nearly) the prior for every x and the decoder ignores z (Bowman et al.
    2016; Lucas et al. 2019). Logged as a warning when it happens. Not defined for the plain
    autoencoder (no KL) or the Sparse VAE (whose KL does not measure use; see latent.py)."""
    if model.config.kind != "vae":
        return {"active_dims": None, "posterior_collapse": None}
    stats = posterior_statistics(model, val_x, batch_size)
    active = active_dims_by_kl(stats["kl_per_dim"])
    collapsed = active == 0
    if collapsed:
        log.warning(
            "posterior collapse: none of the %d latent dimensions carries information "
            "(mean KL per dimension %.2g nats on the validation split), so every input gets the "
            "same reconstruction and the scores mostly measure the input's norm; try a smaller "
            "model.beta, a KL warm-up (train.kl_schedule), or a likelihood that fits the data's "
            "scale (model.likelihood)", model.config.latent_dim, float(stats["kl_per_dim"].mean()),
        )
    return {"active_dims": active, "posterior_collapse": collapsed}


def training_reference(model: VAE, x_train: np.ndarray, score: dict[str, Any]) -> TrainingReference | None:
    """The reference of the reference scores of the ``score`` params section, fitted on the
    training rows ``x_train`` (``reference.fit_reference``); None when none is named."""
    reference = fit_reference(model, x_train, score["names"], score["batch_size"], score["knn_neighbors"])
    if reference is not None:
        log.info("reference scores: fitted on the posterior means and residuals of %d training samples", len(x_train))
    return reference


def score_splits(
    model: VAE, features: dict[str, np.ndarray], score: dict[str, Any], seed: int,
    splits: tuple[str, ...] = SPLITS, reference: TrainingReference | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """Every score of the ``score`` params section for each of ``splits``; the reference
    scores compare each split with ``features['train']`` (``reference``, its
    :func:`training_reference`: fitted here when not given), and ``combined`` scales its
    components by their values on ``features['val']``. Split i of SPLITS is scored with seed
    ``seed + i``, so its sampled scores never share noise."""
    if reference is None:
        reference = training_reference(model, features["train"], score)
    scales = None
    out = {}
    if "combined" in score["names"]:
        parts = {**score, "names": [name for name in score["names"] if name != "combined"]}
        val = compute_scores(model, features["val"], parts, seed=seed + SPLITS.index("val"), reference=reference)
        scales = fit_combination(val, score["combine"])
        log.info("combined: %s, each scaled by the (median, IQR) of its %d validation scores: %s",
                 " + ".join(score["combine"]), len(features["val"]), scales)
        if "val" in splits:
            val["combined"] = combined(val, scales)
            out["val"] = {name: val[name] for name in score["names"]}
    for i, split in enumerate(SPLITS):
        if split in splits and split not in out:
            out[split] = compute_scores(model, features[split], score, seed=seed + i, reference=reference, scales=scales)
    return {split: out[split] for split in SPLITS if split in splits}
