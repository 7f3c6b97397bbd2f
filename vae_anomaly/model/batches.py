"""The one loop over a split in batches, shared by training's validation loss, the scores, the
training reference, the posterior statistics and the reconstruction quality."""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from tqdm import tqdm

from ..cli import show_progress


def batches(
    x: np.ndarray | torch.Tensor, batch_size: int, device: torch.device | str | None = None,
    progress: str | None = None,
) -> Iterator[torch.Tensor]:
    """The rows of ``x`` in consecutive batches of ``batch_size`` (the last one shorter), as
    tensors on ``device`` (where ``x`` lies, when None); ``progress`` names a bar over them,
    drawn on a terminal only. The same rows always make the same batches, so a score is the
    same whichever code asks for it."""
    xt = torch.as_tensor(x)
    starts = range(0, len(xt), batch_size)
    if progress is not None:
        starts = tqdm(starts, desc=progress, unit="batch", disable=not show_progress())
    for start in starts:
        batch = xt[start : start + batch_size]
        yield batch if device is None else batch.to(device)


def model_device(model: torch.nn.Module) -> torch.device:
    """Where ``model``'s weights lie, and so where its batches go."""
    return next(model.parameters()).device
