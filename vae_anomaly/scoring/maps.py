"""Where an image is anomalous: one map per image, in its pixels (docs/images.md, "Anomaly
maps").

The map is the evidence of the likelihood scores before it is summed away: each pixel's
-log p(x|z) under the decoder at the posterior mean (model.nll_per_value: the binary
cross-entropy of the Bernoulli decoder), averaged over the channels and low-passed over height
and width by a Gaussian of MAP_SIGMA pixels. Its sum over the pixels, times the channels, is
the reconstruction term of ``negative_elbo`` at the posterior mean (the low-pass, with
reflected edges, keeps the sum), so the map says which pixels that score comes from. Chosen on
the development defects of the defect benchmark (docs/images.md) over the squared residual
that ``smoothed_reconstruction_mse`` averages, which ranked the defect pixels below it.
"""
from __future__ import annotations

import numpy as np
import torch

from ..model.batches import batches, model_device
from ..model.vae import VAE

# The low-pass of the maps, in pixels: chosen between 0 and 1 on the development defects.
MAP_SIGMA = 1.0


def pixel_nll(model: VAE, x: torch.Tensor) -> np.ndarray:
    """(N, H, W): each pixel's -log p(x|z = mu), averaged over the channels."""
    mu, _ = model.encode(x)
    return model.nll_per_value(x, model.decode(mu)).mean(dim=1).detach().cpu().numpy()


@torch.no_grad()
def anomaly_maps(model: VAE, x: np.ndarray, batch_size: int, progress: bool = True) -> np.ndarray:
    """float32 (N, H, W): each image's anomaly map (module docstring), higher = more anomalous."""
    from scipy.ndimage import gaussian_filter  # imported here: only images need it

    if np.ndim(x) != 4:
        raise ValueError(f"anomaly maps need images (N, C, H, W), got shape {np.shape(x)}")
    model.eval()
    parts = [gaussian_filter(pixel_nll(model, xb), sigma=(0, MAP_SIGMA, MAP_SIGMA), mode="reflect")
             for xb in batches(x, batch_size, model_device(model), progress="maps" if progress else None)]
    height, width = np.shape(x)[2:]
    return np.concatenate(parts).astype(np.float32) if parts else np.empty((0, height, width), np.float32)


# The heat maps' scale: a map value above all but this share of the training images' pixels
# is drawn at full brightness (predict --maps, the plot stage's figure).
MAP_SCALE_QUANTILE = 0.999


def map_scale(train_maps: np.ndarray) -> float:
    """The value a heat map saturates at: the MAP_SCALE_QUANTILE of the training maps' pixels."""
    return float(np.quantile(train_maps, MAP_SCALE_QUANTILE)) if np.size(train_maps) else 1.0
