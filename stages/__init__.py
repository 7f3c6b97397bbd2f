"""One thin script per DVC stage, run as `python -m stages.NAME` (dvc.yaml lists them)."""
import sys

# Under `python -m PACKAGE.NAME` this package is imported first, with sys.argv[0] still "-m",
# and the module's own imports (torch, PyOD) take seconds: handle Ctrl-C from here on.
if sys.argv[:1] == ["-m"]:
    from vae_anomaly.cli import exit_on_ctrl_c

    exit_on_ctrl_c()
