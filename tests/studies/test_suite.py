"""The detection suite on tiny tasks: every detector scored through the pipeline's functions,
development and report halves kept apart, intervals around their estimates, the same table
from the same command, and the table that benchmarks.suite writes."""
import copy

import numpy as np
import pytest

from benchmarks.suite import markdown
from vae_anomaly.errors import UserError
from vae_anomaly.studies.suite import development_mask, load_suite, run_suite


def tiny_spec(table_path: str) -> dict:
    return {
        "seeds": [0, 1],
        "split_seed": 7,
        "bootstrap_resamples": 200,
        "kinds": {
            "tabular": {
                "recommended": "latent_residual_knn",
                "set": {
                    "model.hidden_dims": [16], "model.latent_dim": 2, "train.epochs": 4,
                    "train.kl_warmup_epochs": 1, "train.device": "cpu",
                    "score.names": ["reconstruction_mse", "latent_residual_knn"],
                    "score.primary": "latent_residual_knn", "score.elbo_samples": 1,
                    "baselines.names": ["knn", "iforest", "autoencoder"],
                },
            },
        },
        "families": {
            "synthetic": {"kind": "tabular", "set": {
                "data.synthetic.n_train": 300, "data.synthetic.n_val": 60, "data.synthetic.n_test": 200,
            }, "tasks": {"default": {}}},
            "tables": {"kind": "tabular", "set": {"data.source": "file"},
                       "tasks": {"own": {"data.file.path": table_path}}, "limits": {"test": 150}},
        },
        "quick": ["tables/own"],
    }


@pytest.fixture
def table(tmp_path):
    rng = np.random.default_rng(0)
    normal = rng.normal(size=(400, 5)) @ rng.normal(size=(5, 5))
    anomalies = rng.normal(size=(40, 5)) * 3
    path = tmp_path / "odds" / "own.npz"
    path.parent.mkdir()
    np.savez(path, X=np.vstack([normal, anomalies]), y=np.r_[np.zeros(400), np.ones(40)].astype(int))
    return path


def without_times(result: dict) -> dict:
    out = copy.deepcopy(result)
    del out["seconds"]
    for runs in out["training"].values():
        for run in runs:
            del run["seconds"]  # {step: seconds}
    return out


def test_the_suite_scores_every_detector_and_summarises_each_family(params, table, tmp_path, monkeypatch):
    monkeypatch.setenv("CI", "1")
    suite = load_suite(tiny_spec("{data_root}/odds/own.npz"), params, str(tmp_path))
    assert [t.name for t in suite.tasks] == ["synthetic/default", "tables/own"]
    result = run_suite(suite, "cpu", cache=tmp_path / "cache")

    detectors = {"reconstruction_mse", "latent_residual_knn", "pyod_knn", "pyod_iforest", "pyod_autoencoder"}
    widths = []
    for task, metrics in result["tasks"].items():
        assert set(metrics) == detectors, task
        for m in metrics.values():
            report = m["report"]
            assert set(m["development"]) == {"roc_auc", "pr_auc"}
            assert len(report["roc_auc_seeds"]) == 2
            assert report["roc_auc"] == pytest.approx(np.mean(report["roc_auc_seeds"]))
            for metric in ("roc_auc", "pr_auc"):
                low, high = report[f"{metric}_ci"]
                assert low <= report[metric] <= high
                widths.append(high - low)
    assert min(widths) >= 0 and np.median(widths) > 0.01
    # clear anomalies: every detector finds them on the table, the recommended one well
    own = result["tasks"]["tables/own"]
    assert own["latent_residual_knn"]["report"]["roc_auc"] > 0.9
    fam = result["families"]["tables"]["detectors"]
    assert sum(m["wins"] for m in fam.values()) >= 1
    assert result["families"]["synthetic"]["tasks"] == ["synthetic/default"]

    again = run_suite(suite, "cpu", cache=None, jobs=2)  # recomputed in 2 workers: the same numbers
    assert without_times(again) == without_times(result)
    cached = run_suite(suite, "cpu", cache=tmp_path / "cache")
    assert without_times(cached) == without_times(result)

    text = markdown(result)
    assert "**latent_residual_knn** (recommended)" in text and "## tables (1 tasks, tabular)" in text
    # the recommended detector against the family's best baseline, paired on the same resamples
    versus = result["families"]["tables"]["versus_best_baseline"]
    best = max((d for d in fam if d.startswith("pyod_")), key=lambda d: fam[d]["roc_auc"])
    assert versus["baseline"] == best
    assert versus["roc_auc_difference"] == pytest.approx(fam["latent_residual_knn"]["roc_auc"] - fam[best]["roc_auc"])
    low, high = versus["roc_auc_difference_ci"]
    assert low <= versus["roc_auc_difference"] <= high
    assert "| tables | 1 | `latent_residual_knn` |" in text
    # what each family cost, per detector: the minutes of every seed, summed
    assert "| family | VAE training | VAE scores | pyod_autoencoder | pyod_iforest | pyod_knn | all |" in text
    spent = sum(run["seconds"]["train"] for run in result["training"]["tables/own"]) / 60
    assert f"| tables | {spent:.1f} |" in text

    # choosing: the development halves alone, from the same cached scores
    development = run_suite(suite, "cpu", cache=tmp_path / "cache", half="development")
    for task, metrics in development["tasks"].items():
        for name, m in metrics.items():
            assert set(m) == {"development"}, (task, name)
            assert m["development"]["roc_auc"] == pytest.approx(result["tasks"][task][name]["development"]["roc_auc"])
    assert "development halves: for choosing" in markdown(development)


