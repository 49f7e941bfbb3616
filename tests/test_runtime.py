"""No import-time side effects: importing the library leaves the environment and matplotlib's
backend as they were; the entry points set the thread policy themselves."""

from __future__ import annotations

import os
import subprocess
import sys

from meanfield.runtime import THREAD_POLICY, set_thread_policy

CHECK = """
import os, json, sys
import matplotlib
before = dict(os.environ)
import meanfield, meanfield.plots, meanfield.simulate, meanfield.compare, meanfield.theory
import meanfield.files.comparison, meanfield.step
after = dict(os.environ)
print(json.dumps({"same_env": before == after, "backend": matplotlib.get_backend(),
                  "pyplot": "matplotlib.pyplot" in sys.modules}))
"""


def test_importing_the_library_changes_no_environment_nor_backend():
    env = {k: v for k, v in os.environ.items() if k not in THREAD_POLICY}
    env["MPLBACKEND"] = "svg"  # a user's choice that a matplotlib.use("Agg") would override
    out = subprocess.run([sys.executable, "-c", CHECK], env=env, capture_output=True,
                         text=True, check=True).stdout
    assert '"same_env": true' in out
    assert '"backend": "svg"' in out
    assert '"pyplot": false' in out


def test_the_command_sets_the_thread_policy_before_numpy_loads():
    env = {k: v for k, v in os.environ.items() if k not in THREAD_POLICY}
    code = ("import sys, os; from cli.main import main; sys.argv = ['meanfield', '--version']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(os.environ.get('OMP_WAIT_POLICY'), 'numpy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip().endswith("PASSIVE False")


def test_set_thread_policy_keeps_what_the_user_set():
    env = {"OMP_WAIT_POLICY": "ACTIVE"}
    set_thread_policy(env)
    assert env == {"OMP_WAIT_POLICY": "ACTIVE", "OPENBLAS_THREAD_TIMEOUT": "4"}
