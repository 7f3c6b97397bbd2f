"""scripts/study.py: the paper's grid as DVC sweeps, checked by DVC's own -S parser, and the
follow-up's β read from finished runs."""
from pathlib import Path

import pytest

from scripts import study
from tests.test_aggregate import row
from vae_anomaly.io import UserError

PARAMS_TEXT = (Path(__file__).parents[1] / "params.yaml").read_text()


def dvc_runs(sweep):
    """The runs `dvc exp run --queue` makes of the sweep's command, by DVC's parser."""
    from dvc.utils.cli_parse import to_path_overrides
    from dvc.utils.hydra import get_hydra_sweeps

    cmd = sweep.command()
    assert cmd[cmd.index("-n") + 2:-1][1::2] == sweep.set_args()  # the command carries them
    return get_hydra_sweeps(to_path_overrides(sweep.set_args()))


def test_grid_is_the_papers_and_dvc_reads_it_so():
    beta, ae = study.grid_sweeps("mnist", max_train=0)
    assert (beta.name, ae.name) == ("study-mnist-beta", "study-mnist-ae")
    assert len(beta.runs()) == 4 * 3 * 5 and len(ae.runs()) == 3 * 5
    assert len(dvc_runs(beta)) == 60 and len(dvc_runs(ae)) == 15
    first = dvc_runs(beta)[0]["params.yaml"]
    assert "data.classes=[1,7]" in first and "model.architecture=conv" in first
    assert beta.command()[-1] == "evaluate"
    study.check([beta, ae], PARAMS_TEXT)  # every run valid against the schema


def test_check_names_the_sweep_and_key_before_queueing():
    bad = study.Sweep("study-x", {"model.beta": -1.0}, {"train.seed": [0, 1]})
    with pytest.raises(UserError, match="sweep study-x: .*model.beta"):
        study.check([bad], PARAMS_TEXT)


def test_follow_up_uses_the_best_betas_per_latent_size():
    rows = []
    for z in study.LATENT_SIZES:  # detection best at beta 10, reconstruction best at 0.1 (z=20: both 1)
        for b, auc, mse in [(0.1, 0.6, 0.01), (1, 0.7, 0.02), (10, 0.8, 0.05), (100, 0.5, 0.09)]:
            if z == 20:
                auc, mse = (0.9, 0.001) if b == 1 else (auc, mse)
            for seed in range(2):
                rows.append(row(f"study-mnist-beta-{z}-{b}-{seed}", "vae", b, z, seed, auc, mse, 1.0))
    rows.append(row("study-mnist-sparse-z20-1", "sparse", 100, 20, 0, 0.99, 0.0001, 1.0))  # not phase 1
    betas = study.chosen_betas(rows, "mnist")
    assert betas == {20: [1.0], 64: [0.1, 10.0], 256: [0.1, 10.0]}
    sweeps = study.follow_up_sweeps("mnist", 500, betas)
    assert [s.name for s in sweeps] == ["study-mnist-schedule-z20", "study-mnist-sparse-z20",
                                        "study-mnist-schedule-z64", "study-mnist-sparse-z64",
                                        "study-mnist-schedule-z256", "study-mnist-sparse-z256"]
    assert [len(dvc_runs(s)) for s in sweeps] == [2 * 1 * 5, 1 * 5, 2 * 2 * 5, 2 * 5, 2 * 2 * 5, 2 * 5]
    assert all(r["data.max_train"] == 500 for s in sweeps for r in s.runs())
    study.check(sweeps, PARAMS_TEXT)


def test_follow_up_without_phase_one_says_what_to_run():
    with pytest.raises(UserError, match="run --phase grid first"):
        study.chosen_betas([row("study-mnist-beta-1", "vae", 1, 20, 0, 0.7, 0.1, 1.0)], "mnist")
