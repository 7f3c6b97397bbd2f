"""The pull-request review and the HTML report, run the way CI and a reviewer run them.

One shrunk project is reproduced, committed and pushed to a local DVC remote. A fresh clone
pulls it (the cache round trip) and is reviewed against its origin branch, where nothing
differs; the original is reviewed after a change of model.beta.
"""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_pipeline import dvc, make_project, run

from vae_anomaly.params import resolve_auto


def script(name: str, *args: str, cwd: Path, path_first: Path | None = None):
    """`python -m scripts.NAME ARGS` in ``cwd``, with ``path_first`` (if any) first on PATH."""
    path = os.pathsep.join(str(p) for p in (path_first, Path(sys.executable).parent) if p)
    env = {**os.environ, "PATH": f"{path}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run([sys.executable, "-m", f"scripts.{name}", *args], cwd=cwd, env=env,
                          capture_output=True, text=True)


@pytest.fixture(scope="module")
def pushed(tmp_path_factory) -> Path:
    """A reproduced and committed project, its DVC cache pushed to a local remote."""
    root = make_project(tmp_path_factory.mktemp("project"), extra=("scripts",))
    dvc("remote", "add", "-d", "storage", str(tmp_path_factory.mktemp("remote")), cwd=root)
    dvc("repro", cwd=root)
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "run"], root)
    dvc("push", cwd=root)
    return root


