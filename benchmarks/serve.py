"""Serving benchmark: in-process ranking latency against the FLOP floor, and an HTTP load test.

    python benchmarks/serve.py            # full: 60 s of load from 50 clients
    python benchmarks/serve.py --quick    # a smaller model build and 10 s of load

1. Builds (or reuses) a registry with two versions of the default kuairand-sample v1 model
   (architecture of configs/kuairand_v1.toml; trained one epoch, since latency does not depend on
   the weights; v2 with another seed).
2. In-process: time to rank 500 candidates (feature assembly + model + score + top k), p50/p99,
   next to the FLOP floor = multiplications per example x 500 x 2 / matmul throughput measured
   here, between the latency runs: the peak (best of 1 and 2 threads, so the floor is the lowest
   it can be) and, since the machine may be shared, also the median throughput.
3. HTTP: the service in its own process on 127.0.0.1; this process runs 50 concurrent clients
   for the duration, and reloads v1 -> v2 half-way through. Every non-200 answer or transport
   error counts as an error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import torch

from watchnext.config import load_config
from watchnext.data.datasets import load_dataset
from watchnext.model.cost import multiplications
from watchnext.serve import ServingModel
from watchnext.serve.model_dir import load_ranker
from watchnext.workflows import build_service

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "src" / "watchnext" / "configs" / "kuairand_v1.toml"
CANDIDATES = 500


def build_registry(out: Path, quick: bool, rebuild: bool) -> Path:
    registry = out / "registry"
    if rebuild:
        shutil.rmtree(registry, ignore_errors=True)
    splits = load_dataset("kuairand-sample-v1")
    train = splits["train"].slice(0, 8000) if quick else splits["train"]
    for version, seed in (("v1", 0), ("v2", 1)):
        if (registry / version / "service.json").is_file():
            continue
        cfg = load_config(CONFIG).replace(train={"max_epochs": 1, "seed": seed, "progress": False})
        print(f"building {version} (1 epoch on {train.num_rows:,} rows) ...", flush=True)
        build_service(cfg, train, registry / version, valid=splits["valid"])
    return registry


class Matmul:
    """float32 1024x1024 matmul timings, sampled between the latency runs, so the throughput and
    the latencies are measured under the same conditions on this (possibly shared) machine."""

    def __init__(self, size: int = 1024):
        self.size = size
        self.a, self.b = torch.randn(size, size), torch.randn(size, size)
        self.samples: dict[int, list[float]] = {1: [], 2: []}

    def sample(self, repeats: int = 10) -> None:
        for threads, times in self.samples.items():
            torch.set_num_threads(threads)
            self.a @ self.b
            for _ in range(repeats):
                start = time.perf_counter()
                self.a @ self.b
                times.append(time.perf_counter() - start)
        torch.set_num_threads(1)

    def gflops(self, statistic) -> dict[int, float]:
        return {t: 2 * self.size**3 / statistic(times) / 1e9 for t, times in self.samples.items()}


def percentiles(seconds: list[float]) -> tuple[float, float]:
    p50, p99 = np.percentile(np.array(seconds) * 1e3, [50, 99])
    return float(p50), float(p99)


def time_calls(call, iterations: int, warmup: int = 30) -> list[float]:
    for _ in range(warmup):
        call()
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times


def in_process(model_dir: Path, iterations: int) -> dict[str, Any]:
    mults = multiplications(load_ranker(model_dir).model)["serving"]
    matmul = Matmul()
    rows = []
    for backend in ("onnx", "torch"):
        torch.set_num_threads(1)
        model = ServingModel.load(model_dir, backend=backend, threads=1)
        user = model.store.examples["users"][0]
        items = model.store.item_ids[:CANDIDATES]
        assert len(items) == CANDIDATES, "the model knows fewer than 500 videos"
        enc = model.store.encode(user["user_id"], items, None, _now())
        inputs = (enc.categorical, enc.dense, enc.multi, enc.device)
        matmul.sample()
        rank = time_calls(lambda m=model, u=user, i=items: m.score(u["user_id"], u["last_video"],
                                                                   None, i, k=10), iterations)
        matmul.sample()
        graph = time_calls(lambda m=model, x=inputs: m.backend.run(*x), iterations)
        rows.append((f"rank 500 candidates ({backend}, 1 thread)", *percentiles(rank)))
        rows.append((f"  of which model only ({backend})", *percentiles(graph)))
        if backend == "onnx":
            e2e = time_calls(lambda m=model, u=user: m.watch_next(u["user_id"], u["last_video"],
                                                                  None, k=10), iterations)
            rows.append(("watch-next: retrieve ~300 + rank (onnx)", *percentiles(e2e)))
    matmul.sample()
    peak, typical = matmul.gflops(min), matmul.gflops(np.median)
    flops = mults * CANDIDATES * 2
    return {"multiplications": mults, "gflops_peak": peak, "gflops_median": typical,
            "floor_ms": flops / (max(peak.values()) * 1e9) * 1e3,
            "floor_median_ms": flops / (max(typical.values()) * 1e9) * 1e3, "rows": rows}


def _now():
    import datetime as dt

    return dt.datetime.now(dt.UTC)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Connection:
    """A minimal keep-alive HTTP/1.1 client over asyncio streams: the load generator shares the
    machine with the server, so it should spend as little CPU per request as possible."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes, headers: str = "") -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\n"
                          f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                          f"{headers}\r\n".encode() + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        fields = {k.strip().lower(): v.strip() for k, _, v in
                  (line.partition(":") for line in lines[1:] if line)}
        payload = await self.reader.readexactly(int(fields.get("content-length", "0")))
        if fields.get("connection", "").lower() == "close":
            await self.close()
        return status, payload

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = self.reader = None


