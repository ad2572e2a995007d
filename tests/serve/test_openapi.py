"""The published OpenAPI document says exactly what the server accepts and answers.

Schemathesis (the ``st`` command, all checks: schema-valid requests accepted, schema-invalid ones
refused, every status code, header and body as documented, no 5xx, auth enforced) runs against
the real server process on 127.0.0.1, serving a model that knows devices, so the document's device
enum is exercised too (PyTorch backend: the many reloads it makes stay cheap). Bounded by
examples per operation; a fixed seed makes a failure reproducible (WATCHNEXT_SCHEMATHESIS_EXAMPLES
digs deeper).
"""

import os
import subprocess
import sys

import pytest

from .live import served

pytestmark = pytest.mark.slow
TOKEN = "schemathesis-token"
EXAMPLES = os.environ.get("WATCHNEXT_SCHEMATHESIS_EXAMPLES", "25")


def test_schemathesis_finds_no_failure(device_model_dir, tmp_path):
    with served(device_model_dir, token=TOKEN, args=("--backend", "torch")) as server:
        result = subprocess.run(
            [sys.executable, "-m", "schemathesis.cli", "run", f"{server.url}/openapi.json",
             "--checks", "all", "--header", f"Authorization: Bearer {TOKEN}",
             "--max-examples", EXAMPLES, "--seed", "0", "--workers", "1", "--no-color",
             "--generation-database", "none", "--report-dir", str(tmp_path)],
            capture_output=True, text=True, timeout=240, cwd=tmp_path)
        log = server.log()
    summary = result.stdout[-6000:]
    assert result.returncode == 0, f"{summary}\n{result.stderr[-2000:]}"
    assert "No issues found" in result.stdout, summary
    assert "Traceback" not in log, log
