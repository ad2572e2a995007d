"""Helpers for tests against real processes on 127.0.0.1: free ports and a served model."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
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


@dataclass
class Server:
    url: str
    log_path: Path

    def log(self) -> str:
        """What the server process has written to stdout and stderr so far."""
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def served(model_dir: Path, token: str = "", timeout: float = 120,
           args: tuple[str, ...] = ()) -> Iterator[Server]:
    """``python -m watchnext.serve serve MODEL_DIR`` on a free port, its output in a file."""
    port = free_port()
    env = {**os.environ, "WATCHNEXT_ADMIN_TOKEN": token}
    with tempfile.TemporaryDirectory() as folder:
        log_path = Path(folder) / "server.log"
        with log_path.open("w") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "watchnext.serve", "serve", str(model_dir), "--port",
                 str(port), *args], env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
        server = Server(f"http://127.0.0.1:{port}", log_path)
        try:
            def ready() -> bool:
                if process.poll() is not None:
                    raise RuntimeError(f"server exited: {server.log()}")
                return httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200

            wait_until(ready, timeout, "server")
            yield server
        finally:
            process.terminate()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
