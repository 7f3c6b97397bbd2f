"""Small builders the tests share."""
from __future__ import annotations


def score_params(names: list[str], batch_size: int = 16, elbo_samples: int = 1,
                 iwae_samples: int = 8, k: int = 5) -> dict:
    """A ``score`` params section for calling vae_anomaly.scores.compute_scores directly."""
    return {"names": names, "batch_size": batch_size, "elbo_samples": elbo_samples,
            "iwae_samples": iwae_samples, "complexity_codec": "jpeg2000", "knn_neighbors": k,
            "regret_steps": 5, "regret_lr": 0.1, "combine": []}
