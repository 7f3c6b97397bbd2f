"""train: fit the VAE on normal training data, early-stopped on the validation split."""
from vae_anomaly.io import log, read_arrays, run_stage, write_csv, write_json
from vae_anomaly.io import UserError
from vae_anomaly.models import VAEConfig, build_model, resolve_device, save_model
from vae_anomaly.params import load_params
from vae_anomaly.sizing import capped_batch_size
from vae_anomaly.training import fit, seed_everything

FEATURES = "data/prepared/features.npz"
MODEL = "data/model.pt"
HISTORY = "reports/train/history.csv"
METRICS = "reports/train_metrics.json"


def main() -> None:
    params = load_params()
    model_p, train_p = params["model"], params["train"]
    log.info("read params.yaml: model=%s train=%s", model_p, train_p)
    device = resolve_device(train_p["device"])
    features = read_arrays(FEATURES)
    train_x, val_x = features["train"], features["val"]

    config = VAEConfig(
        input_shape=list(train_x.shape[1:]),
        hidden_dims=model_p["hidden_dims"],
        latent_dim=model_p["latent_dim"],
        architecture=model_p["architecture"],
        conv_channels=model_p["conv_channels"],
        likelihood=model_p["likelihood"],
        kind=model_p["kind"],
    )
    if config.likelihood == "bernoulli" and (train_x.min() < 0 or train_x.max() > 1):
        raise UserError(
            "model.likelihood = 'bernoulli' needs data in [0, 1] (pixel intensities), but the "
            f"training data spans [{train_x.min():.3g}, {train_x.max():.3g}]; use 'gaussian'"
        )
    seed_everything(train_p["seed"])
    model = build_model(config).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("model (%d parameters) on %s:\n%s", n_params, device, model)

    batch_size, adapted = capped_batch_size("train.batch_size", train_p["batch_size"], len(train_x))
    history = fit(model, train_x, val_x, model_p["beta"], {**train_p, "batch_size": batch_size}, device)
    save_model(model, MODEL)
    write_csv(HISTORY, {key: [row[key] for row in history] for key in history[0]})

    at_full_beta = [row for row in history if row["kl_weight"] >= model_p["beta"]] or history
    best = min(at_full_beta, key=lambda row: row["val_loss"])
    write_json(METRICS, {
        "epochs_run": len(history),
        "best_epoch": best["epoch"],
        "val_loss": best["val_loss"],
        "val_recon": best["val_recon"],
        "val_kl": best["val_kl"],
        "final_train_loss": history[-1]["train_loss"],
        "n_parameters": n_params,
        "adaptations": adapted,
    })


if __name__ == "__main__":
    run_stage(main)
