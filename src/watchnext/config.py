"""The run config: the one source of truth for a run, validated on load, saved with every checkpoint.

A config is a TOML file with the sections ``[data]``, ``[[features]]``, ``[[tasks]]``, ``[bias]``,
``[model]`` and ``[train]``. Every error names the offending key (``tasks[2].group``), so a typo
fails at load time, not an hour into training.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

FEATURE_KINDS = ("categorical", "numeric", "multi_categorical")
NUMERIC_TRANSFORMS = ("none", "log1p", "standardize", "log1p_standardize")
TASK_TYPES = ("binary", "regression")
TASK_GROUPS = ("engagement", "satisfaction")
MODEL_KINDS = ("mmoe", "shared_bottom")
GATE_INPUTS = ("bottom", "input")
POSITIVE_MAPS = ("exp", "softplus", "identity")
BIAS_METHODS = ("shallow_tower", "adversarial")
BIAS_MISSING = ("exposure_mean", "dropout")
PRECISIONS = ("fp32", "bf16")
EARLY_STOPPING = ("total", "engagement")


class ConfigError(ValueError):
    """A config value is missing, of the wrong type or out of range; the message names the key."""


@dataclass(frozen=True)
class FeatureSpec:
    """One model input. ``column`` defaults to ``name``; ``source`` may be an expression."""

    name: str
    kind: Literal["categorical", "numeric", "multi_categorical"]
    column: str = ""
    expression: str = ""
    embedding_dim: int = 16
    min_count: int = 1
    max_vocab: int = 0
    transform: str = "none"
    separator: str = "|"
    max_length: int = 16
    hash_buckets: int = 0  # > 0: ids hashed into this many buckets, no vocabulary (open id spaces)

    @property
    def source(self) -> str:
        return self.expression or self.column or self.name


@dataclass(frozen=True)
class TaskSpec:
    """One objective: a binary (cross-entropy) or regression (squared error) head."""

    name: str
    type: Literal["binary", "regression"]
    label: str
    group: Literal["engagement", "satisfaction"]
    loss_weight: float = 1.0
    exponent: float = 1.0
    positive_map: str = "exp"


@dataclass(frozen=True)
class BiasSpec:
    """Selection-bias features for the shallow tower; empty ``position`` disables it.

    ``method = "adversarial"`` replaces the shallow tower by a gradient-reversal head that
    predicts the position from the shared bottom layer (see model/adversarial.py).
    ``missing`` is how the serving (position unknown) value is learned: ``"exposure_mean"``
    derives it from the per-position values, ``"dropout"`` (the paper) hides the position of a
    share ``position_dropout`` of training rows. ``smoothness`` weighs the tower's roughness
    across positions (from the step after position ``smooth_from``) in the loss;
    ``learning_rate_scale`` multiplies ``train.learning_rate`` for
    the tower's parameters. docs/debiasing.md measures each.
    """

    position: str = ""
    device: str = ""
    max_position: int = 32
    missing: Literal["exposure_mean", "dropout"] = "exposure_mean"
    position_dropout: float = 0.0
    smoothness: float = 0.003
    smooth_from: int = 1
    learning_rate_scale: float = 10.0
    embedding_dim: int = 8
    hidden_units: tuple[int, ...] = (16,)
    method: str = "shallow_tower"
    adversarial_weight: float = 1.0


@dataclass(frozen=True)
class ModelSpec:
    """Architecture: SharedBottom baseline or MMoE on a shared bottom layer."""

    kind: Literal["mmoe", "shared_bottom"] = "mmoe"
    bottom_units: tuple[int, ...] = (128,)
    num_experts: int = 8
    expert_units: tuple[int, ...] = (64,)
    gate_input: Literal["bottom", "input"] = "bottom"
    gate_dropout: float = 0.1
    tower_units: tuple[int, ...] = (32,)
    dropout: float = 0.0


@dataclass(frozen=True)
class TrainSpec:
    """Optimisation and early stopping."""

    batch_size: int = 1024
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    table_weight_decay: float = 0.0  # added to weight_decay for the id embedding tables
    max_epochs: int = 10
    patience: int = 2
    early_stopping: Literal["total", "engagement"] = "total"  # which validation loss picks the epoch
    seed: int = 0
    threads: int = 0
    progress: bool = True
    # speed (docs/performance.md): row-wise Adam for id tables, bf16 autocast, torch.compile,
    # glibc keeps freed memory for reuse (watchnext.train.speed.retain_freed_memory)
    sparse_embeddings: bool = False
    precision: str = "fp32"
    compile: bool = False
    retain_freed_memory: bool = True


@dataclass(frozen=True)
class DataSpec:
    """Where the logs are and which columns identify users, requests and time chunks."""

    train: tuple[str, ...] = ()
    valid: tuple[str, ...] = ()
    test: tuple[str, ...] = ()
    user_column: str = "user_id"
    request_column: str = ""
    day_column: str = ""
    dataset: str = ""


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run."""

    features: tuple[FeatureSpec, ...]
    tasks: tuple[TaskSpec, ...]
    bias: BiasSpec = field(default_factory=BiasSpec)
    model: ModelSpec = field(default_factory=ModelSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    data: DataSpec = field(default_factory=DataSpec)
    name: str = "run"

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))

    def replace(self, **sections: Any) -> RunConfig:
        """A copy with whole sections or section fields replaced, validated again.

        ``cfg.replace(model={"kind": "shared_bottom"})`` merges into the model section.
        """
        raw = self.to_dict()
        for key, value in sections.items():
            if isinstance(value, dict) and isinstance(raw.get(key), dict):
                raw[key] = {**raw[key], **value}
            else:
                raw[key] = value
        return config_from_dict(raw)


