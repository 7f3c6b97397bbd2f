"""The benchmark's pure helpers (benchmarks/); nothing here is timed."""
import pytest

from benchmarks.benchmark import table_rows
from benchmarks.floors import (
    epoch_floor_flop,
    forward_flop_per_sample,
    scoring_floor_flop,
    training_flop_per_sample,
)
from benchmarks.pipeline_timings import top_level_import_seconds
from benchmarks.project import set_params
from benchmarks.workloads import MLP_VAE
from vae_anomaly.model.vae import build_model

# Multiply-adds of the 784-400-20 VAE's linear layers: encoder 784x400, mu and logvar 400x20
# each, decoder 20x400 and 400x784.
ENCODER_MACS = 784 * 400 + 2 * 400 * 20
DECODER_MACS = 20 * 400 + 400 * 784


def test_training_flops_of_the_reference_mlp_are_counted_by_hand():
    model = build_model(MLP_VAE)
    forward = 2 * (ENCODER_MACS + DECODER_MACS)
    # backward: weight gradients of every layer (as much as the forward) and input gradients of
    # every layer but the first, whose input is the data
    backward = forward + 2 * (ENCODER_MACS + DECODER_MACS - 784 * 400)
    assert forward_flop_per_sample(model) == forward
    assert training_flop_per_sample(model) == forward + backward == 3_280_000
    assert epoch_floor_flop(model, 100, 10) == 100 * (forward + backward) + 10 * forward


def test_scoring_floor_is_one_encoder_pass_and_k_decoder_passes():
    model = build_model(MLP_VAE)
    assert scoring_floor_flop(model, 10, 100) == 10 * 2 * (ENCODER_MACS + 100 * DECODER_MACS)


def test_set_params_sets_dotted_keys_and_rejects_unknown_ones():
    params = {"train": {"epochs": 60, "seed": 0}}
    assert set_params(params, {"train.epochs": 2}) == {"train": {"epochs": 2, "seed": 0}}
    with pytest.raises(KeyError, match="train.epoch"):
        set_params(params, {"train.epoch": 2})


def fabricated_result(mlp: float, conv: float, iwae: float, repro_s: float) -> dict:
    """A run's result with the given ratios to the floor and clean `dvc repro` time (floors of
    1 s, so each ratio is its time)."""
    epoch = {"n_train": 100, "n_val": 10, "floor_s": 1.0, "fit_1_epochs_s": 2.0}
    return {
        "matmul_gflops": {"start": 100.0, "end": 120.0, "used": 120.0},
        "machine": {"torch_threads": 2},
        "training": {
            "mlp_784_400_20": {**epoch, "epoch_s": mlp, "vs_floor": mlp,
                               "profile": {"products_s": 0.9, "operators_s": 1.2,
                                           "top_operators": {"aten::mm": 0.5, "aten::addmm": 0.4,
                                                             "aten::log_sigmoid_forward": 0.1}}},
            "conv": {**epoch, "epoch_s": conv, "vs_floor": conv},
            "pyod_vae": {**epoch, "epoch_s": 2 * mlp, "vs_ours": 2.0},
            "pyod_vae_matched": {**epoch, "epoch_s": 1.5 * mlp, "vs_ours": 1.5},
        },
        "scoring": {name: {"k": 100, "n": 50, "seconds": iwae, "floor_s": 1.0, "vs_floor": iwae}
                    for name in ("negative_elbo", "iwae")},
        "time_to_detector": {"ours_s": 20.0, "pyod_s": 40.0, "ours_roc_auc": 0.8, "pyod_roc_auc": 0.7,
                             "data": "default synthetic, 8000 x 30 train, 2000 test"},
        "fashion_train": {"peak_rss_mb": 900.0, "data": "random"},
        "dvc": {"repro_s": repro_s, "repro_noop_s": 1.0, "repro_forced_s": repro_s - 1, "params": "default params.yaml",
                "stages_s": {"prepare": 2.0, "train": 10.0},
                "stages_imports_s": {"prepare": 0.5, "train": 4.0}, "stages_1_thread_s": {"train": 8.0},
                "import_torch_s": 1.5, "import_dynamo_s": 1.2,
                "sweep": {"experiments": 4, "queue_j2_s": 60.0, "sequential_s": 100.0,
                          "queue_vs_sequential": 0.6}},
        "suite": {"task_seconds_total": 10.0, "by_family": {"odds": 6.0, "digits": 4.0}, "tasks": 3,
                  "source": "reports/suite/suite.json (python -m benchmarks.suite)"},
        "errors": {},
    }


