"""PyOD's AutoEncoder and VAE on this project's training budget, so that the comparison with
our VAE is fair to them: the same training rows, network widths, batch size, learning rate and
maximum epochs, and the same early stopping on the validation split (PyOD has none: it trains
a fixed number of epochs). Their layers are plain Linear + ReLU, as ours (PyOD's defaults add
dropout and batch norm). PyOD's VAE is scored on the reconstruction from the posterior mean,
not from one sampled z as PyOD does, so its ranking carries no sampling noise.

Imported only when a deep baseline runs: PyOD's deep models import torch.
"""
from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from pyod.models.auto_encoder import AutoEncoder
from pyod.models.vae import VAE, vae_loss
from pyod.utils.torch_utility import TorchDataset

from ..model.optim import FusedAdam
from ..model.vae import resolve_device

log = logging.getLogger(__name__)


class EarlyStopping:
    """Replaces PyOD's fixed-length training loop (``train``) with ours: after each epoch the
    loss on ``validation_data``; stop after ``patience`` epochs without improvement and
    restore the best epoch's weights, as model/training.py's fit does."""

    validation_data: np.ndarray
    patience: int

    def training_prepare(self) -> None:
        """PyOD's, with our FusedAdam for the torch.optim.Adam it builds (``optimizer_params``
        is empty, so PyOD's Adam has torch's defaults but the learning rate): the same update,
        fused, as our VAE's optimizer (model/training.py), and without torch.optim's import of
        torch._dynamo (model/optim.py). PyOD has no option for either."""
        self.model = self.model.to(self.device)
        self.optimizer = FusedAdam(self.model.parameters(), lr=self.lr)
        self.model.train()

    def validation_loss(self, x: torch.Tensor) -> float:
        raise NotImplementedError

    def train(self, train_loader: torch.utils.data.DataLoader) -> None:
        x_val = torch.as_tensor(self.validation_data, dtype=torch.float32, device=self.device)
        batches = shuffled_batches(train_loader)
        best_loss, best_state, since_best = math.inf, None, 0
        for epoch in range(self.epoch_num):
            self.model.train()
            for batch in batches():
                self.training_forward(batch)
            self.model.eval()
            with torch.no_grad():
                loss = self.validation_loss(x_val)
            if loss < best_loss:
                best_loss, best_state, since_best = loss, copy.deepcopy(self.model.state_dict()), 0
            else:
                since_best += 1
                if since_best >= self.patience:
                    break
        self.epochs_run_ = epoch + 1
        log.info("%s: %d epochs, best validation loss %.4g", type(self).__name__, self.epochs_run_, best_loss)
        if best_state is not None:
            self.model.load_state_dict(best_state)


def shuffled_batches(loader: torch.utils.data.DataLoader) -> Callable[[], Iterator[torch.Tensor]]:
    """Each call, one epoch of the batches PyOD's training loader would give (shuffled, its
    batch size, the last partial batch dropped), each taken from one float32 copy of the data
    by a single indexing. PyOD's loader builds every batch from one tensor per row, and its
    collation cost more than the step itself (docs/performance.md).
    The shuffle is a torch.randperm from the global generator PyOD seeds (random_state), so
    the batches differ from PyOD's own, as another seed's would, not in kind."""
    data = loader.dataset
    if not isinstance(data, TorchDataset) or data.mean is not None or data.y is not None:
        return lambda: iter(loader)  # standardised or labelled rows: PyOD's own loader
    x = torch.as_tensor(data.X, dtype=data.X_dtype)
    size, n_full = loader.batch_size, len(x) // loader.batch_size

    def epoch() -> Iterator[torch.Tensor]:
        order = torch.randperm(len(x))
        return (x[order[b * size:(b + 1) * size]] for b in range(n_full))

    return epoch


def row_distances(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Euclidean distance between the rows of ``x`` and ``y``: what PyOD's
    pairwise_distances_no_broadcast computes, in NumPy, because PyOD's is a numba function
    compiled on its first call in every process, which costs more than the scoring itself."""
    return np.sqrt(np.square(y - x).sum(axis=1))


class EarlyStoppedAutoEncoder(EarlyStopping, AutoEncoder):
    def validation_loss(self, x: torch.Tensor) -> float:
        return float(self.criterion(self.model(x), x))

    def evaluating_forward(self, batch_data: torch.Tensor) -> np.ndarray:
        """Distance of x to its reconstruction, as PyOD's (see row_distances)."""
        x_recon = self.model(batch_data.to(self.device))
        return row_distances(batch_data.numpy(), x_recon.cpu().numpy())


class EarlyStoppedVAE(EarlyStopping, VAE):
    def validation_loss(self, x: torch.Tensor) -> float:
        x_recon, mu, logvar = self.model(x)
        return float(vae_loss(x, x_recon, mu, logvar, beta=self.beta, capacity=self.capacity,
                              logvar_clip=self.logvar_clip_))

    def evaluating_forward(self, batch_data: torch.Tensor) -> np.ndarray:
        """Distance of x to the reconstruction from the posterior mean."""
        mu, _ = self.model.encode(batch_data.to(self.device))
        x_recon = self.model.decode(mu)
        return row_distances(batch_data.numpy(), x_recon.cpu().numpy())


def deep_baseline(name: str, budget: dict[str, Any], n_features: int, seed: int, device: str, verbose: int) -> EarlyStopping:
    """An unfitted deep baseline ``name`` with the ``budget`` of our VAE: ``hidden_dims``,
    ``latent_dim``, ``epochs``, ``batch_size``, ``lr``, ``patience`` and ``validation_data``;
    on ``device``, a value of train.device (auto: CUDA when there is one)."""
    common = dict(
        preprocessing=False, epoch_num=budget["epochs"], batch_size=budget["batch_size"], lr=budget["lr"],
        optimizer_params={}, batch_norm=False, dropout_rate=0.0, random_state=seed, device=str(resolve_device(device)),
        verbose=verbose,
    )
    hidden = list(budget["hidden_dims"])
    if name == "autoencoder":
        detector = EarlyStoppedAutoEncoder(hidden_neuron_list=[*hidden, budget["latent_dim"]], **common)
    elif name == "vae":
        # capacity infinite: PyOD's default 0 clamps the KL to 0 and trains an autoencoder.
        # beta = 1/D makes PyOD's loss (mean-per-feature MSE + beta KL) the negative ELBO of a
        # Gaussian decoder with variance 1/2, divided by D: our Gaussian VAE's objective.
        detector = EarlyStoppedVAE(
            encoder_neuron_list=hidden, decoder_neuron_list=list(reversed(hidden)),
            latent_dim=budget["latent_dim"], beta=1.0 / n_features, capacity=math.inf, **common,
        )
    else:
        raise ValueError(f"{name!r} is not a deep baseline")
    detector.validation_data = budget["validation_data"]
    detector.patience = budget["patience"]
    return detector
