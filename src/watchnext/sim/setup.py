"""What every kind of experiment shares: the world, its logs and the evaluation traffic."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from watchnext.sim import logs, sources
from watchnext.sim.arms import TrainedArm, reference_cost, train_arm
from watchnext.sim.experiment_config import Experiment, training_seed
from watchnext.sim.simulate import EVAL_STREAM, simulate_logs
from watchnext.sim.world import Traffic, Truth, World

Log = Callable[[str], None]


@dataclass
class Setup:
    experiment: Experiment
    world: World
    out: Path
    dates: list[str]
    train: pa.Table
    valid: pa.Table
    traffic: Traffic
    truth: Truth
    cost_reference: int
    log: Log
    jobs: int = 1  # trainings run at once, in worker processes (``watchnext.sim.parallel``)
    pools: dict[str, np.ndarray] = field(default_factory=dict)  # arm -> its pool's candidates
    _best: sources.CatalogueBest | None = field(default=None, repr=False)

    def arm_traffic(self, arm_name: str) -> tuple[Traffic, Truth]:
        """The evaluation traffic an arm serves, and its truth: the world's candidates, or with
        ``[retrieval]`` the arm's pool (``watchnext.sim.sources``). With ``[retrieval]`` every
        arm, the world's candidates too, draws its responses per (request, video), so arms
        differ only by what they show. Built on each call (a second or so; kept, ten pool arms
        would hold gigabytes)."""
        if not self.experiment.config.retrieval.pool_size:
            return self.traffic, self.truth
        candidates = self.pools.get(arm_name, self.traffic.candidates)
        return sources.arm_traffic(self.world, self.traffic, candidates)

    def catalogue_best(self) -> sources.CatalogueBest:
        """The catalogue's true top-k per evaluation request (k = ``evaluation.ndcg_k``)."""
        if self._best is None:
            self._best = sources.catalogue_best(self.world, self.traffic,
                                                self.experiment.config.evaluation.ndcg_k)
        return self._best

    def train_arm(self, arm_name: str, replicate: int = 0) -> TrainedArm:
        """Train an arm on the shared logs with the training seed of ``replicate``
        (``experiment_config.training_seed``: the arm's ``seed_offset`` is added)."""
        cfg = self.experiment.config
        arm = train_arm(self.experiment.ranker, cfg.arm(arm_name), self.train, self.valid,
                        training_seed(cfg.seed, replicate), self.cost_reference, self.log)
        if cfg.save_models and arm.ranker is not None:
            suffix = f"-replicate{replicate}" if replicate else ""
            arm.ranker.save(self.out / "models" / f"{arm_name}{suffix}")
        return arm


def prepare(experiment: Experiment, out: Path, log: Log, jobs: int = 1) -> Setup:
    """Log the training days with the logging policy and draw the evaluation traffic; with
    ``[retrieval]``, fit the pool and write every pool arm's candidates (``sim.sources``)."""
    world = World(experiment.world)
    cfg = experiment.config
    dates = simulate_logs(world, cfg.logging, out / "logs", log)
    traffic = evaluation_traffic(experiment, world)
    if cfg.retrieval.pool_size:
        pool = sources.write_candidates(experiment, world, out, dates, traffic)["pool"]
        log(f"pool of {cfg.retrieval.pool_size} fitted (quotas {pool['quotas']}) and written "
            f"for {len(traffic.user)} requests")
    return load(experiment, out, dates, log, jobs, world, traffic)


def evaluation_traffic(experiment: Experiment, world: World) -> Traffic:
    """The requests every arm serves: the day after the logs, on their own random stream."""
    cfg = experiment.config
    return world.traffic(cfg.logging.days, cfg.evaluation.requests, EVAL_STREAM)


def load(experiment: Experiment, out: Path, dates: list[str], log: Log, jobs: int = 1,
         world: World | None = None, traffic: Traffic | None = None) -> Setup:
    """The setup of logs already written to ``out / "logs"``: the training days, the validation
    day (the last date) and the evaluation traffic, which the world's seed fixes (``world`` and
    ``traffic`` are rebuilt from the config when not given)."""
    cfg = experiment.config
    world = world or World(experiment.world)
    train = logs.read_days(out / "logs", dates[:-1])
    valid = logs.read_days(out / "logs", dates[-1:])
    traffic = traffic or evaluation_traffic(experiment, world)
    pools = sources.read_candidates(cfg, out, len(traffic.user)) if cfg.retrieval.pool_size \
        else {}
    return Setup(experiment, world, out, dates, train, valid, traffic, world.truth(traffic),
                 reference_cost(experiment.ranker, train), log, jobs, pools)
