"""A plain `pip install watchnext` (no extras) in a fresh venv trains, evaluates, inspects and
predicts; the serving commands say which extra to install and exit 2.

Real install, no shortcuts: a new venv without system site packages, torch==2.13.0 (the pinned
CPU build, as scripts/setup installs it; pip takes it from the local wheel directory where
PIP_FIND_LINKS names one), then this repository without extras and without build isolation.
About 1.5-2 minutes on the 2-core machine, most of it pip (see the timings it prints).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_cli import _write_run

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
NOT_SOURCE = (".git", ".venv", "runs", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
              ".ruff_cache", "node_modules", "out")
SERVE_EXTRA = "pip install 'watchnext[serve]'"


def _run(cmd: list[str | Path], env: dict[str, str], timeout: int = 300,
         ok: bool = True) -> subprocess.CompletedProcess:
    started = time.perf_counter()
    out = subprocess.run([str(c) for c in cmd], env=env, capture_output=True, text=True,
                         timeout=timeout, check=False, cwd=env["HOME"])
    print(f"{time.perf_counter() - started:6.1f} s  {' '.join(str(c) for c in cmd[:4])}")
    if ok:
        assert out.returncode == 0, f"{cmd}: exit {out.returncode}\n{out.stdout}\n{out.stderr}"
    return out


def test_plain_install_trains_evaluates_inspects_predicts_and_names_the_serve_extra(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    # nothing of this checkout or of the test venv may leak in
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV",
                                                            "PYTHONHOME")}
    env.update(HOME=str(home), PIP_NO_INPUT="1", OMP_NUM_THREADS="1")
    venv, source = tmp_path / "venv", tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    _run([sys.executable, "-m", "venv", venv], env)
    python, watchnext = venv / "bin" / "python", venv / "bin" / "watchnext"
    pip = [python, "-m", "pip", "install", "--quiet", "--no-compile"]
    _run([*pip, "torch==2.13.0", "setuptools>=77"], env, timeout=600)
    _run([*pip, "--no-build-isolation", source], env, timeout=600)

    probe = _run([python, "-c", "import importlib.util as u; print(*[m for m in ('fastapi', "
                  "'uvicorn', 'onnx', 'onnxruntime', 'faiss', 'watchnext') if u.find_spec(m)])"], env)
    assert probe.stdout.split() == ["watchnext"], "the plain install pulled in serving packages"

    config = _write_run(home, train={"max_epochs": 1})
    out = home / "out"
    trained = _run([watchnext, "train", config, "--out", out, "--quiet"], env)
    assert "multiplications" in trained.stdout
    model = out / "model"
    evaluated = _run([watchnext, "evaluate", model], env)
    assert "click" in evaluated.stdout
    inspected = _run([watchnext, "inspect", model], env)
    assert "multiplications per example" in inspected.stdout
    scored = _run([python, "-c", "import sys; from watchnext import Ranker; "
                   "s = Ranker.load(sys.argv[1]).score(sys.argv[2]); print(len(s), s.min() > 0)",
                   model, home / "test.parquet"], env)
    assert scored.stdout.split() == ["2000", "True"]

    for command in (["serve", model], ["recommend", model], ["build-service", config, home / "svc"]):
        refused = _run([watchnext, *command], env, ok=False)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        message = " ".join((refused.stdout + refused.stderr).split())
        assert SERVE_EXTRA in message and "Traceback" not in message
    assert not (home / "svc").exists()
