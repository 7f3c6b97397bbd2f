"""score: per-sample anomaly scores of every split, from the trained model; for the test split
also the posterior statistics and the reconstruction quality that evaluate summarises."""
from vae_anomaly.io import log, read_arrays, require_finite, run_stage, write_arrays
from vae_anomaly.latent import posterior_statistics
from vae_anomaly.models import load_model, resolve_device
from vae_anomaly.params import load_params
from vae_anomaly.reconstruction import reconstruction_quality
from vae_anomaly.scores import compute_scores, fit_training_codes

FEATURES = "data/prepared/features.npz"
MODEL = "data/model.pt"
SCORES_DIR = "data/scores"
SPLITS = ("train", "val", "test")


def main() -> None:
    params = load_params()
    score_p = params["score"]
    log.info("read params.yaml: score=%s", score_p)
    model = load_model(MODEL, resolve_device(params["train"]["device"]))
    features = read_arrays(FEATURES)
    training_codes = None
    if "latent_mahalanobis" in score_p["names"]:  # its Gaussian comes from the train split only
        training_codes = fit_training_codes(model, features["train"], score_p["batch_size"])
        log.info("latent_mahalanobis: Gaussian fitted to the posterior means of %d training samples",
                 len(features["train"]))
    for i, split in enumerate(SPLITS):
        scores = compute_scores(
            model, features[split], score_p["names"], score_p["batch_size"],
            score_p["elbo_samples"], seed=params["train"]["seed"] + i,
            iwae_samples=score_p["iwae_samples"], training_codes=training_codes,
            complexity_codec=score_p["complexity_codec"],
        )
        for name, values in scores.items():
            require_finite(values, f"score {name} of the {split} split",
                           "the model cannot score these rows: check reports/train_metrics.json "
                           f"and the data, or leave {name} out of score.names")
        write_arrays(f"{SCORES_DIR}/{split}.npz", **scores)
    batch_size = score_p["batch_size"]
    write_arrays(f"{SCORES_DIR}/test_latent.npz", **posterior_statistics(model, features["test"], batch_size))
    write_arrays(f"{SCORES_DIR}/test_reconstruction.npz",
                 **reconstruction_quality(model, features["test"], batch_size))


if __name__ == "__main__":
    run_stage(main)
