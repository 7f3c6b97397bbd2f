"""Performance benchmarks, run by hand (`python -m benchmarks.benchmark`); not tests, not DVC stages.
benchmarks.project, the throw-away copy of the project they run in, is the tests' scaffolding too."""
import sys

# Under `python -m PACKAGE.NAME` this package is imported first, with sys.argv[0] still "-m",
# and the module's own imports (torch, PyOD) take seconds: handle Ctrl-C from here on.
if sys.argv[:1] == ["-m"]:
    from vae_anomaly.cli import exit_on_ctrl_c

    exit_on_ctrl_c()
