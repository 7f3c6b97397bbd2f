"""The KL weight schedule (effective beta per epoch), kept free of torch so that params
validation can check a schedule before any stage starts."""
from __future__ import annotations

from typing import Any


def kl_weight(epoch: int, beta: float, train: dict[str, Any]) -> float:
    """The KL weight (effective beta) for 0-based ``epoch``.

    - constant: beta throughout.
    - monotonic: linear warm-up from 0 at epoch 0 to beta at epoch ``kl_warmup_epochs``,
      then beta (Bowman et al. 2016).
    - cyclical: the epochs are split into ``kl_cycles`` equal periods; in each, the weight
      rises linearly from 0 over the first ``kl_ramp_fraction`` of the period, then holds
      beta (Fu et al. 2019, "Cyclical Annealing Schedule", eq. 6).
    """
    schedule = train["kl_schedule"]
    if schedule == "constant":
        return beta
    if schedule == "monotonic":
        warmup = train["kl_warmup_epochs"]
        return beta if warmup == 0 else beta * min(1.0, epoch / warmup)
    period = train["epochs"] / train["kl_cycles"]
    tau = (epoch % period) / period
    return beta * min(1.0, tau / train["kl_ramp_fraction"])


def reaches_full_beta(train: dict[str, Any]) -> bool:
    """Whether some epoch of ``train`` runs at the full KL weight. Early stopping and the
    choice of the best weights count only those epochs, so without one neither happens."""
    return any(kl_weight(epoch, 1.0, train) >= 1.0 for epoch in range(train["epochs"]))
