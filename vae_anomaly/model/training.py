"""Training: the loop with early stopping on validation loss, under the KL weight schedule."""
from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from ..cli import show_progress
from ..errors import UserError
from ..io import require_finite
from .batches import batches
from .optim import FusedAdam
from .schedules import kl_weight
from .vae import VAE

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)


@torch.no_grad()
def evaluate_loss(model: VAE, x: torch.Tensor, batch_size: int) -> tuple[float, float]:
    """Mean reconstruction NLL and mean KL over ``x``."""
    model.eval()
    sums = torch.zeros(2, device=x.device)
    for batch in batches(x, batch_size):
        r, k = model.loss_terms(batch)
        sums += torch.stack([r.sum(), k.sum()])
    recon, kl = (sums / len(x)).tolist()  # read once: no wait on the device per batch
    return recon, kl


def check_finite(batch_sums: torch.Tensor, weight: float, batch_sizes: list[int], epoch: int) -> None:
    """Raise a UserError naming the first batch of ``epoch`` whose loss was not finite, from
    each batch's summed reconstruction NLL and KL (``batch_sums``, one row per batch)."""
    finite = torch.isfinite(batch_sums).all(dim=1)
    if bool(finite.all()):
        return
    b = int((~finite).nonzero()[0])
    loss = (batch_sums[b, 0] + weight * batch_sums[b, 1]).item() / batch_sizes[b]
    raise UserError(
        f"training loss became {loss} at epoch {epoch + 1}, batch {b + 1}; "
        "likely causes: train.lr too high, or model.beta too large for the data"
    )


def fit(
    model: VAE,
    train_x: np.ndarray,
    val_x: np.ndarray,
    beta: float,
    train: dict[str, Any],
    device: torch.device,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> list[dict[str, float]]:
    """Train ``model`` in place; return one history row per epoch, each also handed to
    ``on_epoch`` as the epoch ends (the train stage logs it with DVCLive).

    Validation loss is the objective at the full beta, so epochs are comparable while the
    KL weight anneals. Early stopping only counts epochs trained at the full beta; the
    weights of the best such epoch are restored at the end.
    """
    generator = torch.Generator().manual_seed(train["seed"])
    xt = torch.as_tensor(train_x, device=device)
    xv = torch.as_tensor(val_x, device=device)
    # fused: one pass over each parameter per step instead of a dozen elementwise ops, without
    # torch.optim's import of torch._dynamo (optim.py, docs/performance.md).
    optimizer = FusedAdam(model.parameters(), lr=train["lr"])
    batch_size = train["batch_size"]
    n_batches = math.ceil(len(xt) / batch_size)
    batch_sizes = [min(batch_size, len(xt) - b * batch_size) for b in range(n_batches)]
    history: list[dict[str, float]] = []
    best_loss, best_state, since_best = math.inf, None, 0

    # One bar, on a terminal only; log lines (early stopping) are printed above it, not into it.
    with logging_redirect_tqdm(), tqdm(range(train["epochs"]), desc="train", unit="epoch",
                                       disable=not show_progress()) as epochs:
        for epoch in epochs:
            weight = kl_weight(epoch, beta, train)
            model.train()
            order = torch.randperm(len(xt), generator=generator).to(device)
            # Summed reconstruction NLL and KL of each batch, kept on the device and read once
            # per epoch, so the loop never waits for the device mid-epoch.
            batch_sums = torch.zeros(n_batches, 2, device=device)
            for b in range(n_batches):
                idx = order[b * batch_size : (b + 1) * batch_size]
                recon, kl = model.loss_terms(xt[idx])
                loss = (recon + weight * kl).mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                batch_sums[b] = torch.stack([recon.detach().sum(), kl.detach().sum()])
            check_finite(batch_sums, weight, batch_sizes, epoch)
            train_recon, train_kl = (batch_sums.sum(dim=0) / len(xt)).tolist()
            val_recon, val_kl = evaluate_loss(model, xv, batch_size)
            row = {
                "epoch": epoch + 1,
                "kl_weight": weight,
                "train_loss": train_recon + weight * train_kl,
                "train_recon": train_recon,
                "train_kl": train_kl,
                "val_loss": val_recon + beta * val_kl,
                "val_recon": val_recon,
                "val_kl": val_kl,
            }
            # A NaN never compares below the best, so it would end training as if patience ran out.
            require_finite(
                np.array(row["val_loss"]), f"the validation loss at epoch {epoch + 1}",
                "the training loss was finite, so the validation split holds values the model "
                "cannot fit: check the data (reports/data_summary.json), or lower train.lr",
            )
            history.append(row)
            if on_epoch is not None:
                on_epoch(row)
            epochs.set_postfix(train=f"{row['train_loss']:.3f}", val=f"{row['val_loss']:.3f}", refresh=False)
            if weight < beta:
                continue  # still annealing: the objective is not yet the one we stop on
            if row["val_loss"] < best_loss:
                best_loss, best_state, since_best = row["val_loss"], copy.deepcopy(model.state_dict()), 0
            else:
                since_best += 1
                if since_best >= train["patience"]:
                    log.info(
                        "early stopping after epoch %d: validation loss has not improved for %d "
                        "epochs (best %.4f)", epoch + 1, since_best, best_loss,
                    )
                    break
    if best_state is not None:
        model.load_state_dict(best_state)
    return history