def test_each_detector_is_cached_on_its_own_and_recomputed_only_when_what_it_reads_changes(params, tmp_path, monkeypatch):
    monkeypatch.setenv("CI", "1")
    import vae_anomaly.pipeline as pipeline
    import vae_anomaly.studies.suite as suite_module

    spec = tiny_spec("unused")
    del spec["families"]["tables"]
    spec["seeds"], spec["quick"] = [0], []
    spec["kinds"]["tabular"]["set"]["baselines.names"] = ["knn", "iforest", "vae"]  # PyOD's VAE beside ours
    cache = tmp_path / "cache"
    first = run_suite(load_suite(spec, params, str(tmp_path)), "cpu", cache=cache)
    assert len(list(cache.glob("*.npz"))) == 4  # our VAE's scores, knn, iforest, PyOD's VAE
    assert len(list(cache.glob("*-model-0-*.pt"))) == 1  # our VAE's weights

    def never(*args, **kwargs):
        raise AssertionError("recomputed")

    # the VAE's scores change: they are recomputed from its cached weights, the baselines' read
    spec["kinds"]["tabular"]["set"]["score.names"] = ["latent_residual_knn", "reconstruction_mse"]
    monkeypatch.setattr(suite_module, "one_baseline", never)
    monkeypatch.setattr(pipeline, "train_model", never)
    second = run_suite(load_suite(spec, params, str(tmp_path)), "cpu", cache=cache)
    task = "synthetic/default"
    assert second["tasks"][task]["pyod_knn"] == first["tasks"][task]["pyod_knn"]
    assert second["tasks"][task]["reconstruction_mse"] == first["tasks"][task]["reconstruction_mse"]
    trained = [{**run, "seconds": run["seconds"]["train"]} for run in first["training"][task]]
    assert [{**run, "seconds": run["seconds"]["train"]} for run in second["training"][task]] == trained
    # a baseline's params change: that baseline alone is recomputed
    monkeypatch.undo()
    monkeypatch.setenv("CI", "1")
    monkeypatch.setattr(suite_module, "vae_scores", never)
    spec["kinds"]["tabular"]["set"]["baselines.knn_neighbors"] = 3
    third = run_suite(load_suite(spec, params, str(tmp_path)), "cpu", cache=cache)
    assert third["tasks"][task]["pyod_iforest"] == first["tasks"][task]["pyod_iforest"]
    assert third["tasks"][task]["pyod_vae"] == first["tasks"][task]["pyod_vae"]
    assert len(list(cache.glob("*-pyod_knn-*.npz"))) == 2


