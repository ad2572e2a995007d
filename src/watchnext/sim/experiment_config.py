"""Experiment configs (``experiment_*.toml``): a world, training logs, arms and what to measure.

    name = "table2"
    kind = "arms"                 # arms | polarisation | sweep | feedback
    seed = 0                      # seeds the world, the traffic and the training
    replicates = 3                # arms: train every arm this many times (training seeds)
    world = "sim_world.toml"      # paths relative to this file
    ranker = "sim_ranker.toml"    # the base run config every arm starts from

    [logging]                     # the logs every arm is trained on
    policy = "popularity"         # random | popularity
    epsilon = 0.2                 # share of requests given a random slate
    days = 3
    requests_per_day = 15000

    [evaluation]                  # the live test: fresh traffic served by every arm
    requests = 20000
    control = "no_debiasing"

    [[arms]]
    name = "no_debiasing"
    bias = { position = "" }      # merged into the ranker config's [bias]; also model, train

    [retrieval]                   # arms: rank watchnext's candidate pool instead of the world's
    pool_size = 100               # candidates (``watchnext.sim.sources``); arms then take
    shares = { topic = 0.5, popular = 0.5 }   # sources = [...], drop_source or world_candidates

Every error names its key (``arms[2].bias.method``).
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from watchnext.config import ConfigError, RunConfig, load_config
from watchnext.retrieve.pool import DEFAULT_POPULAR, DEFAULT_SHARES, SOURCE_KINDS
from watchnext.sim.spec import build, check, one_of, positive, unit
from watchnext.sim.world_config import WorldConfig, load_world

KINDS = ("arms", "polarisation", "sweep", "feedback")
LOGGING_POLICIES = ("random", "popularity")
ARM_POLICIES = ("model", "random", "popularity")
RUN_SECTIONS = ("model", "bias", "train")
REPLICATE_STRIDE = 1000  # replicate r trains with seed + r * stride + seed_offset: never shared


def training_seed(seed: int, replicate: int, seed_offset: int = 0) -> int:
    """The training seed of an arm in a replicate: distinct for every (replicate, offset) pair,
    so an A/A arm (offset 1) never reuses another replicate's control model."""
    return seed + replicate * REPLICATE_STRIDE + seed_offset


@dataclass(frozen=True)
class LoggingSpec:
    policy: str = "popularity"
    epsilon: float = 0.2
    days: int = 3
    requests_per_day: int = 15000


@dataclass(frozen=True)
class EvaluationSpec:
    requests: int = 20000
    control: str = ""
    epsilon: float = 0.0
    ndcg_k: int = 10


@dataclass(frozen=True)
class ArmSpec:
    """One arm: a policy, or a ranker built from the base config with these overrides.

    ``cost`` > 0 resizes the model to that multiple of the base config's multiplications;
    ``position_feature`` adds the display position as an ordinary input, set to
    ``serve_position`` for every candidate at serving. The training seed is the experiment's
    seed plus ``seed_offset`` (plus ``REPLICATE_STRIDE`` per replicate): an arm identical to
    another but for its offset is an A/A arm, which measures how much retraining alone moves the
    metrics.
    """

    name: str
    policy: str = "model"
    model: dict[str, Any] = field(default_factory=dict)
    bias: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    cost: float = 0.0
    position_feature: bool = False
    serve_position: int = 1
    exponents: tuple[float, ...] = ()
    seed_offset: int = 0
    sources: tuple[str, ...] = ()  # with [retrieval]: the pool's sources this arm keeps
    drop_source: str = ""  # with [retrieval]: every source but this one
    world_candidates: bool = False  # with [retrieval]: the world's own candidates, no pool


@dataclass(frozen=True)
class RetrievalSpec:
    """Arms rank candidates from watchnext's pool (``watchnext.sim.sources``): the default
    sources with these quota ``shares`` of ``pool_size``, fitted once on every logged day;
    ``exclude_watched``: a user's pools leave out the videos the user clicked in the logs.
    ``pool_size`` 0 (no ``[retrieval]`` section): arms rank the world's own candidates."""

    pool_size: int = 0
    shares: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_SHARES))
    fresh_share: float = DEFAULT_POPULAR["fresh_share"]
    fresh_days: float = DEFAULT_POPULAR["fresh_days"]
    exclude_watched: bool = True

    @property
    def popular(self) -> dict[str, float]:
        return {"fresh_share": self.fresh_share, "fresh_days": self.fresh_days}


@dataclass(frozen=True)
class PolarisationSpec:
    seeds: int = 6


def _default_grid() -> dict[str, list[float]]:
    return {"engagement": [1.0], "satisfaction": [0.0, 0.25, 0.5, 1.0, 2.0, 4.0]}


@dataclass(frozen=True)
class SweepSpec:
    """Multipliers of the default exponents, crossed over every key of ``grid``.

    A key is a task name or a group (``engagement``, ``satisfaction``); a task's exponent is its
    default times its own multiplier if it has one, else its group's, else 1. Only ratios of
    exponents change a ranking, so one key can stay at 1.
    """

    arm: str = ""
    grid: dict[str, list[float]] = field(default_factory=_default_grid)


