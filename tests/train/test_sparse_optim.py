"""Row-wise (sparse) embedding updates: RowWiseAdam against dense Adam, and the step's wiring.

RowWiseAdam is *lazy* Adam (as torch's SparseAdam): a row's moments and value change only at
steps whose batch holds that row. Dense Adam also moves rows that are absent from the batch (their
momentum decays and keeps pushing them). So the two agree exactly on the first step and on rows
present at every step, and differ on rows that skip steps; the tests below pin down exactly that.
"""

import pytest
import torch
from torch import nn

from watchnext.api import Ranker
from watchnext.train.distributed import Distributed
from watchnext.train.optim import CombinedOptimizer, make_optimizer
from watchnext.train.rowwise import RowWiseAdam
from watchnext.train.step import TrainStep


def _pair(rows: int = 20, dim: int = 4):
    torch.manual_seed(0)
    dense = nn.Embedding(rows, dim)
    sparse = nn.Embedding(rows, dim, sparse=True)
    with torch.no_grad():
        sparse.weight.copy_(dense.weight)
    return (dense, torch.optim.Adam(dense.parameters(), lr=0.1),
            sparse, RowWiseAdam(sparse.parameters(), lr=0.1))


def _step(table: nn.Embedding, opt: torch.optim.Optimizer, ids: list[int]) -> None:
    opt.zero_grad()
    ((table(torch.tensor(ids)) - 1.0) ** 2).sum().backward()
    opt.step()


def test_first_step_matches_dense_adam_and_leaves_other_rows_alone():
    dense, dense_opt, sparse, sparse_opt = _pair()
    before = sparse.weight.detach().clone()
    ids = [1, 3, 3, 7]  # a repeated id: its gradients are summed, as in the dense table
    _step(dense, dense_opt, ids)
    _step(sparse, sparse_opt, ids)
    touched = torch.tensor([1, 3, 7])
    untouched = torch.tensor([i for i in range(20) if i not in (1, 3, 7)])
    torch.testing.assert_close(sparse.weight[touched], dense.weight[touched])
    assert not torch.equal(sparse.weight[touched], before[touched])
    assert torch.equal(sparse.weight[untouched], before[untouched])


def test_rows_in_every_batch_match_dense_adam_rows_that_skip_steps_stay_put():
    dense, dense_opt, sparse, sparse_opt = _pair()
    _step(dense, dense_opt, [0, 5])
    _step(sparse, sparse_opt, [0, 5])
    after_first = sparse.weight.detach().clone()
    for _ in range(3):  # row 0 in every batch, row 5 never again
        _step(dense, dense_opt, [0, 2])
        _step(sparse, sparse_opt, [0, 2])
    torch.testing.assert_close(sparse.weight[0], dense.weight[0])
    assert torch.equal(sparse.weight[5], after_first[5])  # lazy: no update without a gradient
    assert not torch.allclose(dense.weight[5], after_first[5])  # dense Adam: momentum moves it


def test_the_step_updates_sparse_tables_row_wise(config, impressions):
    config = config.replace(train={"sparse_embeddings": True, "max_epochs": 1})
    ranker = Ranker(config)
    ranker._build(impressions)
    tables = [m for m in ranker.model.inputs.embeddings]
    assert all(t.sparse for t in tables)
    step = TrainStep(config, ranker.model, Distributed())
    assert isinstance(step.optimizer, CombinedOptimizer)
    assert [type(o) for o in step.optimizer.optimizers] == [torch.optim.Adam, RowWiseAdam]
    batch = ranker.encode(impressions).slice(0, 64)
    before = tables[1].weight.detach().clone()
    step([batch], [0])
    seen = batch.categorical[:, 1].unique()
    unseen = torch.ones(len(before), dtype=torch.bool)
    unseen[seen] = False
    assert torch.equal(tables[1].weight[unseen], before[unseen])
    assert not torch.equal(tables[1].weight[seen], before[seen])


def test_sparse_training_fits_saves_and_reloads(config, impressions, tmp_path):
    ranker = Ranker(config.replace(train={"sparse_embeddings": True, "max_epochs": 2}))
    ranker.fit(impressions)
    losses = [h["total"] for h in ranker.history[0].train]
    assert losses[-1] < losses[0]
    ranker.save(tmp_path / "model")
    loaded = Ranker.load(tmp_path / "model")
    torch.testing.assert_close(torch.from_numpy(loaded.predict(impressions)),
                               torch.from_numpy(ranker.predict(impressions)))


def test_rowwise_adam_refuses_dense_gradients():
    table = nn.Embedding(5, 2)
    opt = RowWiseAdam(table.parameters())
    table(torch.tensor([1])).sum().backward()
    with pytest.raises(RuntimeError, match="sparse gradients"):
        opt.step()


def test_rowwise_state_survives_a_checkpoint_round_trip(config, impressions):
    from watchnext.artifacts import checkpoint as ckpt

    config = config.replace(train={"sparse_embeddings": True, "max_epochs": 1})
    ranker = Ranker(config)
    ranker._build(impressions)
    step = TrainStep(config, ranker.model, Distributed())
    step([ranker.encode(impressions).slice(0, 256)], [0])
    saved = ckpt.optimizer_tensors(step.optimizer)
    assert any(".exp_avg" in name for name in saved)
    fresh = Ranker(config)
    fresh._build(impressions)
    optimizer = make_optimizer(fresh.model, config)
    ckpt.load_optimizer_tensors(optimizer, saved)
    again = ckpt.optimizer_tensors(optimizer)
    assert saved.keys() == again.keys()
    assert all(torch.equal(saved[k], again[k]) for k in saved)
