"""The command line as a user meets it: `--help` everywhere, one-line errors for bad inputs,
and progress bars only on a terminal."""
import io
import logging
import re
import runpy
import sys

import numpy as np
import pytest
import torch
import yaml

from vae_anomaly import cli
from vae_anomaly.cli import run_stage
from vae_anomaly.evaluation import baselines
from vae_anomaly.io import write_arrays
from vae_anomaly.model.training import fit
from vae_anomaly.model.vae import VAEConfig, build_model, save_model

from conftest import ROOT


def command_modules() -> list[str]:
    """Every module run as `python -m PACKAGE.NAME`: the stages, scripts and benchmarks that
    have a ``__main__`` block (not their helpers, e.g. scripts/sweep_task.py)."""
    return sorted(f"{pkg}.{path.stem}" for pkg in ("stages", "scripts", "benchmarks")
                  for path in (ROOT / pkg).glob("*.py")
                  if path.stem != "__init__" and 'if __name__ == "__main__":' in path.read_text())


@pytest.mark.parametrize("module", command_modules())
def test_every_command_answers_help_and_writes_nothing(module, tmp_path, monkeypatch, capsys):
    # Run in an empty folder: a command that ignored --help would fail on the missing
    # params.yaml (exit 2) or write its outputs here.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [module, "--help"])
    monkeypatch.delitem(sys.modules, module, raising=False)  # run it afresh, as `python -m` does
    with pytest.raises(SystemExit) as stop:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    assert stop.value.code == 0
    assert capsys.readouterr().out.startswith("usage: ")
    assert list(tmp_path.iterdir()) == []


def test_stage_help_says_what_it_does(capsys):
    from stages import threshold

    with pytest.raises(SystemExit):
        run_stage(threshold.main, argv=["--help"])
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m stages.threshold [-h]")
    assert "choose the decision threshold from unlabelled scores" in out


def stage_error(module: str) -> None:
    """Run a stage in the current folder and check that it stops with exit status 2."""
    main = __import__(f"stages.{module}", fromlist=["main"]).main
    with pytest.raises(SystemExit) as stop:
        run_stage(main, argv=[])
    assert stop.value.code == 2


@pytest.fixture
def project(tmp_path, monkeypatch, params):
    params["train"]["device"] = "cpu"
    # The two scores every model gives; the reference scores would first fit on the train split.
    params["score"].update(names=["negative_elbo", "reconstruction_mse"], primary="negative_elbo")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def errors(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def test_threshold_refuses_non_finite_scores(project, params, caplog):
    primary = params["score"]["primary"]
    write_arrays("data/scores/val.npz", **{primary: np.array([1.0, np.nan, 2.0])})
    stage_error("threshold")
    assert errors(caplog) == [
        f"score {primary} (score.primary) of the val split is not finite in 1 of 3 rows (the "
        "first, row 1, is nan); re-run `dvc repro -f score`, whose check stops on such scores "
        "and says why"
    ]
    assert not (project / "reports").exists()  # no threshold of NaN written


def test_score_refuses_non_finite_scores(project, caplog):
    rng = np.random.default_rng(0)
    write_arrays("data/prepared/features.npz",
                 **{split: rng.normal(size=(20, 30)).astype(np.float32) for split in ("train", "val", "test")})
    model = build_model(VAEConfig([30], [16, 8], 2))
    with torch.no_grad():
        model.decoder[0].bias[0] = float("nan")  # a model that went wrong
    save_model(model, "data/model.pt")
    stage_error("score")
    (message,) = errors(caplog)
    assert message.startswith("score negative_elbo of the train split is not finite in 20 of 20 rows")
    assert "leave negative_elbo out of score.names" in message
    assert not (project / "data/scores").exists()


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("terminal, ci, shown", [(True, None, True), (True, "true", False), (False, None, False)])
def test_progress_bars_only_on_a_terminal_outside_ci(monkeypatch, terminal, ci, shown):
    monkeypatch.setattr(sys, "stderr", Terminal() if terminal else io.StringIO())
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    assert cli.show_progress() is shown


def test_pyod_bars_are_off_in_a_piped_log(monkeypatch):
    monkeypatch.delenv("CI", raising=False)  # not CI, but not a terminal either (pytest pipes)
    params = {"model": {"hidden_dims": [4], "latent_dim": 2},
              "train": {"epochs": 1, "batch_size": 8, "lr": 1e-3, "patience": 1}}
    budget = baselines.deep_budget(params, np.zeros((4, 6)))
    own = {"names": ["autoencoder"], "seed": 0, "knn_neighbors": 5, "on_error": "stop"}
    assert baselines.build_detector("autoencoder", own, budget, (6,), "cpu").verbose == 0
    monkeypatch.setattr(baselines, "show_progress", lambda: True)
    assert baselines.build_detector("autoencoder", own, budget, (6,), "cpu").verbose == 1


def test_training_logs_above_its_bar(monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.delenv("CI", raising=False)
    handler, level = logging.StreamHandler(terminal), logging.root.level
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s: %(message)s"))  # as run_main's
    logging.root.addHandler(handler)
    logging.root.setLevel(logging.INFO)
    try:
        rng = np.random.default_rng(0)
        x = rng.normal(size=(64, 6)).astype(np.float32)
        train = {"seed": 0, "epochs": 50, "batch_size": 32, "lr": 0.1, "kl_schedule": "constant",
                 "kl_warmup_epochs": 0, "kl_cycles": 1, "kl_ramp_fraction": 0.5, "patience": 1, "device": "cpu"}
        history = fit(build_model(VAEConfig([6], [8], 2)), x, x[:16], 1.0, train, torch.device("cpu"))
    finally:
        logging.root.removeHandler(handler)
        logging.root.setLevel(level)
    out = terminal.getvalue()
    assert len(history) < 50 and out.count("early stopping") == 1
    # tqdm clears the bar's line (a carriage return, spaces, another) before the log line,
    # which then starts a line of its own; without that it would run on after the bar.
    assert re.search(r"\r +\rvae_anomaly.model.training INFO: early stopping after epoch", out), out[-600:]
    assert out.count("train:") >= 2  # the bar, and the bar drawn again below the log line


def test_a_command_exits_with_its_objects_frozen():
    # Python's collections at exit pass over frozen objects (gc.freeze): a handler registered
    # before run_main runs after run_main's, and sees the objects frozen.
    import subprocess

    code = ("import atexit, gc; atexit.register(lambda: print('frozen', gc.get_freeze_count()));"
            "from vae_anomaly.cli import run_main; run_main(lambda: None)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert int(done.stdout.split()[-1]) > 1000
