"""A stage killed or interrupted part-way leaves the previous artifact or none, never a
truncated one; what is written is never NaN.

Covered elsewhere: the same params and seed giving the same files in separate processes
(tests/test_pipeline.py runs `dvc repro --force` twice and compares dvc.lock), a
corrupt or foreign model file (tests/test_training.py), the DVC remote round trip
(tests/test_review.py).
"""
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import yaml
from test_pipeline import make_project, run

from vae_anomaly.errors import UserError
from vae_anomaly.io import atomic_path, require_finite, write_json
from vae_anomaly.model.vae import load_model

from conftest import ROOT


def test_atomic_path_replaces_the_target_on_success(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text("old")
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"
    assert list(tmp_path.iterdir()) == [target]


def test_atomic_path_gives_a_normal_file_mode(tmp_path):
    target = tmp_path / "out.json"
    with atomic_path(target) as tmp:
        tmp.write_text("{}")
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_atomic_path_keeps_the_previous_file_when_the_write_fails(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("ne")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]  # the temporary file is gone too


KILLED_MID_WRITE = """
import os, signal, sys
from vae_anomaly.io import atomic_path
with atomic_path(sys.argv[1]) as tmp, open(tmp, "wb") as fh:
    fh.write(b"trunc")
    fh.flush()
    os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("previous", [b"complete", None])
def test_process_killed_mid_write_leaves_the_previous_file_or_none(tmp_path, previous):
    target = tmp_path / "model.pt"
    if previous is not None:
        target.write_bytes(previous)
    done = subprocess.run([sys.executable, "-c", KILLED_MID_WRITE, str(target)], cwd=ROOT)
    assert done.returncode == -signal.SIGKILL
    assert (target.read_bytes() if target.exists() else None) == previous
    # SIGKILL skips the clean-up, so the half-written temporary file stays, under its own name
    assert [p.name.startswith(".model.pt.") for p in tmp_path.iterdir() if p != target] == [True]


def set_train(root, **values) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["train"].update(values)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A project copy whose data are prepared and whose model has been trained for one epoch."""
    root = make_project(tmp_path_factory.mktemp("project"))
    set_train(root, epochs=1, kl_warmup_epochs=0)
    run([sys.executable, "-m", "stages.prepare"], root)
    run([sys.executable, "-m", "stages.train"], root)
    return root


# The train stage with our atomic writes' fsync replaced by a SIGKILL: it dies at its first
# atomic write, the model's, after the new model's bytes are in the temporary file and before
# the rename. (Not os.fsync: DVCLive fsyncs its own signal file for VS Code every epoch.)
KILLED_AT_FIRST_FSYNC = """
import os, runpy, signal, sys
import vae_anomaly.io
vae_anomaly.io._fsync = lambda path: os.kill(os.getpid(), signal.SIGKILL)
sys.argv = ["stages.train"]
runpy.run_module("stages.train", run_name="__main__", alter_sys=True)
"""


def test_training_killed_while_saving_leaves_the_previous_model(prepared):
    model = prepared / "data/model.pt"
    complete = model.read_bytes()
    set_train(prepared, epochs=2)  # another model, so a save in place would show
    try:
        done = subprocess.run([sys.executable, "-c", KILLED_AT_FIRST_FSYNC], cwd=prepared,
                              capture_output=True, text=True, env={**os.environ, "CI": "true"})
    finally:
        set_train(prepared, epochs=1)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert model.read_bytes() == complete
    load_model(model)  # the previous model, complete and loadable
    # The kill landed after the new model was written in full: its temporary file holds it.
    (partial,) = [p for p in model.parent.iterdir() if p.name.startswith(".model.pt.")]
    assert load_model(partial).state_dict().keys() == load_model(model).state_dict().keys()
    assert partial.read_bytes() != complete
    partial.unlink()


def test_ctrl_c_during_training_is_one_line_and_writes_nothing(prepared):
    outputs = {p: p.read_bytes() for p in (prepared / "data/model.pt", prepared / "reports/train_metrics.json")}
    set_train(prepared, epochs=100_000, patience=100_000)  # minutes of training
    # As from a shell: Ctrl-C not ignored. A child inherits an ignored SIGINT, and code run
    # in this test process earlier (DVC's API) may have left it ignored here.
    train = subprocess.Popen([sys.executable, "-m", "stages.train"], cwd=prepared, text=True,
                             stderr=subprocess.PIPE, env={**os.environ, "CI": "true"},
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    watchdog = threading.Timer(120, train.kill)
    watchdog.start()
    try:
        lines = []
        while not lines or not lines[-1].startswith(")"):  # the end of the model's summary
            lines.append(train.stderr.readline())
            assert lines[-1], "".join(lines)
        time.sleep(1.0)  # into the epochs
        assert train.poll() is None, "training ended before Ctrl-C"
        train.send_signal(signal.SIGINT)
        rest = train.stderr.read()
        assert train.wait() == 130
    finally:
        watchdog.cancel()
        train.kill()
        set_train(prepared, epochs=1, patience=8)
    assert rest == "interrupted (Ctrl-C): stopped; every output is complete or untouched\n"
    assert {p: p.read_bytes() for p in outputs} == outputs
    assert [p for p in prepared.rglob(".*.tmp")] == []


def test_json_with_nan_is_refused_naming_the_key(tmp_path):
    target = tmp_path / "metrics.json"
    with pytest.raises(UserError, match=r"metrics.json: scores.iwae.roc_auc = nan is not a finite number"):
        write_json(target, {"roc_auc": 0.7, "scores": {"iwae": {"roc_auc": float("nan")}}})
    assert list(tmp_path.iterdir()) == []
    write_json(target, {"b": 1.0, "a": [0.5, None]})
    assert target.read_text() == '{\n  "b": 1.0,\n  "a": [\n    0.5,\n    null\n  ]\n}\n'  # keys as given


def test_require_finite_names_the_values_and_the_first_bad_row():
    require_finite(np.array([1.0, 2.0]), "score s", "do this")
    with pytest.raises(UserError, match=r"^score s is not finite in 2 of 4 rows \(the first, row 1, is inf\); do this$"):
        require_finite(np.array([1.0, np.inf, 3.0, np.nan]), "score s", "do this")
    with pytest.raises(UserError, match=r"^the threshold is nan; do that$"):
        require_finite(float("nan"), "the threshold", "do that")
