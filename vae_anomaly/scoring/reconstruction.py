"""Reconstruction quality per sample: MSE, and SSIM for images.

The reconstruction is the decoder's mean at the posterior mean, as in the
``reconstruction_mse`` score, so the two agree.
"""
from __future__ import annotations

import numpy as np
import torch
from skimage.metrics import structural_similarity

from ..model.batches import batches, model_device
from ..model.vae import VAE
from .scores import reconstruction_mse


@torch.no_grad()
def reconstruction_quality(model: VAE, x: np.ndarray, batch_size: int) -> dict[str, np.ndarray]:
    """Per-sample MSE of every row of ``x``; for images (N, C, H, W) in [0, 1] also the SSIM
    between each image and its reconstruction."""
    model.eval()
    mse, ssim = [], []
    for xb in batches(x, batch_size, model_device(model)):
        mse.append(reconstruction_mse(model, xb, None).cpu().numpy())
        if xb.ndim == 4:
            mu, _ = model.encode(xb)
            recon = model.mean(model.decode(mu)).clamp(0, 1)  # pixels live in [0, 1]
            ssim.append(image_ssim(xb.cpu().numpy(), recon.cpu().numpy()))
    out = {"mse": np.concatenate(mse).astype(np.float64)}
    if ssim:
        out["ssim"] = np.concatenate(ssim)
    return out


def image_ssim(images: np.ndarray, reconstructions: np.ndarray) -> np.ndarray:
    """SSIM (Wang et al. 2004) of each (C, H, W) image in [0, 1] with its reconstruction,
    by scikit-image with its default uniform 7x7 window (or the largest odd one that fits)."""
    _, channels, height, width = images.shape
    side = min(height, width)
    win_size = min(7, side if side % 2 else side - 1)
    return np.array([
        structural_similarity(
            a[0] if channels == 1 else a, b[0] if channels == 1 else b, data_range=1.0,
            win_size=win_size, channel_axis=None if channels == 1 else 0,
        )
        for a, b in zip(images.astype(np.float64), reconstructions.astype(np.float64))
    ])