@dataclass(frozen=True)
class FeedbackSpec:
    """Each arm retrains on the last ``window`` days of its own logs, for ``rounds`` rounds."""

    rounds: int = 3
    requests_per_round: int = 15000
    window: int = 3
    epsilon: float = 0.05


@dataclass(frozen=True)
class ExperimentConfig:
    name: str
    kind: str
    arms: tuple[ArmSpec, ...]
    seed: int = 0
    replicates: int = 1
    description: str = ""
    world: str = "sim_world.toml"
    ranker: str = "sim_ranker.toml"
    save_models: bool = False
    logging: LoggingSpec = field(default_factory=LoggingSpec)
    evaluation: EvaluationSpec = field(default_factory=EvaluationSpec)
    retrieval: RetrievalSpec = field(default_factory=RetrievalSpec)
    polarisation: PolarisationSpec = field(default_factory=PolarisationSpec)
    sweep: SweepSpec = field(default_factory=SweepSpec)
    feedback: FeedbackSpec = field(default_factory=FeedbackSpec)

    @property
    def control(self) -> str:
        return self.evaluation.control or self.arms[0].name

    def arm(self, name: str) -> ArmSpec:
        return next(a for a in self.arms if a.name == name)


@dataclass
class Experiment:
    """A loaded experiment: its config, the world it runs in and the base ranker config."""

    config: ExperimentConfig
    world: WorldConfig
    ranker: RunConfig
    source: Path | None = None


def experiment_from_dict(raw: dict[str, Any], base_dir: str | Path = ".") -> Experiment:
    """Validate an experiment config; ``world`` and ``ranker`` resolve against ``base_dir``."""
    cfg = build(ExperimentConfig, raw, "")
    check("retrieval" not in raw or cfg.retrieval.pool_size > 0, "retrieval.pool_size",
          f"a [retrieval] section needs pool_size > 0, got {cfg.retrieval.pool_size}")
    _validate(cfg)
    base_dir = Path(base_dir)
    world = dataclasses.replace(load_world(_resolve(cfg.world, base_dir, "world")), seed=cfg.seed)
    ranker = load_config(_resolve(cfg.ranker, base_dir, "ranker"))
    for i, arm in enumerate(cfg.arms):
        if arm.policy == "model":
            run_config(ranker, arm, where=f"arms[{i}]")
        check(arm.serve_position <= world.slots, f"arms[{i}].serve_position",
              f"must be a shown slot (1..{world.slots}), got {arm.serve_position}")
    if cfg.kind == "sweep":
        names = {*ranker.task_names, "engagement", "satisfaction"}
        for key in cfg.sweep.grid:
            check(key in names, f"sweep.grid.{key}",
                  f"not a task or group (tasks: {', '.join(ranker.task_names)}; groups: "
                  "engagement, satisfaction)")
    if cfg.kind in ("sweep", "polarisation", "feedback"):
        check(any(a.policy == "model" for a in cfg.arms), "arms",
              f"a {cfg.kind} experiment needs at least one arm with policy 'model'")
    return Experiment(cfg, world, ranker)


def load_experiment(path: str | Path) -> Experiment:
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read experiment config: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    try:
        experiment = experiment_from_dict(raw, path.parent)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    experiment.source = path
    return experiment


def run_config(base: RunConfig, arm: ArmSpec, where: str = "arm") -> RunConfig:
    """The arm's run config: the base with the arm's sections merged in, validated."""
    sections = {name: getattr(arm, name) for name in RUN_SECTIONS if getattr(arm, name)}
    if arm.position_feature:
        position = base.bias.position or "position"
        features = [*base.to_dict()["features"],
                    {"name": "display_position", "kind": "categorical", "column": position,
                     "embedding_dim": 4}]
        sections["features"] = features
        sections["bias"] = {**sections.get("bias", {}), "position": "", "device": ""}
    try:
        cfg = base.replace(**sections)
    except ConfigError as exc:
        raise ConfigError(f"{where}.{exc}") from exc
    if arm.exponents:
        check(len(arm.exponents) == len(cfg.tasks), f"{where}.exponents",
              f"needs one exponent per task ({len(cfg.tasks)}), got {len(arm.exponents)}")
    return cfg


def _resolve(path: str, base_dir: Path, key: str) -> Path:
    candidate = Path(path)
    if not candidate.is_absolute():
        candidate = base_dir / candidate
    if not candidate.exists():
        raise ConfigError(f"{key}: no such file {str(candidate)!r}")
    return candidate


