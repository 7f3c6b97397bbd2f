from pathlib import Path

import pytest
import yaml

from scripts.experiment import markdown_table, override_arg, plan, summary_row
from vae_anomaly.errors import ParamsError, UserError

from conftest import ROOT


@pytest.mark.parametrize("path", sorted((ROOT / "experiments").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_reference_experiment_is_valid(path: Path, params):
    runs = plan(yaml.safe_load(path.read_text()), params)
    assert runs and all(name.startswith(yaml.safe_load(path.read_text())["name"]) for name, _ in runs)


def test_variants_get_their_own_names_and_overrides(params):
    spec = {"name": "x", "set": {"model.beta": 2.0}, "variants": {"a": {"model.kind": "ae"}, "b": {}}}
    assert plan(spec, params) == [("x-a", {"model.beta": 2.0, "model.kind": "ae"}), ("x-b", {"model.beta": 2.0})]


def test_bad_override_is_refused_before_anything_runs(params):
    with pytest.raises(ParamsError, match="model.beta = -3"):
        plan({"name": "x", "set": {"model.beta": -3}}, params)
    with pytest.raises(ParamsError, match="unknown key 'model.bta'"):
        plan({"name": "x", "set": {"model.bta": 3}}, params)
    with pytest.raises(UserError, match="not a params section"):
        plan({"name": "x", "set": {"model.beta.x": 3}}, params)


def test_override_arguments_use_dvc_grammar():
    assert override_arg("model.hidden_dims", [400]) == "model.hidden_dims=[400]"
    assert override_arg("data.source", "mnist") == "data.source=mnist"
    assert override_arg("threshold.q", 99.0) == "threshold.q=99.0"
    anomalies = [{"kind": "mean_shift", "share": 0.1, "n_features": 2, "magnitude": 2.0}]
    arg = override_arg("data.synthetic.anomalies", anomalies)
    assert arg == 'data.synthetic.anomalies=[{kind:"mean_shift",share:0.1,n_features:2,magnitude:2.0}]'


def test_a_list_of_mappings_is_set_as_dvc_exp_run_sets_it(tmp_path):
    from dvc.utils.hydra import apply_overrides  # what `dvc exp run -S key=value` runs

    path = tmp_path / "params.yaml"
    path.write_text((ROOT / "params.yaml").read_text())
    anomalies = [{"kind": "variance_explosion", "share": 0.2, "n_features": 4, "scale": 5.0}]
    apply_overrides(path, [override_arg("data.synthetic.anomalies", anomalies)])
    assert yaml.safe_load(path.read_text())["data"]["synthetic"]["anomalies"] == anomalies


def test_markdown_table():
    table = markdown_table([{"experiment": "a", "roc_auc": 0.91234}, {"experiment": "b", "roc_auc": None}])
    assert table.splitlines() == [
        "| experiment   | roc_auc   |",
        "|--------------|-----------|",
        "| a            | 0.9123    |",
        "| b            | -         |",
    ]


def test_the_summary_leads_with_the_primary_score_and_keeps_the_others_beside_it():
    detail = {"primary": {"balanced_accuracy": 0.8},
              "scores": {"combined": {"roc_auc": 0.95}, "negative_elbo": {"roc_auc": 0.39}}}
    row = summary_row("trouser", "combined", {"roc_auc": 0.95, "f1": 0.5}, detail,
                      {"1 - trouser": {"roc_auc": 0.95}}, {"final_train_loss": 1.0})
    assert list(row)[:3] == ["experiment", "score.primary", "roc_auc"]
    assert row["balanced_accuracy"] == 0.8  # reports/detail.json's
    assert (row["score.primary"], row["roc_auc"], row["negative_elbo roc_auc"]) == ("combined", 0.95, 0.39)
    assert "combined roc_auc" not in row  # the headline is not repeated