async def load_test(host: str, port: int, token: str, bodies: list[dict], clients: int,
                    duration: float) -> dict[str, Any]:
    latencies: list[float] = []
    errors: list[str] = []
    versions: dict[str, int] = {}
    reload_info: dict[str, Any] = {}
    encoded = [json.dumps(b).encode() for b in bodies]
    stop = time.perf_counter() + duration

    async def worker(seed: int) -> None:
        rng = random.Random(seed)
        connection = Connection(host, port)
        while time.perf_counter() < stop:
            start = time.perf_counter()
            try:
                status, payload = await connection.post("/v1/watch-next", rng.choice(encoded))
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                await connection.close()
                continue
            latencies.append(time.perf_counter() - start)
            if status != 200:
                errors.append(f"HTTP {status}: {payload[:200]!r}")
                continue
            version = json.loads(payload)["model_version"]
            versions[version] = versions.get(version, 0) + 1
        await connection.close()

    async def reloader() -> None:
        await asyncio.sleep(duration / 2)
        start = time.perf_counter()
        connection = Connection(host, port)
        status, payload = await connection.post(
            "/admin/reload", json.dumps({"version": "v2"}).encode(),
            f"Authorization: Bearer {token}\r\n")
        await connection.close()
        reload_info.update(status=status, seconds=time.perf_counter() - start,
                           body=json.loads(payload))

    began = time.perf_counter()
    await asyncio.gather(reloader(), *(worker(i) for i in range(clients)))
    elapsed = time.perf_counter() - began
    p50, p99 = percentiles(latencies) if latencies else (float("nan"), float("nan"))
    return {"requests": len(latencies), "errors": len(errors), "error_samples": errors[:5],
            "seconds": elapsed, "throughput": len(latencies) / elapsed, "p50_ms": p50,
            "p99_ms": p99, "versions": versions, "reload": reload_info}


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def http_benchmark(registry: Path, clients: int, duration: float) -> dict[str, Any]:
    token = secrets.token_hex(16)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "watchnext.serve", "serve", str(registry), "--port", str(port),
         "--version", "v1"], env={**os.environ, "WATCHNEXT_ADMIN_TOKEN": token},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"server exited: {server.stderr.read()}")
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server not ready after 180 s")
            time.sleep(0.3)
        examples = httpx.get(f"{url}/v1/examples").json()
        bodies = [{"user_id": u["user_id"], "video_id": u["last_video"], "k": 10}
                  for u in examples["users"]]
        bodies += [{"user_id": f"new-user-{i}", "video_id": v, "k": 10}
                   for i, v in enumerate(examples["videos"][:20])]
        server_cpu, client_cpu = process_cpu(server.pid), os.times()
        result = asyncio.run(load_test("127.0.0.1", port, token, bodies, clients, duration))
        after = os.times()
        result["server_cpu_s"] = process_cpu(server.pid) - server_cpu
        result["client_cpu_s"] = (after.user + after.system) - (client_cpu.user + client_cpu.system)
        return result
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()


