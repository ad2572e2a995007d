"""Load a trained ranker from a checkpoint: (config, encoder, model), ready to predict.

This is the model layer's reader, so serving, evaluation and the Python API can load a model
without importing training (no optimiser, no progress bars) and without touching any
process-wide setting: loading a model must not change the process that loads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from watchnext.artifacts import checkpoint as ckpt
from watchnext.config import RunConfig
from watchnext.data.encoder import FeatureEncoder
from watchnext.model.ranker import MultitaskRanker


@dataclass
class LoadedModel:
    """A trained ranker as read from disk, in eval mode; ``state`` is the checkpoint's state.json
    without its checksums (step, chunk, ...)."""

    config: RunConfig
    encoder: FeatureEncoder
    model: MultitaskRanker
    state: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None  # where it was read from; None for a model trained in this process

    def save(self, directory: str | Path) -> Path:
        """Write the model as a checkpoint folder (atomic, checksummed; no optimiser state)."""
        return ckpt.save_checkpoint(directory, config=self.config,
                                    encoder_state=self.encoder.state_dict(), model=self.model,
                                    state=self.state)


def load_model(path: str | Path) -> LoadedModel:
    """Verify and load a checkpoint folder (or a run folder whose LATEST names one)."""
    return model_from_checkpoint(ckpt.read_checkpoint(path))


def model_from_checkpoint(saved: dict[str, Any], config: RunConfig | None = None) -> LoadedModel:
    """Build the ranker described by ``read_checkpoint``'s result and load its weights; with
    ``config``, build it as that config says (a resumed run's own settings, e.g. sparse tables)."""
    config = config or saved["config"]
    encoder = FeatureEncoder.from_state(config, saved["encoder"])
    model = MultitaskRanker(config, encoder, sparse=config.train.sparse_embeddings)
    try:
        model.load_state_dict(saved["weights"])
    except RuntimeError as exc:  # missing, unexpected or mis-shaped tensors
        raise ckpt.CheckpointError(f"{saved['path']}: weights do not fit the saved config "
                                   f"({exc})") from exc
    model.eval()
    state = {k: v for k, v in saved["state"].items() if k != "sha256"}
    return LoadedModel(config, encoder, model, state, Path(saved["path"]))
