"""Reconstruction quality per sample: MSE, and SSIM for images.

The reconstruction is the decoder's mean at the posterior mean, as in the
``reconstruction_mse`` score, so the two agree.
"""
from __future__ import annotations

import numpy as np
import torch

from ..model.batches import batches, model_device
from ..model.vae import VAE
from .scores import image_ssim, reconstruction_mse


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

