"""What each image score costs: milliseconds per image on one CPU thread, for the scores of the
one-class recipe and the others an image task computes, so that a detection gain can be set
against its time (docs/suite.md, "Cost").

    python -m benchmarks.score_costs [--images 4000] [--train 5400] [--threads 1]

The scores are those ``auto`` gives images (params.AUTO_SCORES), with params.yaml's ``score``
settings; the model is an untrained MLP VAE of the suite's one-class image tasks (784-400-20,
Bernoulli decoder) on random 28 x 28 images: a score's cost depends on the shapes, not on what
the weights learned. Each score is computed alone by ``scores.compute_scores`` (the function the
score stage and the suite call) after one warm-up call; the reference scores' k-NN index is
fitted on ``--train`` images first, and that fit is timed on its own row.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from vae_anomaly.model.vae import VAEConfig, build_model
from vae_anomaly.params import AUTO_SCORES, load_params
from vae_anomaly.scoring.reference import fit_reference
from vae_anomaly.scoring.registry import COMBINED
from vae_anomaly.scoring.scores import compute_scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=4000, help="images scored per score (default 4000)")
    parser.add_argument("--train", type=int, default=5400, help="training images of the k-NN reference")
    parser.add_argument("--threads", type=int, default=1, help="PyTorch threads (default 1, as a suite task)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = build_model(VAEConfig(input_shape=[1, 28, 28], hidden_dims=[400], latent_dim=20,
                                  likelihood="bernoulli")).eval()
    x_train = rng.random((args.train, 1, 28, 28), dtype=np.float32)
    x = rng.random((args.images, 1, 28, 28), dtype=np.float32)

    score = load_params(resolve=False)["score"]
    names = [name for name in AUTO_SCORES["images"]["names"] if name != COMBINED]  # combined: their mean
    start = time.perf_counter()
    reference = fit_reference(model, x_train, names, score["batch_size"], score["knn_neighbors"])
    fit_s = time.perf_counter() - start
    print(f"{'score':<30} {'s':>7} {'ms/image':>9}   ({args.images} images, {args.threads} thread(s))")
    print(f"{'latent_knn: fit the reference':<30} {fit_s:7.2f} {1000 * fit_s / args.train:9.3f}   (per training image)")
    for name in names:
        params = dict(score, names=[name])
        compute_scores(model, x[:256], params, seed=0, reference=reference, progress=False)  # warm-up
        start = time.perf_counter()
        compute_scores(model, x, params, seed=0, reference=reference, progress=False)
        seconds = time.perf_counter() - start
        print(f"{name:<30} {seconds:7.2f} {1000 * seconds / args.images:9.3f}")


if __name__ == "__main__":
    main()