@pytest.fixture(scope="module")
def clone(pushed, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("clone") / "project"
    run(["git", "clone", "-q", str(pushed), str(root)], pushed.parent)
    dvc("pull", cwd=root)
    return root


@pytest.fixture(scope="module")
def beta_changed(pushed) -> Path:
    """``pushed`` with model.beta changed in the workspace and re-run up to `evaluate`: the
    metrics are new, the `plot` stage is out of date."""
    params = yaml.safe_load((pushed / "params.yaml").read_text())
    params["model"]["beta"] = params["model"]["beta"] * 2 + 1
    (pushed / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    dvc("repro", "evaluate", cwd=pushed)
    return pushed


def test_pulled_clone_is_up_to_date_and_reproduces_nothing(pushed, clone):
    assert "up to date" in dvc("status", cwd=clone)
    assert "Running stage" not in dvc("repro", cwd=clone)
    assert (clone / "data/model.pt").read_bytes() == (pushed / "data/model.pt").read_bytes()


def test_review_with_nothing_changed(clone, tmp_path):
    # A stand-in for vega-lite's vl2png (installed by setup-cml in CI): copies the spec.
    fake = tmp_path / "vl2png"
    fake.write_text('#!/bin/sh\ncp "$1" "$2"\n')
    fake.chmod(0o755)
    branch = run(["git", "rev-parse", "--abbrev-ref", "HEAD"], clone).stdout.strip()
    rev = f"origin/{branch}"  # as the workflow passes the base branch
    done = script("review", "--rev", rev, cwd=clone, path_first=tmp_path)
    assert done.returncode == 0, done.stderr
    report = (clone / "reports/review.md").read_text()
    roc_auc = json.loads((clone / "reports/metrics.json").read_text())["roc_auc"]
    primary = resolve_auto(yaml.safe_load((clone / "params.yaml").read_text()))["score"]["primary"]
    assert f"**ROC-AUC of `{primary}`: {roc_auc:.3g} → {roc_auc:.3g}, unchanged**" in report
    assert f"No metric differs from `{rev}`." in report
    assert f"No param differs from `{rev}`." in report
    assert "Warning" not in report  # dvc status is clean
    assert "[review_plots/index.html](review_plots/index.html)" in report
    assert (clone / "reports/review_plots/index.html").is_file()
    assert "![ROC](review_plots/ROC.png)" in report
    roc = json.loads((clone / "reports/review_plots/ROC.png").read_text())  # the fake's copy
    assert {row["rev"] for row in roc["data"]["values"]} == {rev, "workspace"}


def test_review_of_a_beta_change(beta_changed):
    done = script("review", "--rev", "HEAD", cwd=beta_changed)
    assert done.returncode == 0, done.stderr
    report = (beta_changed / "reports/review.md").read_text()
    committed = run(["git", "show", "HEAD:params.yaml"], beta_changed).stdout
    old = yaml.safe_load(committed)["model"]["beta"]
    new = yaml.safe_load((beta_changed / "params.yaml").read_text())["model"]["beta"]
    assert re.search(rf"\| params.yaml +\| model.beta +\| {old} +\| {new} +\|", report), report
    assert "No metric differs" not in report
    # The headline first: the primary score's ROC-AUC, old -> new, and which way it went.
    before = json.loads(run(["git", "show", "HEAD:reports/metrics.json"], beta_changed).stdout)
    after = json.loads((beta_changed / "reports/metrics.json").read_text())
    delta = after["roc_auc"] - before["roc_auc"]
    verdict = "better" if delta > 0 else "worse"
    primary = resolve_auto(yaml.safe_load(committed))["score"]["primary"]
    headline = (f"**ROC-AUC of `{primary}`: {before['roc_auc']:.3g} → {after['roc_auc']:.3g}, "
                f"{delta:+.3g} ({verdict})**")
    assert headline in report and report.index(headline) < report.index("### All metrics")
    flagged = after["n_flagged"] - before["n_flagged"]
    assert re.search(rf"\| flagged +\| {before['n_flagged']} +\| {after['n_flagged']} +\| "
                     rf"{'unchanged' if flagged == 0 else f'{flagged:+d}'} +\|", report), report
    assert re.search(r"> \*\*Warning:\*\* `dvc status`: .*\bplot\b.* run `dvc repro` first", report)
    assert re.search(r"\| reports/train_metrics.json +\| val_loss +\|", report), report
    # kept out of dvc.yaml's metrics (and `dvc exp show`), still compared in the review
    assert re.search(r"\| reports/detail.json +\| scores.negative_elbo.roc_auc +\|", report), report
    assert re.search(r"\| reports/train/metrics.json +\| val.loss +\|", report), report
    page = (beta_changed / "reports/review_plots/index.html").read_text()
    assert '"rev": "HEAD"' in page and '"rev": "workspace"' in page  # both runs overlaid
    assert_offline(page)


def test_review_of_a_missing_revision_says_so(pushed):
    done = script("review", "--rev", "no-such-branch", cwd=pushed)
    assert done.returncode == 2
    assert "git revision 'no-such-branch' not found" in done.stderr
    assert "Traceback" not in done.stderr


def test_report_page_shows_every_metric_and_figure_offline(beta_changed):
    done = script("report", cwd=beta_changed)
    assert done.returncode == 0, done.stderr
    out = beta_changed / "reports/report"
    page = (out / "index.html").read_text()
    metrics = json.loads((beta_changed / "reports/metrics.json").read_text())
    train = json.loads((beta_changed / "reports/train_metrics.json").read_text())
    for key, value in (("roc_auc", metrics["roc_auc"]), ("val_loss", train["val_loss"])):
        assert re.search(rf"<td>{key} *</td><td>{value:.4g} *</td>", page), key
    per_type = json.loads((beta_changed / "reports/per_type.json").read_text())
    assert re.search(rf"<td>mean_shift *</td><td>{per_type['mean_shift']['f1']:.4g} *</td>", page)
    assert "<h3>Per anomaly type</h3>" in page and "<h3>Data</h3>" in page
    detail = json.loads((beta_changed / "reports/detail.json").read_text())
    assert re.search(rf"<td>negative_elbo *</td><td>{detail['scores']['negative_elbo']['pr_auc']:.4g} *</td>", page)
    assert re.search(r'<p class="warning">`dvc status`: .*\bplot\b', page)  # not re-run
    assert page.count("vegaEmbed('#") >= 4  # ROC, PR, loss, KL
    for figure in (beta_changed / "reports/figures").glob("*.png"):
        assert f"reports_figures_{figure.name}" in page
    for src in re.findall(r'<img src="([^"]+)"', markup(page)):
        assert (out / src).is_file(), src
    assert_offline(page)


def markup(page: str) -> str:
    """The page less the contents of its inline scripts (Vega's code, the plot specs)."""
    return re.sub(r"(<script[^>]*>).*?</script>", r"\1</script>", page, flags=re.S)


def assert_offline(page: str) -> None:
    """Nothing in the page is fetched from elsewhere: no external script, image or style."""
    assert not re.search(r"<script[^>]*\bsrc=", markup(page))
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", markup(page))
    assert "cdn.jsdelivr" not in page


def test_change_says_better_or_worse_by_the_metrics_direction():
    from scripts.review import change

    assert change(0.7, 0.6, higher_is_better=True) == "-0.1 (worse)"
    assert change(0.5, 0.6, higher_is_better=True) == "+0.1 (better)"
    assert change(90, 61, higher_is_better=None) == "-29"  # flagged: neither
    assert change(0.3, 0.3, higher_is_better=True) == "unchanged"
    assert change(None, 0.6, higher_is_better=True) == ""  # no metric at the old revision
