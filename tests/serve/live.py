"""Helpers for tests against real processes on 127.0.0.1: free ports and a served model."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (httpx.HTTPError, OSError) as exc:
            last = exc
        time.sleep(0.2)
    raise TimeoutError(f"{what} not ready after {timeout:.0f}s ({last})")


@contextlib.contextmanager
def served(model_dir: Path, token: str = "", timeout: float = 120) -> Iterator[str]:
    """``python -m watchnext.serve serve MODEL_DIR`` on a free port; yields its base URL."""
    port = free_port()
    env = {**os.environ, "WATCHNEXT_ADMIN_TOKEN": token}
    process = subprocess.Popen(
        [sys.executable, "-m", "watchnext.serve", "serve", str(model_dir), "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        def ready() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"server exited: {process.stdout.read()}")
            return httpx.get(f"{url}/readyz", timeout=2).status_code == 200

        wait_until(ready, timeout, "server")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
