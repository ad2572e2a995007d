"""The run config: the one source of truth for a run, validated on load, saved with every checkpoint.

A config is a TOML file with the sections ``[data]``, ``[[features]]``, ``[[history]]``,
``[history_labels]``, ``[[tasks]]``, ``[bias]``, ``[model]`` and ``[train]``. Every error names the
offending key (``tasks[2].group``), so a typo fails at load time, not an hour into training.

A ``[[history]]`` block says once what used to take three places in sync (the computation, the
column names and one ``[[features]]`` block per column): it both computes point-in-time history
features (``watchnext.data.history``) and declares them. Loading expands each block into explicit
``FeatureSpec`` entries appended after the ``[[features]]`` list, so everything downstream (and the
saved ``config.json``) sees an explicit feature list; a feature listed explicitly under that name
takes precedence, which is also what makes a saved config load back unchanged.
"""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

# Every closed set of values is a Literal: the type checker sees it and loading checks it (the
# allowed values are read from the type, so they are written down once).
FeatureKind = Literal["categorical", "numeric", "multi_categorical"]
Transform = Literal["none", "log1p", "standardize", "log1p_standardize", "standardize_asinh",
                    "log1p_standardize_asinh"]
TaskType = Literal["binary", "regression"]
TaskGroup = Literal["engagement", "satisfaction"]
PositiveMap = Literal["exp", "softplus", "identity"]
BiasMethod = Literal["shallow_tower", "adversarial"]
ModelKind = Literal["mmoe", "shared_bottom", "ple"]
GateInput = Literal["bottom", "input"]
Precision = Literal["fp32", "bf16"]
Device = Literal["auto", "cpu", "cuda"]
Embeddings = Literal["local", "sharded"]
BiasMissing = Literal["exposure_mean", "dropout"]
EarlyStoppingOn = Literal["total", "engagement"]

ALL_DAYS = "all"  # a history window over every earlier day
CROSS_SEPARATOR = "\x1f"  # joins a cross's parts; the ASCII unit separator is in no real id


class ConfigError(ValueError):
    """A config value is missing, of the wrong type or out of range; the message names the key."""


@dataclass(frozen=True)
class FeatureSpec:
    """One model input, read from ``column`` (default: ``name``), an ``expression`` over columns,
    or (categorical only) a ``cross`` of columns whose value is the tuple of theirs.

    A categorical expression is an id computed from numbers (``minimum(hour, 20)``); a cross is
    an id per combination (``cross = ["query_id", "item_id"]``), hashed with ``hash_buckets`` or
    given a vocabulary like any other id.
    """

    name: str
    kind: FeatureKind
    column: str = ""
    expression: str = ""
    cross: tuple[str, ...] = ()
    embedding_dim: int = 16
    min_count: int = 1
    max_vocab: int = 0
    transform: Transform = "none"
    separator: str = "|"
    max_length: int = 16
    hash_buckets: int = 0  # > 0: ids hashed into this many buckets, no vocabulary (open id spaces)

    @property
    def source(self) -> str:
        """The column it reads, or the expression (crosses read several: ``input_columns``)."""
        return self.expression or self.column or self.name

    @property
    def input_columns(self) -> tuple[str, ...]:
        """The raw columns of a column or cross feature (an expression's names are found by
        ``watchnext.data.encoder.feature_columns``, which parses it)."""
        return self.cross or (self.column or self.name,)


