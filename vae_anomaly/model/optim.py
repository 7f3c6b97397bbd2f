"""Adam for every training loop here (ours, the deep baselines', likelihood regret's posterior
fits): ``torch.optim.Adam(fused=True)``'s update and state through its public functional form,
``torch.optim.adam.adam``, without the ``torch.optim.Optimizer`` around it.

Why not the class itself: each ``Optimizer`` method goes through ``torch._disable_dynamo``,
which imports ``torch._dynamo`` on first use, a compiler these loops never use; its cost in
time and memory is measured in docs/performance.md ("The optimizer"). The weights are the
class's, bit for bit (tests/model/test_training.py).
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch.optim.adam import adam


class FusedAdam:
    """Adam (Kingma & Ba 2015) with torch.optim.Adam's defaults and state, one fused update
    per step; ``zero_grad`` and ``step`` as an optimizer's."""

    def __init__(
        self, params: Iterable[torch.Tensor], lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
    ):
        self.params = list(params)
        self.lr, self.betas, self.eps = lr, betas, eps
        # torch.optim.Adam's state as it creates it on the first step (fused: a float32 step
        # count on the parameter's device).
        self.steps = [torch.zeros((), dtype=torch.float32, device=p.device) for p in self.params]
        self.exp_avgs = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.exp_avg_sqs = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """One update of the parameters that have a gradient, as torch.optim.Adam.step."""
        have = [i for i, p in enumerate(self.params) if p.grad is not None]
        adam(
            [self.params[i] for i in have], [self.params[i].grad for i in have],
            [self.exp_avgs[i] for i in have], [self.exp_avg_sqs[i] for i in have], [],
            [self.steps[i] for i in have], fused=True,
            amsgrad=False, beta1=self.betas[0], beta2=self.betas[1], lr=self.lr, weight_decay=0.0,
            eps=self.eps, maximize=False,
        )