def _validate(cfg: ExperimentConfig) -> None:
    one_of(cfg.kind, KINDS, "kind")
    check(bool(cfg.name), "name", "must not be empty")
    positive(cfg.replicates, "replicates")
    lg, ev = cfg.logging, cfg.evaluation
    one_of(lg.policy, LOGGING_POLICIES, "logging.policy")
    unit(lg.epsilon, "logging.epsilon")
    positive(lg.days, "logging.days")
    check(lg.days >= 2, "logging.days", f"needs at least 2 days (train + validation), got {lg.days}")
    positive(lg.requests_per_day, "logging.requests_per_day")
    positive(ev.requests, "evaluation.requests")
    unit(ev.epsilon, "evaluation.epsilon")
    positive(ev.ndcg_k, "evaluation.ndcg_k")
    check(bool(cfg.arms), "arms", "at least one arm is required")
    names = [a.name for a in cfg.arms]
    for i, arm in enumerate(cfg.arms):
        key = f"arms[{i}]"
        check(bool(arm.name) and names.index(arm.name) == i, f"{key}.name",
              f"must be a unique non-empty name, got {arm.name!r}")
        one_of(arm.policy, ARM_POLICIES, f"{key}.policy")
        positive(arm.cost, f"{key}.cost", zero_ok=True)
        positive(arm.serve_position, f"{key}.serve_position")
        check(0 <= arm.seed_offset < REPLICATE_STRIDE, f"{key}.seed_offset",
              f"must be in 0..{REPLICATE_STRIDE - 1}, got {arm.seed_offset}")
        if arm.policy != "model":
            for section in (*RUN_SECTIONS, "exponents"):
                check(not getattr(arm, section), f"{key}.{section}",
                      f"only arms with policy 'model' take a {section} section")
    _validate_retrieval(cfg)
    check(not ev.control or ev.control in names, "evaluation.control",
          f"{ev.control!r} is not an arm (arms: {', '.join(names)})")
    positive(cfg.polarisation.seeds, "polarisation.seeds")
    check(not cfg.sweep.arm or cfg.sweep.arm in names, "sweep.arm",
          f"{cfg.sweep.arm!r} is not an arm (arms: {', '.join(names)})")
    check(bool(cfg.sweep.grid), "sweep.grid", "at least one key is required")
    for key, values in cfg.sweep.grid.items():
        check(isinstance(values, list) and bool(values) and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in values),
            f"sweep.grid.{key}", f"expected a non-empty list of numbers, got {values!r}")
    fb = cfg.feedback
    positive(fb.rounds, "feedback.rounds")
    positive(fb.requests_per_round, "feedback.requests_per_round")
    positive(fb.window, "feedback.window")
    unit(fb.epsilon, "feedback.epsilon")


def arm_sources(cfg: ExperimentConfig, arm: ArmSpec) -> tuple[str, ...] | None:
    """The pool sources an arm ranks, in the pool's order; None: the world's own candidates
    (no ``[retrieval]`` section, or ``world_candidates``)."""
    if not cfg.retrieval.pool_size or arm.world_candidates:
        return None
    names = tuple(cfg.retrieval.shares)
    if arm.sources:
        return tuple(n for n in names if n in arm.sources)
    return tuple(n for n in names if n != arm.drop_source)


def _validate_retrieval(cfg: ExperimentConfig) -> None:
    rt = cfg.retrieval
    positive(rt.pool_size, "retrieval.pool_size", zero_ok=True)
    if rt.pool_size:
        check(cfg.kind == "arms", "retrieval",
              f"only arms experiments rank a candidate pool, not a {cfg.kind} experiment")
    check(bool(rt.shares), "retrieval.shares", "at least one source is required")
    for name, share in rt.shares.items():
        check(name in SOURCE_KINDS, f"retrieval.shares.{name}",
              f"not a source (sources: {', '.join(SOURCE_KINDS)})")
        check(isinstance(share, int | float) and not isinstance(share, bool) and share > 0,
              f"retrieval.shares.{name}", f"expected a number > 0, got {share!r}")
    unit(rt.fresh_share, "retrieval.fresh_share")
    positive(rt.fresh_days, "retrieval.fresh_days")
    known = ", ".join(rt.shares)
    for i, arm in enumerate(cfg.arms):
        key = f"arms[{i}]"
        for field_name in ("sources", "drop_source", "world_candidates"):
            check(not getattr(arm, field_name) or rt.pool_size > 0, f"{key}.{field_name}",
                  "needs a [retrieval] section (the pool the arm's candidates come from)")
        check(sum(map(bool, (arm.sources, arm.drop_source, arm.world_candidates))) <= 1, key,
              "takes at most one of sources, drop_source and world_candidates")
        for j, name in enumerate(arm.sources):
            check(name in rt.shares and arm.sources.index(name) == j, f"{key}.sources[{j}]",
                  f"{name!r} is not a pool source, or is listed twice (pool sources: {known})")
        if arm.drop_source:
            check(arm.drop_source in rt.shares, f"{key}.drop_source",
                  f"{arm.drop_source!r} is not a pool source (pool sources: {known})")
            check(len(rt.shares) > 1, f"{key}.drop_source",
                  "dropping the pool's only source leaves no candidates")
