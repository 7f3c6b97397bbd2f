"""What a computation reads of the package's code (studies/code.py): imports followed at module
level and inside functions, relative and absolute; a module nobody imports changes no digest."""
from vae_anomaly.studies.code import closure, code_digest
from vae_anomaly.studies.suite import BASELINE_CODE, VAE_CODE


def write(root, name, text):
    path = root.joinpath(*name.split("/"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_the_digest_follows_imports_and_ignores_modules_not_imported(tmp_path):
    write(tmp_path, "__init__.py", "")
    write(tmp_path, "entry.py", "from .sub import helper\n\ndef f():\n    from vae_anomaly import lazy\n")
    write(tmp_path, "sub/__init__.py", "")
    write(tmp_path, "sub/helper.py", "from ..sub import deep\nimport numpy\n")
    write(tmp_path, "sub/deep.py", "X = 1\n")
    write(tmp_path, "lazy.py", "Y = 1\n")
    write(tmp_path, "plots.py", "from .entry import f\n")
    assert closure(("vae_anomaly.entry",), tmp_path) == [
        "vae_anomaly.entry", "vae_anomaly.lazy", "vae_anomaly.sub.deep", "vae_anomaly.sub.helper"]
    before = code_digest(("vae_anomaly.entry",), tmp_path)
    write(tmp_path, "plots.py", "from .entry import f\nZ = 2\n")
    code_digest.cache_clear()
    assert code_digest(("vae_anomaly.entry",), tmp_path) == before
    write(tmp_path, "sub/deep.py", "X = 2\n")
    code_digest.cache_clear()
    assert code_digest(("vae_anomaly.entry",), tmp_path) != before


def test_the_suites_detectors_read_their_own_code_and_not_the_plots_or_the_tables():
    vae, baselines = closure(VAE_CODE), closure(BASELINE_CODE)
    assert {"vae_anomaly.model.vae", "vae_anomaly.scoring.scores", "vae_anomaly.model.training"} <= set(vae)
    assert {"vae_anomaly.evaluation.pyod_deep"} <= set(baselines)
    assert "vae_anomaly.scoring.scores" not in baselines
    for module in ("vae_anomaly.evaluation.plots", "vae_anomaly.studies.suite", "vae_anomaly.evaluation.metrics"):
        assert module not in vae and module not in baselines
