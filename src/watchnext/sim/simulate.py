"""Serving simulated traffic with a policy and writing what happened as impression logs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow as pa

from watchnext.sim import logs
from watchnext.sim.experiment_config import LoggingSpec
from watchnext.sim.policies import EpsilonMix, Policy, make_policy, serve, served_by
from watchnext.sim.world import Outcomes, World

LOG_STREAM, EVAL_STREAM, FEEDBACK_STREAM = 0, 1, 2
Log = Callable[[str], None]


def log_day(world: World, day: int, requests: int, policy: Policy, root: str | Path,
            stream: int = LOG_STREAM) -> tuple[pa.Table, Outcomes]:
    """Serve one simulated day with ``policy``; write and return its impressions."""
    traffic = world.traffic(day, requests, stream)
    outcomes = serve(world, traffic, policy)
    table = logs.impressions(world, traffic, outcomes, served_by(policy, world, traffic))
    logs.write_day(table, root, world.config.date(day))
    return table, outcomes


def simulate_logs(world: World, spec: LoggingSpec, root: str | Path, log: Log = print) -> list[str]:
    """Days 0..days-1 served by the logging policy (with exploration); returns their dates."""
    policy = EpsilonMix(make_policy(spec.policy), spec.epsilon)
    dates = []
    for day in range(spec.days):
        table, _ = log_day(world, day, spec.requests_per_day, policy, root)
        dates.append(world.config.date(day))
        log(f"logged {dates[-1]}: {table.num_rows:,} impressions by {policy.name}")
    return dates
