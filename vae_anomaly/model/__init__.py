"""The models (VAE, Sparse VAE, autoencoder), their likelihoods, training, KL schedules, optimiser and checkpoints."""
