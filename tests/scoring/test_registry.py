import numpy as np
import pytest

from vae_anomaly.errors import ParamsError
from vae_anomaly.model.vae import VAE, VAEConfig
from vae_anomaly.params import SCHEMA, check_scores_apply
from vae_anomaly.scoring.registry import COMBINED, GENERATORS, SCORES, model_problem, names_that
from vae_anomaly.scoring.scores import COMPUTE, compute_scores, score_generators

from support import score_params


def test_every_score_of_the_registry_has_its_function_and_the_schema_offers_exactly_these():
    assert set(COMPUTE) == set(SCORES) - {COMBINED}
    assert SCHEMA["score"]["names"].inner.item.options == tuple(SCORES)
    assert all(score.what for score in SCORES.values())


def test_the_categories_are_read_off_the_registry():
    assert set(names_that("reference")) == {"latent_mahalanobis", "latent_knn", "latent_residual_knn",
                                               "joint_knn"}
    assert set(names_that("images")) == {"smoothed_reconstruction_mse", "ssim_error", "hog_error",
                                            "complexity_corrected"}
    assert set(names_that("vae")) == {"iwae", "complexity_corrected", "kl_to_prior", "likelihood_regret"}
    assert set(GENERATORS) == set(score_generators(0, "cpu")) == {"elbo", "iwae", "regret"}


@pytest.mark.parametrize("name", [n for n in SCORES if n != COMBINED])
def test_params_validation_and_compute_scores_refuse_the_same_models(name):
    """One rule (registry.model_problem) for both: a score the params refuse for a model kind
    and likelihood is refused by compute_scores too, with the same reason."""
    for kind in ("vae", "ae", "sparse"):
        for likelihood in ("gaussian", "discretized_logistic"):
            problem = model_problem(name, kind, likelihood)
            score = {"names": [name], "primary": name, "combine": []}
            if problem is None:
                check_scores_apply(score, {"kind": kind, "likelihood": likelihood})
                continue
            with pytest.raises(ParamsError, match=f"includes '{name}', which"):
                check_scores_apply(score, {"kind": kind, "likelihood": likelihood})
            model = VAE(VAEConfig([1, 4, 4], [8], 2, likelihood=likelihood, kind=kind))
            images = np.zeros((2, 1, 4, 4), np.float32)
            with pytest.raises(ValueError, match=f"the {name} score"):
                compute_scores(model, images, score_params([name]), seed=0)