def test_development_and_report_halves_split_each_class_and_never_overlap():
    labels = np.r_[np.zeros(101), np.ones(9)].astype(int)
    dev = development_mask(labels, seed=3)
    assert (dev & labels.astype(bool)).sum() == 4 and (dev & ~labels.astype(bool)).sum() == 50
    np.testing.assert_array_equal(dev, development_mask(labels, seed=3))
    assert not np.array_equal(dev, development_mask(labels, seed=4))


def test_a_task_with_bad_params_or_no_data_root_is_refused_before_anything_runs(params, tmp_path):
    spec = tiny_spec("{data_root}/odds/own.npz")
    with pytest.raises(UserError, match=r"suite task tables/own reads data.file.path from the data root: pass --data-root"):
        load_suite(spec, params, "")
    spec["families"]["synthetic"]["tasks"]["default"] = {"model.beta": -1}
    with pytest.raises(UserError, match=r"^suite task synthetic/default: model.beta = -1 is not allowed"):
        load_suite(spec, params, str(tmp_path))
    spec["families"]["synthetic"]["tasks"]["default"] = {"model.bogus": 1}
    with pytest.raises(UserError, match=r"suite override 'model.bogus': no such param"):
        load_suite(spec, params, str(tmp_path))


def test_set_overrides_every_task_last_and_an_unknown_key_names_set(params, tmp_path):
    spec = tiny_spec(str(tmp_path / "own.npz"))
    suite = load_suite(spec, params, str(tmp_path), {"score.knn_neighbors": 1, "train.epochs": 2})
    assert [(t.params["score"]["knn_neighbors"], t.params["train"]["epochs"]) for t in suite.tasks] == [(1, 2), (1, 2)]
    with pytest.raises(UserError, match=r"--set 'score.bogus': no such param"):
        load_suite(spec, params, str(tmp_path), {"score.bogus": 1})
    with pytest.raises(UserError, match=r"^suite task synthetic/default: train.epochs = 0"):
        load_suite(spec, params, str(tmp_path), {"train.epochs": 0})


def test_each_class_is_a_task_under_its_familys_protocol_and_the_family_may_recommend_its_own(tmp_path):
    from conftest import raw_params

    spec = {"seeds": [0], "split_seed": 1, "bootstrap_resamples": 10,
            "kinds": {"images": {"recommended": "combined", "set": {"train.kl_schedule": "constant"}}},
            "families": {
                "held": {"kind": "images", "set": {"data.source": "digits", "data.protocol": "held_out"},
                         "each_class": [0, 3]},
                "one": {"kind": "images", "set": {"data.source": "digits", "data.protocol": "one_class"},
                        "each_class": [3], "recommended": "latent_knn"},
            }}
    suite = load_suite(spec, raw_params(), str(tmp_path))
    assert [t.name for t in suite.tasks] == ["held/0", "held/3", "one/3"]
    held, one = suite.tasks[1].params, suite.tasks[2].params
    assert (held["data"]["classes"], held["data"]["protocol"]) == ([3], "held_out")
    assert (one["data"]["classes"], one["data"]["protocol"]) == ([3], "one_class")
    # "auto" resolved per task: the decoder and the combined score follow the protocol
    assert (held["model"]["likelihood"], held["score"]["combine"]) == ("discretized_logistic", ["complexity_corrected", "latent_knn", "ssim_error"])
    assert (one["model"]["likelihood"], one["score"]["combine"]) == ("bernoulli", ["smoothed_reconstruction_mse", "ssim_error", "hog_error", "latent_knn"])
    assert suite.recommended == {"held": "combined", "one": "latent_knn"}
