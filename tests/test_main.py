"""Process-wide settings belong to process entry points: importing watchnext sets nothing and
loads no torch; the `watchnext` command sets OpenMP's wait policy before torch loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def _run(code: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env["PYTHONPATH"] = str(SRC)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_the_package_loads_nothing_and_changes_nothing():
    result = _run("import json, os, sys, watchnext; import watchnext.config; "
                  "print(json.dumps({'torch': 'torch' in sys.modules, "
                  "'omp': os.environ.get('OMP_WAIT_POLICY')}))")
    assert result == {"torch": False, "omp": None}


def test_the_command_sets_the_openmp_wait_policy_before_torch_loads():
    result = _run("import json, os, sys\n"
                  "from watchnext.__main__ import main\n"
                  "before = 'torch' in sys.modules\n"
                  "sys.argv = ['watchnext', '--help']\n"
                  "try:\n    main()\nexcept SystemExit:\n    pass\n"
                  "print(json.dumps({'torch_before': before, "
                  "'omp': os.environ.get('OMP_WAIT_POLICY')}))")
    assert result == {"torch_before": False, "omp": "PASSIVE"}