def verdicts(result: dict) -> dict[str, str]:
    """Each row's "met" or "missed" (or "" without a target), by the row's first words."""
    return {name: goal.rsplit(": ", 1)[-1] for name, *_, goal in table_rows(result)}


def verdict(rows: dict[str, str], prefix: str) -> str:
    (found,) = [v for name, v in rows.items() if name.startswith(prefix)]
    return found


def test_table_rows_say_which_targets_are_met():
    rows = verdicts(fabricated_result(mlp=1.4, conv=1.5, iwae=1.9, repro_s=30.0))
    assert verdict(rows, "MLP VAE 784-400-20 epoch") == "met"
    assert verdict(rows, "conv VAE epoch") == "missed"
    assert verdict(rows, "iwae, K = 100") == "met"
    assert verdict(rows, "dvc repro, clean") == "missed"
    assert verdict(rows, "dvc repro, no-op") == "met"
    assert verdict(rows, "Fashion-MNIST train stage") == "met"
    assert verdict(rows, "4 experiments") == "met"
    # PyOD's epochs are references, with no target; the new measurements have their rows.
    assert verdict(rows, "PyOD VAE epoch (") == verdict(rows, "PyOD VAE epoch,") == ""
    assert {"stage prepare alone (whole process)", "stage train alone (whole process)",
            "stage train alone on 1 thread (lever)"} <= set(rows)
    assert verdict(rows, "time to a scored detector") == verdict(rows, "detection suite as recorded") == ""

    rows = verdicts(fabricated_result(mlp=1.6, conv=1.2, iwae=2.5, repro_s=20.0))
    assert [verdict(rows, p) for p in ("MLP VAE 784", "conv VAE", "iwae", "dvc repro, clean")] == [
        "missed", "met", "missed", "met"]
    # A target in units shows the measurement, the target and the ratio to it.
    rows = {row[0]: row for row in table_rows(fabricated_result(mlp=1.0, conv=1.0, iwae=1.0, repro_s=30.0))}
    assert rows["dvc repro, clean (default params.yaml)"][1:] == (
        "30.0 s", "target 25 s", "1.20x target", "< 25 s: missed")


def test_the_epoch_profile_and_each_stage_imports_have_their_rows():
    rows = {row[0]: row for row in table_rows(fabricated_result(mlp=1.0, conv=1.0, iwae=1.0, repro_s=30.0))}
    products = rows["MLP VAE epoch: its matrix products alone (torch.profiler)"]
    assert products[1] == "0.90 s" and products[3] == "0.90x"
    assert "log_sigmoid_forward 0.100" in products[2] and "aten::mm" not in products[2]
    assert rows["stage train alone (whole process)"][1] == "10.0 s, imports 4.0 s"
    assert rows["dvc repro -f after it (every stage again, same copy)"][1:4] == ("29.0 s", "clean dvc repro 30.0 s", "0.97x")


def test_import_seconds_add_up_the_top_level_imports_only():
    importtime = """import time: self [us] | cumulative | imported package
import time:       100 |        100 |   numpy._core
import time:       200 |        300 | numpy
import time:        50 |       1500 |     torch._C
import time:      1000 |       2500 | torch
some other line on stderr
"""
    assert top_level_import_seconds(importtime) == pytest.approx(0.0028)
