import difflib

import pytest
import yaml
from conftest import ROOT, raw_params

from vae_anomaly.errors import ParamsError
from vae_anomaly.params import default_params, load_params, resolve_auto, validate


def test_default_params_are_valid(params):
    assert validate(params) is params


def test_params_yaml_holds_the_schemas_defaults():
    """The schema's defaults (a Detector's, when a key is not given) are the project's
    params.yaml: a default changed in one place and not the other fails here."""
    params = raw_params()
    defaults = default_params()
    assert validate(defaults) is defaults
    differ = [key for key, a, b in _leaves(defaults, params) if a != b]
    assert not differ, f"vae_anomaly/params.py's defaults and params.yaml differ at {differ}; change both"
    defaults["model"]["conv_channels"].append(1)
    assert default_params()["model"]["conv_channels"] == params["model"]["conv_channels"]  # a fresh copy


def test_auto_resolves_by_the_data_and_protocol():
    """"auto" becomes the suite's recommendation for the data: tables keep the MLP 128-64-8, the
    Gaussian decoder and joint_knn; images get the MLP 400-20 and ``combined``, of
    complexity_corrected, latent_knn and ssim_error with the discretised logistic decoder when
    whole classes are held out, else of the smoothed reconstruction error with the Bernoulli decoder; a key set by
    hand stays, and the scores follow the model it makes."""
    tables = load_params(ROOT / "params.yaml")
    assert (tables["model"]["hidden_dims"], tables["model"]["latent_dim"], tables["model"]["likelihood"]) == ([128, 64], 8, "gaussian")
    assert tables["score"]["primary"] == "joint_knn"
    assert tables["score"]["names"] == ["joint_knn", "latent_residual_knn", "reconstruction_mse", "negative_elbo"]
    raw = raw_params()
    raw["data"].update(source="mnist", protocol="held_out", classes=[1])
    held_out = resolve_auto(validate(raw))
    assert (held_out["model"]["hidden_dims"], held_out["model"]["latent_dim"]) == ([400], 20)
    assert held_out["model"]["likelihood"] == "discretized_logistic"
    assert (held_out["score"]["primary"], held_out["score"]["combine"]) == ("combined", ["complexity_corrected", "latent_knn", "ssim_error"])
    assert {"negative_elbo", "reconstruction_mse"} <= set(held_out["score"]["names"])
    raw["data"]["protocol"] = "one_class"
    one_class = resolve_auto(validate(raw))
    assert one_class["model"]["likelihood"] == "bernoulli"
    assert one_class["score"]["combine"] == ["smoothed_reconstruction_mse", "ssim_error", "hog_error", "latent_knn"]
    raw["data"]["protocol"] = "held_out"
    raw["model"]["kind"] = "ae"  # no posterior variance: complexity_corrected cannot be computed
    assert resolve_auto(validate(raw))["score"]["combine"] == ["smoothed_reconstruction_mse", "ssim_error", "hog_error", "latent_knn"]
    raw["model"]["kind"], raw["model"]["latent_dim"], raw["score"]["primary"] = "vae", 4, "latent_knn"
    mine = resolve_auto(validate(raw))
    assert (mine["model"]["latent_dim"], mine["score"]["primary"]) == (4, "latent_knn")
    raw["score"]["names"] = ["reconstruction_mse"]  # primary must be among the names given
    with pytest.raises(ParamsError, match="score.primary = 'latent_knn' must be one of score.names"):
        validate(raw)


def test_auto_resolves_a_folder_to_the_defect_benchmarks_choices(tmp_path):
    """data.source folder: the MLP (level with conv on the development defects), the Bernoulli
    decoder and negative_elbo (docs/images.md, "Results"); an architecture set by hand stays."""
    raw = raw_params()
    raw["data"]["source"] = "folder"
    raw["data"]["folder"]["path"] = str(tmp_path)
    folder = resolve_auto(validate(raw))
    assert (folder["model"]["architecture"], folder["model"]["likelihood"]) == ("mlp", "bernoulli")
    assert folder["score"]["primary"] == "negative_elbo"
    assert resolve_auto(validate(raw_params()))["model"]["architecture"] == "mlp"  # tables
    raw["model"]["architecture"] = "conv"
    assert resolve_auto(validate(raw))["model"]["architecture"] == "conv"


def _leaves(a: dict, b: dict, prefix: str = ""):
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key), b.get(key)
        if isinstance(x, dict) and isinstance(y, dict):
            yield from _leaves(x, y, f"{prefix}{key}.")
        else:
            yield prefix + key, x, y


@pytest.mark.parametrize(
    "section, key, value, message",
    [
        ("model", "beta", -1, "model.beta = -1 is not allowed; expected a number >= 0"),
        ("model", "latent_dim", 0, "model.latent_dim = 0 is not allowed; expected 'auto' or an integer >= 1"),
        ("model", "latent_dim", 2.5, "expected 'auto' or an integer"),
        ("threshold", "method", "median", "one of 'mean_std', 'percentile'"),
        ("train", "epochs", "ten", "train.epochs = 'ten'"),
        ("train", "lr", 0, "train.lr = 0 is not allowed; expected a number > 0"),
        ("score", "names", [], "score.names"),
        ("score", "names", ["negative_elbo", "negative_elbo"], "distinct"),
    ],
)
def test_bad_value_names_key_and_allowed(params, section, key, value, message):
    params[section][key] = value
    with pytest.raises(ParamsError, match=None) as err:
        validate(params)
    assert message in str(err.value)


def test_missing_key_is_named(params):
    del params["train"]["seed"]
    with pytest.raises(ParamsError, match="missing key 'train.seed'"):
        validate(params)


