"""Per-sample anomaly scores (one registry), the training reference, latent statistics, reconstruction quality, combination and thresholds."""