@dataclass(frozen=True)
class HistorySpec:
    """Point-in-time history of one entity: per window, past rows, smoothed label rates and, for
    ``counted`` labels, past positives and negatives; over all days also days since first / last
    seen. Declares the features ``{entity}_{name}_{stat}`` (``user_id_hist_is_click``).

    ``windows`` holds ``"all"`` (every earlier day) and/or a number of days; the name part is
    ``hist`` for all days and ``last{N}d`` for a window, unless ``name`` is given (one window).
    A label is a column or a name from ``[history_labels]`` (an expression).
    """

    entity: str
    labels: tuple[str, ...]
    windows: tuple[str, ...] = (ALL_DAYS,)
    name: str = ""
    counted: tuple[str, ...] = ()
    smoothing: float = 20.0
    transform: Transform = "standardize"

    def window_days(self, window: str) -> int:
        """0 for every earlier day, else the window's length in days."""
        return 0 if window == ALL_DAYS else int(window)

    def tag(self, window: str) -> str:
        """The middle part of this window's feature names."""
        return self.name or ("hist" if window == ALL_DAYS else f"last{window}d")

    def columns(self, window: str) -> list[str]:
        """The feature columns of one window, in the order they are declared."""
        base = f"{self.entity}_{self.tag(window)}"
        names = [f"{base}_n", *(f"{base}_{label}" for label in self.labels)]
        if window == ALL_DAYS:
            names += [f"{base}_first", f"{base}_last"]
        for label in self.counted:
            names += [f"{base}_{label}_pos", f"{base}_{label}_neg"]
        return names

    def features(self) -> list[FeatureSpec]:
        return [FeatureSpec(name=c, kind="numeric", column=c, transform=self.transform)
                for w in self.windows for c in self.columns(w)]


@dataclass(frozen=True)
class TaskSpec:
    """One objective: a binary (cross-entropy) or regression (squared error) head."""

    name: str
    type: TaskType
    label: str
    group: TaskGroup
    loss_weight: float = 1.0
    exponent: float = 1.0
    positive_map: PositiveMap = "exp"


@dataclass(frozen=True)
class BiasSpec:
    """Selection-bias features for the shallow tower; empty ``position`` disables it.

    ``device`` is used where the log has that column; without it every row is one device.

    ``method = "adversarial"`` replaces the shallow tower by a gradient-reversal head that
    predicts the position from the shared bottom layer (see model/adversarial.py).
    ``missing`` is how the serving (position unknown) value is learned: ``"exposure_mean"``
    derives it from the per-position values, ``"dropout"`` (the paper) hides the position of a
    share ``position_dropout`` of training rows. ``smoothness`` weighs the tower's roughness
    across positions (from the step after position ``smooth_from``) in the loss;
    ``learning_rate_scale`` multiplies ``train.learning_rate`` for the tower's parameters;
    ``hidden_units`` empty (the default): the tower is a table, one value per (position, device)
    cell; otherwise it is the paper's network of that shape over ``embedding_dim``-wide
    position, device and position x device embeddings.
    docs/debiasing.md measures each.
    """

    position: str = ""
    device: str = ""
    max_position: int = 32
    missing: BiasMissing = "exposure_mean"
    position_dropout: float = 0.0
    smoothness: float = 0.003
    smooth_from: int = 2
    learning_rate_scale: float = 10.0
    embedding_dim: int = 8
    hidden_units: tuple[int, ...] = ()
    method: BiasMethod = "shallow_tower"
    adversarial_weight: float = 1.0


@dataclass(frozen=True)
class ModelSpec:
    """Architecture: SharedBottom baseline, or MMoE or PLE on a shared bottom layer.

    ``num_experts`` is MMoE's; PLE has ``ple_layers`` extraction layers, each with
    ``task_experts`` experts per task and ``shared_experts`` shared ones (Tang et al., 2020).
    """

    kind: ModelKind = "mmoe"
    bottom_units: tuple[int, ...] = (128,)
    num_experts: int = 8
    ple_layers: int = 2
    task_experts: int = 1
    shared_experts: int = 1
    expert_units: tuple[int, ...] = (64,)
    gate_input: GateInput = "bottom"
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
    early_stopping: EarlyStoppingOn = "total"  # which validation loss picks the epoch
    weight_averaging: float = 0.0  # EMA decay of the weights per step (0: off); train/averaging.py
    seed: int = 0
    threads: int = 0
    progress: bool = True
    # speed (docs/performance.md): row-wise Adam for id tables, bf16 autocast, torch.compile,
    # glibc keeps freed memory for reuse (watchnext.train.speed.retain_freed_memory)
    sparse_embeddings: bool = False
    precision: Precision = "fp32"
    compile: bool = False
    retain_freed_memory: bool = True
    # where the model, batches and optimiser state live: "auto" = CUDA when available, else CPU
    device: Device = "auto"
    # where the id tables live: "local" = nn.Embedding in every process (replicated under
    # torchrun); "sharded" = one TorchRec EmbeddingBagCollection sharded over the torchrun
    # processes, trained by a fused row-wise Adagrad (the `sharded` extra; docs/distributed.md)
    embeddings: Embeddings = "local"
    # the sharded tables' row-wise Adagrad rate: Adagrad's steps shrink as squared gradients add
    # up, so it wants a larger rate than Adam (docs/distributed.md measures 1e-3 against 1e-2)
    sharded_learning_rate: float = 0.01


