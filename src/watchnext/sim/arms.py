"""Arms: build, train and serve each arm of an experiment on the same traffic."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from watchnext.api import Ranker
from watchnext.config import RunConfig
from watchnext.data.encoder import FeatureEncoder
from watchnext.model.cost import match_cost, serving_cost
from watchnext.sim import measure
from watchnext.sim.experiment_config import ArmSpec, run_config
from watchnext.sim.policies import ModelPolicy, Policy, explore, make_policy
from watchnext.sim.world import Outcomes, Traffic, Truth, World, slate_positions

Log = Callable[[str], None]


@dataclass
class TrainedArm:
    spec: ArmSpec
    policy: Policy
    config: RunConfig | None = None
    ranker: Ranker | None = None
    train_seconds: float = 0.0
    offline: dict[str, Any] = field(default_factory=dict)

    @property
    def cost(self) -> int | None:
        return self.ranker.cost()["serving"] if self.ranker else None


def reference_cost(base: RunConfig, train: pa.Table) -> int:
    """Multiplications per example of the base config's model: what ``cost`` multiplies."""
    return serving_cost(base, FeatureEncoder(base).fit(train))


def train_arm(base: RunConfig, arm: ArmSpec, train: pa.Table, valid: pa.Table | None, seed: int,
              cost_reference: int = 0, log: Log = print) -> TrainedArm:
    """Fit the arm's ranker (or return its fixed policy) with training seed
    ``seed + arm.seed_offset`` (an explicit ``train.seed`` in the arm wins)."""
    if arm.policy != "model":
        return TrainedArm(arm, make_policy(arm.policy))
    seed = arm.train.get("seed", seed + arm.seed_offset)
    cfg = run_config(base, arm).replace(train={"seed": seed, "progress": False})
    if arm.cost:
        cfg = match_cost(cfg, FeatureEncoder(cfg).fit(train), round(arm.cost * cost_reference))
    started = time.perf_counter()
    ranker = Ranker(cfg).fit(train, valid)
    seconds = time.perf_counter() - started
    offline = ranker.evaluate(valid) if valid is not None else {}
    log(f"trained {arm.name}: {cfg.model.kind}, {ranker.cost()['serving']:,} multiplications, "
        f"{seconds:.0f}s")
    serve_position = arm.serve_position if arm.position_feature else None
    policy = ModelPolicy(ranker, arm.name, arm.exponents or None, serve_position)
    return TrainedArm(arm, policy, cfg, ranker, seconds, offline)


@dataclass
class Served:
    """An arm's slates and responses on a traffic, and its model's predictions when it has one."""

    outcomes: Outcomes
    sums: dict[str, np.ndarray]
    predictions: np.ndarray | None = None
    scores: np.ndarray | None = None


def serve_arm(world: World, traffic: Traffic, truth: Truth, arm: TrainedArm, epsilon: float = 0.0
              ) -> Served:
    predictions = None
    if isinstance(arm.policy, ModelPolicy):
        predictions = arm.policy.predictions(world, traffic)
        scores = arm.policy.combine(predictions)
    else:
        scores = arm.policy.scores(world, traffic)
    position = slate_positions(explore(world, traffic, scores, epsilon), world.config.slots)
    outcomes = world.respond(traffic, position, truth)
    return Served(outcomes, measure.per_request(outcomes), predictions, scores)


def ground_truth(world: World, truth: Truth, arm: TrainedArm, served: Served, k: int) -> dict[str, Any]:
    """NDCG of the serving model against the truth, and its bias curves against the true ones."""
    if arm.ranker is None or served.predictions is None:
        return {}
    click = arm.config.task_names.index("click") if "click" in arm.config.task_names else 0
    out: dict[str, Any] = {"ndcg": measure.truth_ndcg(truth, served.predictions[..., click],
                                                       served.scores, k)}
    learned = arm.ranker.learned_bias()
    if learned:
        task = arm.config.task_names[click] if arm.config.task_names[click] in learned \
            else next(iter(learned))
        out["bias_task"] = task
        out["bias"] = measure.bias_check(world, learned[task].curves)
    return out