def load_config(path: str | Path) -> RunConfig:
    """Read and validate a TOML (or JSON, as saved beside checkpoints) run config.

    Relative data paths are resolved against the config file's folder.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from exc
    try:
        raw = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not valid {path.suffix.lstrip('.').upper()}: {exc}") from exc
    try:
        cfg = config_from_dict(raw)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    return _resolve_paths(cfg, path.parent)


def _resolve_paths(cfg: RunConfig, base: Path) -> RunConfig:
    def resolve(paths: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(str(p if Path(p).is_absolute() else (base / p).resolve()) for p in paths)

    data = dataclasses.replace(
        cfg.data, train=resolve(cfg.data.train), valid=resolve(cfg.data.valid),
        test=resolve(cfg.data.test),
    )
    return dataclasses.replace(cfg, data=data)


def config_from_dict(raw: dict[str, Any]) -> RunConfig:
    """Build a RunConfig from plain data, raising ConfigError that names the bad key."""
    _check_keys(raw, {f.name for f in dataclasses.fields(RunConfig)}, "")
    features = tuple(
        _build(FeatureSpec, item, f"features[{i}]") for i, item in enumerate(_list(raw, "features"))
    )
    tasks = tuple(_build(TaskSpec, item, f"tasks[{i}]") for i, item in enumerate(_list(raw, "tasks")))
    cfg = RunConfig(
        features=features,
        tasks=tasks,
        bias=_build(BiasSpec, raw.get("bias", {}), "bias"),
        model=_build(ModelSpec, raw.get("model", {}), "model"),
        train=_build(TrainSpec, raw.get("train", {}), "train"),
        data=_build(DataSpec, raw.get("data", {}), "data"),
        name=_typed(raw.get("name", "run"), str, "name"),
    )
    _validate(cfg)
    return cfg


def _list(raw: dict[str, Any], key: str) -> list[Any]:
    value = raw.get(key)
    if not isinstance(value, list | tuple) or not value:
        raise ConfigError(f"{key}: at least one entry is required")
    return list(value)


def _check_keys(raw: Any, allowed: set[str], where: str) -> None:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where or 'config'}: expected a table, got {type(raw).__name__}")
    unknown = sorted(set(raw) - allowed)
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(f"{prefix}{unknown[0]}: unknown key (allowed: {', '.join(sorted(allowed))})")


def _build(cls: type, raw: Any, where: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    _check_keys(raw, set(fields), where)
    values = {}
    for name, f in fields.items():
        if name in raw:
            values[name] = _coerce(raw[name], f.type, f"{where}.{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}.{name}: required key is missing")
    return cls(**values)


def _coerce(value: Any, annotation: str, key: str) -> Any:
    if annotation.startswith("tuple[int"):
        items = value if isinstance(value, list | tuple) else None
        if items is None or not all(isinstance(v, int) and not isinstance(v, bool) for v in items):
            raise ConfigError(f"{key}: expected a list of integers, got {value!r}")
        return tuple(items)
    if annotation.startswith("tuple[str"):
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list | tuple) or not all(isinstance(v, str) for v in items):
            raise ConfigError(f"{key}: expected a path or a list of paths, got {value!r}")
        return tuple(items)
    if annotation.startswith("Literal"):
        return _typed(value, str, key)
    kinds = {"int": int, "float": float, "str": str, "bool": bool}
    return _typed(value, kinds[annotation], key)


def _typed(value: Any, kind: type, key: str) -> Any:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is not bool and isinstance(value, bool):
        raise ConfigError(f"{key}: expected {kind.__name__}, got a boolean")
    if not isinstance(value, kind):
        raise ConfigError(f"{key}: expected {kind.__name__}, got {type(value).__name__} {value!r}")
    return value


def _one_of(value: str, allowed: tuple[str, ...], key: str) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(allowed)}")


def _positive(value: float, key: str, zero_ok: bool = False) -> None:
    if value < 0 or (value == 0 and not zero_ok):
        raise ConfigError(f"{key}: must be {'>= 0' if zero_ok else '> 0'}, got {value}")


def _probability(value: float, key: str) -> None:
    if not 0.0 <= value < 1.0:
        raise ConfigError(f"{key}: must be in [0, 1), got {value}")


def _unique(names: list[str], key: str) -> None:
    seen = set()
    for i, name in enumerate(names):
        if name in seen:
            raise ConfigError(f"{key}[{i}].name: duplicate name {name!r}")
        seen.add(name)


def _validate(cfg: RunConfig) -> None:
    _unique([f.name for f in cfg.features], "features")
    _unique([t.name for t in cfg.tasks], "tasks")
    for i, f in enumerate(cfg.features):
        _validate_feature(f, f"features[{i}]")
    for i, t in enumerate(cfg.tasks):
        _validate_task(t, f"tasks[{i}]")
    _validate_bias(cfg.bias)
    _validate_model(cfg.model)
    _validate_train(cfg.train)


def _validate_feature(f: FeatureSpec, key: str) -> None:
    _one_of(f.kind, FEATURE_KINDS, f"{key}.kind")
    _one_of(f.transform, NUMERIC_TRANSFORMS, f"{key}.transform")
    _positive(f.embedding_dim, f"{key}.embedding_dim")
    _positive(f.min_count, f"{key}.min_count")
    _positive(f.max_vocab, f"{key}.max_vocab", zero_ok=True)
    _positive(f.max_length, f"{key}.max_length")
    if f.kind != "numeric" and f.expression:
        raise ConfigError(f"{key}.expression: only numeric features may be expressions")
    if f.kind != "numeric" and f.transform != "none":
        raise ConfigError(f"{key}.transform: only numeric features take a transform")
    _positive(f.hash_buckets, f"{key}.hash_buckets", zero_ok=True)
    if f.kind == "numeric" and f.hash_buckets:
        raise ConfigError(f"{key}.hash_buckets: only id features (categorical) can be hashed")


def _validate_task(t: TaskSpec, key: str) -> None:
    _one_of(t.type, TASK_TYPES, f"{key}.type")
    _one_of(t.group, TASK_GROUPS, f"{key}.group")
    _one_of(t.positive_map, POSITIVE_MAPS, f"{key}.positive_map")
    _positive(t.loss_weight, f"{key}.loss_weight", zero_ok=True)
    if not t.label:
        raise ConfigError(f"{key}.label: must name a column or an expression")


def _validate_bias(b: BiasSpec) -> None:
    if b.device and not b.position:
        raise ConfigError("bias.device: a device crossing needs bias.position as well")
    _positive(b.max_position, "bias.max_position")
    _one_of(b.missing, BIAS_MISSING, "bias.missing")
    _probability(b.position_dropout, "bias.position_dropout")
    if b.missing == "dropout" and b.position_dropout == 0:
        raise ConfigError("bias.position_dropout: bias.missing = 'dropout' needs a share > 0 "
                          "(the paper used 0.1)")
    if b.missing != "dropout" and b.position_dropout > 0:
        raise ConfigError("bias.position_dropout: only used with bias.missing = 'dropout'; "
                          f"set it to 0 with bias.missing = {b.missing!r}")
    _positive(b.smoothness, "bias.smoothness", zero_ok=True)
    _positive(b.smooth_from, "bias.smooth_from")
    _positive(b.learning_rate_scale, "bias.learning_rate_scale")
    _positive(b.embedding_dim, "bias.embedding_dim")
    for i, u in enumerate(b.hidden_units):
        _positive(u, f"bias.hidden_units[{i}]")
    _one_of(b.method, BIAS_METHODS, "bias.method")
    _positive(b.adversarial_weight, "bias.adversarial_weight")
    if b.method == "adversarial" and not b.position:
        raise ConfigError("bias.method: 'adversarial' needs bias.position (what the adversary predicts)")


def _validate_model(m: ModelSpec) -> None:
    _one_of(m.kind, MODEL_KINDS, "model.kind")
    _one_of(m.gate_input, GATE_INPUTS, "model.gate_input")
    _probability(m.gate_dropout, "model.gate_dropout")
    _probability(m.dropout, "model.dropout")
    if m.kind == "mmoe" and m.num_experts < 2:
        raise ConfigError(f"model.num_experts: MMoE needs at least 2 experts, got {m.num_experts}")
    for name in ("bottom_units", "expert_units", "tower_units"):
        units = getattr(m, name)
        if name == "expert_units" and not units:
            raise ConfigError("model.expert_units: at least one layer is required")
        if name == "bottom_units" and not units and m.kind != "mmoe":
            raise ConfigError("model.bottom_units: a shared_bottom model needs at least one layer "
                              "([] is for MMoE: experts directly on the input layer)")
        for i, u in enumerate(units):
            _positive(u, f"model.{name}[{i}]")


def _validate_train(t: TrainSpec) -> None:
    _positive(t.batch_size, "train.batch_size")
    _positive(t.learning_rate, "train.learning_rate")
    _positive(t.weight_decay, "train.weight_decay", zero_ok=True)
    _positive(t.table_weight_decay, "train.table_weight_decay", zero_ok=True)
    _positive(t.max_epochs, "train.max_epochs")
    _positive(t.patience, "train.patience", zero_ok=True)
    _one_of(t.early_stopping, EARLY_STOPPING, "train.early_stopping")
    _positive(t.threads, "train.threads", zero_ok=True)
    _one_of(t.precision, PRECISIONS, "train.precision")
    if t.sparse_embeddings and (t.weight_decay or t.table_weight_decay):
        raise ConfigError("train.sparse_embeddings: SparseAdam has no weight decay; set "
                          "train.weight_decay and train.table_weight_decay to 0 or "
                          "train.sparse_embeddings = false")