@dataclass(frozen=True)
class DataSpec:
    """Where the logs are (one source), how they split, and which columns identify users,
    requests and days. See README "The run config" for every key.

    Exactly one source: ``dataset`` (a bundled protocol), ``path`` (logs split by day with
    ``train_days`` / ``valid_days`` / ``test_days``) or ``train`` (with optional ``valid`` and
    ``test``: files per split). ``valid_fraction`` holds out that share of the training requests.
    ``user_column`` is used where the log has it (per-user metrics, the service's user key).
    """

    dataset: str = ""
    path: tuple[str, ...] = ()
    train: tuple[str, ...] = ()
    valid: tuple[str, ...] = ()
    test: tuple[str, ...] = ()
    train_days: tuple[str, ...] = ()
    valid_days: tuple[str, ...] = ()
    test_days: tuple[str, ...] = ()
    valid_fraction: float = 0.0
    user_column: str = "user_id"
    request_column: str = ""
    day_column: str = ""

    @property
    def source(self) -> str:
        """Which key names the data: ``dataset``, ``path``, ``train`` or "" (given elsewhere)."""
        return next((k for k in ("dataset", "path", "train") if getattr(self, k)), "")


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run."""

    features: tuple[FeatureSpec, ...]
    tasks: tuple[TaskSpec, ...]
    history: tuple[HistorySpec, ...] = ()
    history_labels: tuple[tuple[str, str], ...] = ()  # (name, expression) pairs
    bias: BiasSpec = field(default_factory=BiasSpec)
    model: ModelSpec = field(default_factory=ModelSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    data: DataSpec = field(default_factory=DataSpec)
    name: str = "run"

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    def to_dict(self) -> dict[str, Any]:
        """Plain data; ``features`` is the expanded, explicit list (history features included)."""
        raw = dataclasses.asdict(self)
        raw["history_labels"] = dict(self.history_labels)
        return raw

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
        cfg.data, path=resolve(cfg.data.path), train=resolve(cfg.data.train),
        valid=resolve(cfg.data.valid), test=resolve(cfg.data.test),
    )
    return dataclasses.replace(cfg, data=data)


def config_from_dict(raw: dict[str, Any]) -> RunConfig:
    """Build a RunConfig from plain data, raising ConfigError that names the bad key."""
    _check_keys(raw, {f.name for f in dataclasses.fields(RunConfig)}, "")
    history = tuple(_build(HistorySpec, item, f"history[{i}]")
                    for i, item in enumerate(_list(raw, "history", required=False)))
    features = tuple(_build(FeatureSpec, item, f"features[{i}]")
                     for i, item in enumerate(_list(raw, "features", required=not history)))
    tasks = tuple(_build(TaskSpec, item, f"tasks[{i}]") for i, item in enumerate(_list(raw, "tasks")))
    labels = raw.get("history_labels", {})
    _check_keys(labels, set(labels) if isinstance(labels, dict) else set(), "history_labels")
    data = _build(DataSpec, raw.get("data", {}), "data")
    for i, h in enumerate(history):  # before expanding: a clash is reported as the block's
        _validate_history(h, f"history[{i}]", history, data)
    cfg = RunConfig(
        features=_expand(features, history),
        tasks=tasks,
        history=history,
        history_labels=tuple((k, _typed(v, str, f"history_labels.{k}")) for k, v in labels.items()),
        bias=_build(BiasSpec, raw.get("bias", {}), "bias"),
        model=_build(ModelSpec, raw.get("model", {}), "model"),
        train=_build(TrainSpec, raw.get("train", {}), "train"),
        data=data,
        name=_typed(raw.get("name", "run"), str, "name"),
    )
    _validate(cfg)
    return cfg


def _expand(features: tuple[FeatureSpec, ...], history: tuple[HistorySpec, ...]
            ) -> tuple[FeatureSpec, ...]:
    """The explicit features, then every history feature not listed explicitly, block by block."""
    names = {f.name for f in features}
    declared = [f for block in history for f in block.features()]
    return features + tuple(f for f in declared if f.name not in names)


def _list(raw: dict[str, Any], key: str, required: bool = True) -> list[Any]:
    value = raw.get(key, [] if not required else None)
    if not isinstance(value, list | tuple) or (required and not value):
        raise ConfigError(f"{key}: at least one entry is required" if required
                          else f"{key}: expected a list of tables ([[{key}]])")
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
    hints = get_type_hints(cls)
    _check_keys(raw, set(fields), where)
    values = {}
    for name, f in fields.items():
        if name in raw:
            values[name] = _coerce(raw[name], hints[name], f"{where}.{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}.{name}: required key is missing")
    return cls(**values)


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    if get_origin(annotation) is Literal:
        allowed = get_args(annotation)
        if _typed(value, str, key) not in allowed:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(allowed)}")
        return value
    if get_origin(annotation) is tuple:
        item = get_args(annotation)[0]
        if item is str:
            items = [value] if isinstance(value, str | int) and not isinstance(value, bool) else value
            if not isinstance(items, list | tuple) or not all(
                    isinstance(v, str | int) and not isinstance(v, bool) for v in items):
                raise ConfigError(f"{key}: expected a string or a list of strings, got {value!r}")
            return tuple(str(v) for v in items)
        if not isinstance(value, list | tuple) or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise ConfigError(f"{key}: expected a list of integers, got {value!r}")
        return tuple(value)
    return _typed(value, annotation, key)


def _typed(value: Any, kind: type, key: str) -> Any:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is not bool and isinstance(value, bool):
        raise ConfigError(f"{key}: expected {kind.__name__}, got a boolean")
    if not isinstance(value, kind):
        raise ConfigError(f"{key}: expected {kind.__name__}, got {type(value).__name__} {value!r}")
    return value


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
    _validate_sharded(cfg)
    _validate_data(cfg.data)


def _validate_feature(f: FeatureSpec, key: str) -> None:
    _positive(f.embedding_dim, f"{key}.embedding_dim")
    _positive(f.min_count, f"{key}.min_count")
    _positive(f.max_vocab, f"{key}.max_vocab", zero_ok=True)
    _positive(f.max_length, f"{key}.max_length")
    if f.kind == "multi_categorical" and f.expression:
        raise ConfigError(f"{key}.expression: a multi_categorical feature reads a list column, "
                          "not an expression")
    if f.cross:
        if f.kind != "categorical":
            raise ConfigError(f"{key}.cross: only categorical features can be crosses")
        if len(f.cross) < 2 or len(set(f.cross)) != len(f.cross):
            raise ConfigError(f"{key}.cross: needs two or more distinct columns, got {list(f.cross)}")
        if f.expression or f.column:
            raise ConfigError(f"{key}.cross: a cross reads its own columns; drop "
                              f"{'expression' if f.expression else 'column'}")
    if f.expression and f.column:
        raise ConfigError(f"{key}.expression: give column or expression, not both")
    if f.kind != "numeric" and f.transform != "none":
        raise ConfigError(f"{key}.transform: only numeric features take a transform")
    _positive(f.hash_buckets, f"{key}.hash_buckets", zero_ok=True)
    if f.kind == "numeric" and f.hash_buckets:
        raise ConfigError(f"{key}.hash_buckets: only id features (categorical) can be hashed")


def _validate_task(t: TaskSpec, key: str) -> None:
    _positive(t.loss_weight, f"{key}.loss_weight", zero_ok=True)
    if not t.label:
        raise ConfigError(f"{key}.label: must name a column or an expression")


def _validate_bias(b: BiasSpec) -> None:
    if b.device and not b.position:
        raise ConfigError("bias.device: a device crossing needs bias.position as well")
    _positive(b.max_position, "bias.max_position")
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
    _positive(b.adversarial_weight, "bias.adversarial_weight")
    if b.method == "adversarial" and not b.position:
        raise ConfigError("bias.method: 'adversarial' needs bias.position (what the adversary predicts)")


def _validate_model(m: ModelSpec) -> None:
    _probability(m.gate_dropout, "model.gate_dropout")
    _probability(m.dropout, "model.dropout")
    if m.kind == "mmoe" and m.num_experts < 2:
        raise ConfigError(f"model.num_experts: MMoE needs at least 2 experts, got {m.num_experts}")
    for name in ("ple_layers", "task_experts", "shared_experts"):
        if getattr(m, name) < 1:
            raise ConfigError(f"model.{name}: PLE needs at least 1, got {getattr(m, name)}")
    for name in ("bottom_units", "expert_units", "tower_units"):
        units = getattr(m, name)
        if name == "expert_units" and not units:
            raise ConfigError("model.expert_units: at least one layer is required")
        if name == "bottom_units" and not units and m.kind == "shared_bottom":
            raise ConfigError("model.bottom_units: a shared_bottom model needs at least one layer "
                              "([] is for MMoE and PLE: experts directly on the input layer)")
        for i, u in enumerate(units):
            _positive(u, f"model.{name}[{i}]")


def _validate_train(t: TrainSpec) -> None:
    _positive(t.batch_size, "train.batch_size")
    _positive(t.learning_rate, "train.learning_rate")
    _positive(t.sharded_learning_rate, "train.sharded_learning_rate")
    _positive(t.weight_decay, "train.weight_decay", zero_ok=True)
    _positive(t.table_weight_decay, "train.table_weight_decay", zero_ok=True)
    _positive(t.max_epochs, "train.max_epochs")
    _positive(t.patience, "train.patience", zero_ok=True)
    _positive(t.threads, "train.threads", zero_ok=True)
    if not 0 <= t.weight_averaging < 1:
        raise ConfigError(f"train.weight_averaging: must be in [0, 1) (an EMA decay per step; "
                          f"0 = off), got {t.weight_averaging}")
    if t.sparse_embeddings and (t.weight_decay or t.table_weight_decay):
        raise ConfigError("train.sparse_embeddings: row-wise Adam has no weight decay; set "
                          "train.weight_decay and train.table_weight_decay to 0 or "
                          "train.sparse_embeddings = false")


def _validate_sharded(cfg: RunConfig) -> None:
    """What the fused TorchRec tables cannot do, refused at load time rather than mid-run."""
    t = cfg.train
    if t.embeddings != "sharded":
        return
    for name in ("sparse_embeddings", "compile"):
        if getattr(t, name):
            raise ConfigError(f"train.{name}: not with train.embeddings = 'sharded' (the sharded "
                              "tables have their own fused optimiser and kernels)")
    if t.weight_averaging:
        raise ConfigError("train.weight_averaging: not with train.embeddings = 'sharded' (the "
                          "tables' rows live on their ranks; an average of them is not kept)")
    if t.weight_decay or t.table_weight_decay:
        raise ConfigError("train.weight_decay, train.table_weight_decay: not supported with "
                          "train.embeddings = 'sharded' (the fused row-wise Adagrad has none)")
    if t.precision != "fp32":
        raise ConfigError("train.precision: train.embeddings = 'sharded' trains in fp32 only")
    for i, f in enumerate(cfg.features):
        if f.kind != "numeric" and f.embedding_dim % 4:
            raise ConfigError(f"features[{i}].embedding_dim: {f.embedding_dim} is not a multiple "
                              "of 4, which FBGEMM's fused tables (train.embeddings = 'sharded') "
                              "require")


def _validate_history(h: HistorySpec, key: str, blocks: tuple[HistorySpec, ...],
                      data: DataSpec) -> None:
    if not h.entity:
        raise ConfigError(f"{key}.entity: must name the key column (e.g. user_id)")
    if not h.labels:
        raise ConfigError(f"{key}.labels: at least one label is required")
    if not h.windows:
        raise ConfigError(f"{key}.windows: at least one window is required")
    for i, w in enumerate(h.windows):
        if w != ALL_DAYS and not (w.isdigit() and int(w) > 0):
            raise ConfigError(f"{key}.windows[{i}]: {w!r} is neither {ALL_DAYS!r} nor a number "
                              "of days > 0")
    if len(set(h.windows)) != len(h.windows):
        raise ConfigError(f"{key}.windows: {list(h.windows)} repeats a window")
    if h.name and len(h.windows) > 1:
        raise ConfigError(f"{key}.name: a name is for one window; {len(h.windows)} windows "
                          "are named hist / last<N>d")
    for i, label in enumerate(h.counted):
        if label not in h.labels:
            raise ConfigError(f"{key}.counted[{i}]: {label!r} is not one of this block's labels")
    _positive(h.smoothing, f"{key}.smoothing", zero_ok=True)
    if not data.day_column:
        raise ConfigError(f"{key}: history features need data.day_column (what 'earlier' means)")
    for i, later in enumerate(blocks):
        for window in later.windows:
            for mine in h.windows:
                if later is not h and later.entity == h.entity and later.tag(window) == h.tag(mine):
                    raise ConfigError(f"{key}: history[{i}] declares the same features "
                                      f"({h.entity}_{h.tag(mine)}_*); give one of them a name")


def parse_day(text: str, key: str) -> int | datetime.date:
    """A day as the config writes it: an ISO date (``2022-04-08``) or a plain number (``3``)."""
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"{key}: {text!r} is neither a date (YYYY-MM-DD) nor a day number") from None


def day_ranges(entries: tuple[str, ...], key: str) -> list[tuple[Any, Any]]:
    """Inclusive (first, last) pairs from ``"2022-04-08"`` or ``"2022-04-08..2022-04-17"``."""
    out = []
    for i, entry in enumerate(entries):
        first, sep, last = entry.partition("..")
        lo = parse_day(first.strip(), f"{key}[{i}]")
        hi = parse_day(last.strip(), f"{key}[{i}]") if sep else lo
        if type(lo) is not type(hi) or hi < lo:
            raise ConfigError(f"{key}[{i}]: {entry!r} is not a range first..last of one kind")
        out.append((lo, hi))
    kinds = {type(lo) for lo, _ in out}
    if len(kinds) > 1:
        raise ConfigError(f"{key}: mixes dates and day numbers")
    return out


def _validate_data(d: DataSpec) -> None:
    sources = [k for k in ("dataset", "path", "train") if getattr(d, k)]
    if len(sources) > 1:
        raise ConfigError(f"data.{sources[1]}: the data has one source; data.{sources[0]} is "
                          f"set too (keep one of {', '.join('data.' + s for s in sources)})")
    for split in ("valid", "test"):
        if getattr(d, split) and not d.train:
            raise ConfigError(f"data.{split}: split files go with data.train; with data.path or "
                              f"data.dataset choose days with data.{split}_days")
    day_keys = [k for k in ("train_days", "valid_days", "test_days") if getattr(d, k)]
    if day_keys and d.train:
        raise ConfigError(f"data.{day_keys[0]}: days select from data.path or data.dataset, "
                          "not from per-split files (data.train)")
    if day_keys and not d.day_column:
        raise ConfigError(f"data.{day_keys[0]}: choosing days needs data.day_column")
    kinds = set()
    chosen: dict[str, list[tuple[Any, Any]]] = {}
    for k in day_keys:
        chosen[k] = day_ranges(getattr(d, k), f"data.{k}")
        kinds |= {type(lo) for lo, _ in chosen[k]}
    if len(kinds) > 1:
        raise ConfigError(f"data.{day_keys[-1]}: mixes dates and day numbers with the other splits")
    for a, b in itertools.combinations(chosen, 2):
        if any(lo1 <= hi2 and lo2 <= hi1 for lo1, hi1 in chosen[a] for lo2, hi2 in chosen[b]):
            raise ConfigError(f"data.{b}: overlaps data.{a}; a day belongs to one split")
    _probability(d.valid_fraction, "data.valid_fraction")
    if d.valid_fraction and (d.valid or d.valid_days):
        raise ConfigError("data.valid_fraction: validation is already given by "
                          f"data.{'valid' if d.valid else 'valid_days'}; keep one")
    if d.valid_fraction and not d.request_column:
        raise ConfigError("data.valid_fraction: holding out whole requests needs "
                          "data.request_column")