def report(local: dict[str, Any], http: dict[str, Any], args: argparse.Namespace) -> None:
    floor, floor_median = local["floor_ms"], local["floor_median_ms"]
    peak, typical = local["gflops_peak"], local["gflops_median"]
    mults = local["multiplications"]
    print()
    print(f"watchnext serving benchmark  ({os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.2f} at the end; {'--quick' if args.quick else 'full'} run)")
    print(f"model: kuairand_v1 MMoE, {mults:,} multiplications per example")
    print(f"matmul throughput (float32 1024x1024, sampled between the runs below): peak "
          f"{peak[1]:.1f} GFLOP/s at 1 thread, {peak[2]:.1f} at 2; median {typical[1]:.1f} and "
          f"{typical[2]:.1f}")
    print(f"FLOP floor, 500 candidates: {mults:,} x 500 x 2 / {max(peak.values()):.1f} GFLOP/s "
          f"(peak) = {floor:.3f} ms;  at the median throughput: {floor_median:.3f} ms")
    print()
    print(f"{'in-process':<44}{'p50 ms':>9}{'p99 ms':>9}{'p50/floor':>11}{'vs median':>11}")
    for name, p50, p99 in local["rows"]:
        print(f"{name:<44}{p50:>9.3f}{p99:>9.3f}{p50 / floor:>10.2f}x"
              f"{p50 / floor_median:>10.2f}x")
    print()
    reload = http["reload"]
    print(f"HTTP load: {args.clients} concurrent clients, {http['seconds']:.0f} s, 127.0.0.1, "
          f"POST /v1/watch-next k=10 (server: 1 process, 1 inference thread)")
    print(f"  requests {http['requests']:,}   errors {http['errors']}   throughput "
          f"{http['throughput']:.1f} req/s   p50 {http['p50_ms']:.1f} ms   p99 "
          f"{http['p99_ms']:.1f} ms")
    print(f"  CPU: server {http['server_cpu_s'] / max(http['requests'], 1) * 1e3:.1f} ms per "
          f"request ({http['server_cpu_s'] / http['seconds']:.2f} cores), load generator "
          f"{http['client_cpu_s'] / http['seconds']:.2f} cores")
    print(f"  reload v1 -> v2 mid-load: HTTP {reload.get('status')} in "
          f"{reload.get('seconds', float('nan')):.2f} s; answers by version: {http['versions']}")
    for sample in http["error_samples"]:
        print(f"  error: {sample}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small build, short runs")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-serve")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the model versions")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=None, help="seconds of HTTP load")
    parser.add_argument("--iterations", type=int, default=None, help="in-process repetitions")
    args = parser.parse_args()
    duration = args.duration or (10.0 if args.quick else 60.0)
    iterations = args.iterations or (300 if args.quick else 2000)
    out = args.out / ("quick" if args.quick else "full")
    registry = build_registry(out, args.quick, args.rebuild)
    local = in_process(registry / "v1", iterations)
    http = http_benchmark(registry, args.clients, duration)
    report(local, http, args)
    (out / "results.json").write_text(json.dumps({"in_process": local, "http": http}, indent=2))
    if http["errors"] or http["reload"].get("status") != 200:
        sys.exit(1)


if __name__ == "__main__":
    main()
