import numpy as np
import pyarrow.compute as pc
import pytest
import torch

from tests.conftest import make_impressions
from watchnext.api import Ranker
from watchnext.evaluate.metrics import auc
from watchnext.train.trainer import Trainer


def _days(table):
    return [(str(d), table.filter(pc.equal(table["day"], d))) for d in (1, 2, 3)]


def _weights(ranker):
    return {k: v.clone() for k, v in ranker.model.state_dict().items()}


def test_training_learns_the_signal(config, impressions):
    valid = make_impressions(1000, seed=1)
    ranker = Ranker(config.replace(train={"max_epochs": 4})).fit(impressions, valid)
    preds = ranker.predict(valid)
    assert auc(valid["is_like"].to_numpy(), preds[:, 2]) > 0.7
    assert auc(valid["is_click"].to_numpy(), preds[:, 0]) > 0.65
    losses = [h["total"] for h in ranker.history[0].train]
    assert losses[-1] < losses[0]


def test_same_seed_same_weights(config, impressions):
    a = _weights(Ranker(config).fit(impressions))
    b = _weights(Ranker(config).fit(impressions))
    c = _weights(Ranker(config.replace(train={"seed": 1})).fit(impressions))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_early_stopping_keeps_the_best_epoch(config, impressions):
    valid = make_impressions(500, seed=2)
    ranker = Ranker(config.replace(train={"max_epochs": 8, "patience": 0, "learning_rate": 0.05}))
    ranker.fit(impressions, valid)
    history = ranker.history[0]
    best = min(range(len(history.valid)), key=lambda i: history.valid[i]["total"])
    assert history.best_epoch == best
    final = ranker.trainer.evaluate_losses(ranker.encode(valid))["total"]
    assert final == pytest.approx(history.valid[best]["total"], rel=1e-5)


def test_resumed_sequential_run_continues_from_the_saved_step(config, impressions, tmp_path, monkeypatch):
    days = _days(impressions)
    full = Ranker(config).fit_sequential(days, tmp_path / "full")

    real_fit = Trainer.fit

    def crash_on_third_day(self, train, valid=None, chunk=0):
        if chunk == 2:
            raise KeyboardInterrupt("killed")
        return real_fit(self, train, valid, chunk)

    monkeypatch.setattr(Trainer, "fit", crash_on_third_day)
    with pytest.raises(KeyboardInterrupt):
        Ranker(config).fit_sequential(days, tmp_path / "cut")
    monkeypatch.undo()
    steps_after_two = Ranker.load(tmp_path / "cut").step
    resumed = Ranker(config).fit_sequential(days, tmp_path / "cut", resume=True)

    assert steps_after_two > 0 and resumed.trainer.step == full.trainer.step
    assert len(resumed.history) == 1, "only the third day is trained after resuming"
    a, b = _weights(full), _weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_sequential_checkpoints_each_day(config, impressions, tmp_path):
    Ranker(config).fit_sequential(_days(impressions), tmp_path / "run")
    names = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert names == ["chunk-0000", "chunk-0001", "chunk-0002"]
    assert (tmp_path / "run" / "LATEST").read_text().strip().endswith("chunk-0002")
    loaded = Ranker.load(tmp_path / "run")
    assert loaded.step > 0


def test_labels_missing_for_a_task_do_not_break_training(config, impressions):
    likes = impressions["is_like"].to_pylist()
    for i in range(0, len(likes), 2):
        likes[i] = None
    import pyarrow as pa

    table = impressions.set_column(impressions.column_names.index("is_like"), "is_like", pa.array(likes))
    ranker = Ranker(config).fit(table)
    assert np.isfinite(ranker.history[0].train[-1]["like"])


def test_resume_with_a_different_model_is_refused(config, impressions, tmp_path):
    from watchnext.config import ConfigError

    Ranker(config).fit_sequential(_days(impressions)[:1], tmp_path / "run")
    other = config.replace(model={"num_experts": 8})
    with pytest.raises(ConfigError, match="model: differs from the checkpoint"):
        Ranker(other).fit_sequential(_days(impressions), tmp_path / "run", resume=True)
