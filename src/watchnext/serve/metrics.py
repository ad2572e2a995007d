"""Prometheus metrics in the text exposition format, without a client library.

Request counts by route, method and status; a latency histogram per route; the served model's
version and backend; reload outcomes; cold-start counts. Routes are labelled by their template
(``/v1/watch-next``), unknown paths as ``unmatched``, so label values stay few.
"""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items()) + "}"


class Metrics:
    """Thread-safe counters and histograms, rendered on demand."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self.bucket_counts: dict[str, list[int]] = defaultdict(lambda: [0] * (len(BUCKETS) + 1))
        self.latency_sum: dict[str, float] = defaultdict(float)
        self.cold_starts: dict[str, int] = defaultdict(int)

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(route, method, status)] += 1
            self.bucket_counts[route][bisect.bisect_left(BUCKETS, seconds)] += 1
            self.latency_sum[route] += seconds

    def cold_start(self, kind: str) -> None:
        with self._lock:
            self.cold_starts[kind] += 1

    def ranked(self, known_user: bool, unknown_video: bool) -> None:
        """Count the cold-start paths one ranking request took."""
        if not known_user:
            self.cold_start("user")
        if unknown_video:
            self.cold_start("video")

    def render(self, model_info: dict[str, str] | None, reloads: dict[str, int]) -> str:
        lines = ["# HELP watchnext_requests_total HTTP requests by route, method and status.",
                 "# TYPE watchnext_requests_total counter"]
        with self._lock:
            for (route, method, status), count in sorted(self.requests.items()):
                lines.append(f"watchnext_requests_total"
                             f"{_labels(route=route, method=method, status=str(status))} {count}")
            lines += ["# HELP watchnext_request_duration_seconds HTTP request latency by route.",
                      "# TYPE watchnext_request_duration_seconds histogram"]
            for route, counts in sorted(self.bucket_counts.items()):
                cumulative = 0
                for bound, count in zip((*BUCKETS, float("inf")), counts, strict=True):
                    cumulative += count
                    le = "+Inf" if bound == float("inf") else repr(bound)
                    lines.append(f"watchnext_request_duration_seconds_bucket"
                                 f"{_labels(route=route, le=le)} {cumulative}")
                lines.append(f"watchnext_request_duration_seconds_sum{_labels(route=route)} "
                             f"{self.latency_sum[route]:.6f}")
                lines.append(f"watchnext_request_duration_seconds_count{_labels(route=route)} "
                             f"{cumulative}")
            lines += ["# HELP watchnext_cold_start_total Requests served on the cold-start path.",
                      "# TYPE watchnext_cold_start_total counter"]
            for kind in ("user", "video"):
                lines.append(f"watchnext_cold_start_total{_labels(kind=kind)} "
                             f"{self.cold_starts[kind]}")
        lines += ["# HELP watchnext_model_info The model version being served (value 1).",
                  "# TYPE watchnext_model_info gauge"]
        if model_info:
            lines.append(f"watchnext_model_info{_labels(**model_info)} 1")
        lines += ["# HELP watchnext_model_reloads_total Model reloads by result.",
                  "# TYPE watchnext_model_reloads_total counter"]
        for result in ("success", "failure"):
            lines.append(f"watchnext_model_reloads_total{_labels(result=result)} "
                         f"{reloads.get(result, 0)}")
        return "\n".join(lines) + "\n"
