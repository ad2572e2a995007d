"""The shallow tower's learned bias, exported in one form that cannot be read off by one.

    curves[device][p]  = bias logit the tower adds at display position p (1..bias.max_position)
    serving[device]    = bias logit it adds at serving, where the position is missing

Positions are keyed by the position itself, and the missing slot is not a position: it is the
separate ``serving`` value. Only devices the encoder learned from the training data appear:
the device vocabulary's out-of-vocabulary and null-device buckets are left out, because the OOV
row is never trained and the null row is trained only when training rows lacked a device (fill
such rows with a name, e.g. "unknown", to get it exported). Without a device column in the config
there is one device, named ``ALL_DEVICES``.

The values come from the ranker's own forward pass (``serving=True`` for the serving value), so
the export says what the model adds, however the tower derives its missing-position value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from watchnext.data.batch import Batch
from watchnext.data.encoder import FeatureEncoder
from watchnext.data.vocab import FIRST_ID
from watchnext.model.ranker import MultitaskRanker

ALL_DEVICES = "all"


@dataclass(frozen=True)
class LearnedBias:
    """One engagement task's learned bias: per-device curves over positions, serving values."""

    curves: dict[str, dict[int, float]]
    serving: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        """``{"curves": {device: {"1": x, ...}}, "serving": {device: y}}``."""
        return {"curves": {d: {str(p): v for p, v in c.items()} for d, c in self.curves.items()},
                "serving": dict(self.serving)}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> LearnedBias:
        return cls({d: {int(p): float(v) for p, v in c.items()} for d, c in raw["curves"].items()},
                   {d: float(v) for d, v in raw["serving"].items()})


def trained_devices(encoder: FeatureEncoder) -> dict[str, int]:
    """Device name -> the tower's device index, for the devices seen in training only."""
    vocab = encoder.vocabularies.get("__device__") if encoder.config.bias.device else None
    if vocab is None:
        return {ALL_DEVICES: 0}
    return {name: FIRST_ID + i for i, name in enumerate(vocab.values)}


def learned_bias(model: MultitaskRanker, encoder: FeatureEncoder) -> dict[str, LearnedBias]:
    """The shallow tower's bias per engagement task (empty when the model has no tower)."""
    if model.shallow_tower is None:
        return {}
    devices = trained_devices(encoder)
    positions = list(range(1, encoder.config.bias.max_position + 1))
    index = torch.tensor(list(devices.values()), dtype=torch.long)
    pos = torch.tensor(positions, dtype=torch.long).repeat_interleave(len(devices))
    curves = _bias(model, _probe(encoder, pos, index.repeat(len(positions))), serving=False)
    curves = curves.reshape(len(positions), len(devices), -1)
    serving = _bias(model, _probe(encoder, torch.zeros_like(index), index), serving=True)
    engagement = [t.name for t in encoder.config.tasks if t.group == "engagement"]
    return {task: LearnedBias(
        curves={d: {p: round(float(curves[i, j, k]), 4) for i, p in enumerate(positions)}
                for j, d in enumerate(devices)},
        serving={d: round(float(serving[j, k]), 4) for j, d in enumerate(devices)})
        for k, task in enumerate(engagement)}


def to_json(bias: dict[str, LearnedBias]) -> dict[str, Any]:
    """The JSON form of a whole export: ``{task: {"curves": ..., "serving": ...}}``."""
    return {task: b.to_json() for task, b in bias.items()}


@torch.inference_mode()
def _bias(model: MultitaskRanker, batch: Batch, serving: bool) -> np.ndarray:
    was_training = model.training
    model.eval()
    out = model(batch, serving=serving).bias
    model.train(was_training)
    return out.numpy()


def _probe(encoder: FeatureEncoder, position: torch.Tensor, device: torch.Tensor) -> Batch:
    """Rows that differ only in position and device: the bias does not read the other inputs."""
    n = len(position)
    max_length = max((f.max_length for f in encoder.multi), default=0)
    return Batch(categorical=torch.zeros(n, len(encoder.categorical), dtype=torch.long),
                 dense=torch.zeros(n, len(encoder.numeric)),
                 multi=torch.zeros(n, len(encoder.multi), max_length, dtype=torch.long),
                 position=position, device=device, labels=torch.zeros(n, len(encoder.config.tasks)),
                 users=np.full(n, -1), requests=np.full(n, -1))