def test_unknown_key_is_named(params):
    params["model"]["bta"] = 4
    with pytest.raises(ParamsError, match="unknown key 'model.bta'.*model.beta"):
        validate(params)


def test_primary_must_be_computed(params):
    params["score"]["names"] = ["reconstruction_mse"]
    with pytest.raises(ParamsError, match="score.primary"):
        validate(params)


def test_anomaly_shares_leave_normal_samples(params):
    for anomaly in params["data"]["synthetic"]["anomalies"]:
        anomaly["share"] = 0.4
    with pytest.raises(ParamsError, match="shares of data.synthetic.anomalies add up to 1.2"):
        validate(params)


@pytest.mark.parametrize("change, message", [
    (lambda a: a[1].update(n_features=0),
     "data.synthetic.anomalies[1].n_features = 0 is not allowed; expected an integer >= 1"),
    (lambda a: a[1].update(n_features=31),
     r"data.synthetic.anomalies[1].n_features = 31 (correlation_break) exceeds data.synthetic.n_features = 30"),
    (lambda a: a[2].update(scale=0), "data.synthetic.anomalies[2].scale = 0 is not allowed; expected a number > 0"),
    (lambda a: a[0].pop("magnitude"), "missing key 'data.synthetic.anomalies[0].magnitude'"),
    (lambda a: a[1].update(magnitude=2.0), "unknown key 'data.synthetic.anomalies[1].magnitude'; allowed keys here: "
                                           "data.synthetic.anomalies[1].kind, data.synthetic.anomalies[1].share"),
    (lambda a: a[0].update(kind="shift"), "data.synthetic.anomalies[0].kind = 'shift' is not allowed; expected one "
                                          "of 'mean_shift', 'correlation_break', 'variance_explosion'"),
    (lambda a: a.append(dict(a[0])), "data.synthetic.anomalies[3].kind = 'mean_shift' repeats data.synthetic.anomalies[0]"),
    (lambda a: a.append(0.1), "data.synthetic.anomalies[3] = 0.1 is not allowed; expected a mapping with kind"),
])
def test_a_bad_anomaly_is_named_by_its_place_in_the_list(params, change, message):
    change(params["data"]["synthetic"]["anomalies"])
    with pytest.raises(ParamsError) as err:
        validate(params)
    assert message in str(err.value)


def test_the_anomalies_are_a_list(params):
    params["data"]["synthetic"]["anomalies"] = {"kind": "mean_shift"}
    with pytest.raises(ParamsError, match=r"data.synthetic.anomalies = .* expected a list of mappings"):
        validate(params)
    params["data"]["synthetic"]["anomalies"] = []  # none: a test set of normal samples
    assert validate(params) is params


def test_load_params_reports_missing_file(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "params.yaml")


def test_load_params_reports_bad_yaml(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("model: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(path)


@pytest.mark.parametrize("changes, message", [
    ({"kl_warmup_epochs": 60}, r"train.kl_warmup_epochs = 60 with train.epochs = 60: the KL weight never reaches"),
    ({"kl_schedule": "cyclical", "kl_ramp_fraction": 1.0}, r"train.kl_ramp_fraction = 1.0 .* no epoch"),
])
def test_kl_schedules_that_never_reach_beta_are_refused(params, changes, message):
    params["train"].update(changes)
    with pytest.raises(ParamsError, match=message):
        validate(params)


def leaves(doc: dict, prefix: str = "") -> list[tuple[str, object]]:
    out = []
    for key, value in doc.items():
        out += leaves(value, f"{prefix}{key}.") if isinstance(value, dict) else [(prefix + key, value)]
    return out


def test_dvc_exp_run_set_param_changes_only_its_own_lines(params, tmp_path):
    """params.yaml is written as `dvc exp run -S` rewrites it, so an experiment's diff of the
    file is its change: one line for a value, the list's own lines for a list, and nothing
    broken (DVC's YAML round trip loses line breaks after some commented lists, and the
    comments inside a list of mappings)."""
    from dvc.utils.hydra import apply_overrides  # what `dvc exp run -S key=value` runs

    original = (ROOT / "params.yaml").read_text()
    path = tmp_path / "params.yaml"
    for key, value in leaves(params):
        if isinstance(value, list):  # (an empty list set to [] changes nothing)
            changes = [("[]", []), ("[7,8,9]", [7, 8, 9])] if value else [("[id,label]", ["id", "label"])]
        elif isinstance(value, bool):
            changes = [(str(not value).lower(), not value)]
        elif isinstance(value, (int, float)):
            changes = [(str(value + 3), value + 3)]
        else:
            changes = [("other", "other")]
        for text, new in changes:
            path.write_text(original)
            apply_overrides(path, [f"{key}={text}"])
            written = path.read_text()
            expected = yaml.safe_load(original)
            *section, leaf = key.split(".")
            node = expected
            for name in section:
                node = node[name]
            node[leaf] = new
            assert yaml.safe_load(written) == expected, (key, text)
            removed = [line for line in difflib.ndiff(original.splitlines(), written.splitlines())
                       if line.startswith("- ")]
            allowed = len(yaml.safe_dump(value).splitlines()) + 1 if isinstance(value, list) else 1
            assert 1 <= len(removed) <= allowed, (key, text, removed)
    # a key of one item of a list of mappings (data.synthetic.anomalies): its own line
    path.write_text(original)
    apply_overrides(path, ["data.synthetic.anomalies.0.magnitude=2.5"])
    changed = [line for line in difflib.ndiff(original.splitlines(), path.read_text().splitlines())
               if line.startswith(("- ", "+ "))]
    assert [line.split() for line in changed] == [["-", "magnitude:", "1.0"], ["+", "magnitude:", "2.5"]]
