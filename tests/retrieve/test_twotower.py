"""The two-tower source on logs whose communities are known: it must learn them, answer cold
users and cold videos from what it does know, and save and load like every other source."""

import numpy as np
import pytest
import torch

from watchnext.retrieve import Query, RetrievalError, TwoTower
from watchnext.retrieve.log import LogColumns, WatchLog
from watchnext.retrieve.twotower import training_examples

from .conftest import log_table

WATCHED = LogColumns(watched="is_click")


@pytest.fixture(scope="module")
def fitted():
    """Users 0-29 watch a0..a7 and users 30-59 b0..b7, each in a random order, twice: the next
    video is any of the community's, so only the community can be learned (passes for seeds 0-3)."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(60):
        group = "a" if u < 30 else "b"
        for m, j in enumerate(rng.permutation(8).tolist() * 2):
            rows.append((u, f"{group}{j}", 1, u * 20 + m, 1))
    rows.append((0, "b0", 1, 500, 0))  # shown, not watched
    return TwoTower(WATCHED, dim=8, hidden=16, history=4, epochs=15, batch_size=64,
                    learning_rate=0.02, temperature=0.1, context_dropout=0.3).fit(log_table(rows))


def test_training_examples_pair_each_watch_with_the_ones_before_it():
    log = WatchLog.from_table(log_table([("u", "x", 0, 0, 1), ("u", "y", 0, 1, 1),
                                         ("u", "z", 0, 2, 1), ("w", "x", 0, 0, 1),
                                         ("w", "z", 0, 1, 1)]), WATCHED)
    hist, query, target = training_examples(log, history=2)
    code = log.item_index()
    pad = log.num_items
    assert target.tolist() == [code["y"], code["z"], code["z"]]
    assert query.tolist() == [code["x"], code["y"], code["x"]]
    assert hist.tolist() == [[pad, pad], [pad, code["x"]], [pad, pad]]


def test_loss_falls_and_neighbours_come_from_the_same_community(fitted):
    assert fitted.train_loss[-1] < 0.7 * fitted.train_loss[0]
    for user, query, group in (("3", "a0", "a"), ("40", "b5", "b"), (None, "a2", "a")):
        found = [c.item_id for c in fitted.candidates(Query(user, query), 5)]
        assert len(found) == 5 and query not in found
        assert all(v.startswith(group) for v in found), found


def test_cold_video_answers_from_the_history_and_nothing_when_both_are_unknown(fitted):
    for user, group in (("45", "b"), ("5", "a")):
        found = [c.item_id for c in fitted.candidates(Query(user, "never-seen"), 5)]
        assert len(found) == 5 and all(v.startswith(group) for v in found), found
    assert fitted.candidates(Query("nobody", "never-seen"), 3) == []
    assert fitted.candidates(Query(None, None), 3) == []


def test_exclusions_and_descending_scores(fitted):
    found = fitted.candidates(Query("1", "a0", frozenset({"a1", "a2"})), 20)
    ids = [c.item_id for c in found]
    assert not {"a0", "a1", "a2"} & set(ids)
    scores = [c.score for c in found]
    assert scores == sorted(scores, reverse=True)


def test_the_numpy_context_tower_is_the_trained_one(fitted):
    """Serving computes the tower in numpy from the saved weights; it must equal torch's."""
    from watchnext.retrieve.twotower import _Towers
    towers = _Towers(len(fitted.item_ids), fitted.dim, fitted.hidden)
    w = fitted.weights
    with torch.no_grad():
        towers.input.weight.copy_(torch.from_numpy(w["input_vectors"]))
        towers.hidden[0].weight.copy_(torch.from_numpy(w["w1"]))
        towers.hidden[0].bias.copy_(torch.from_numpy(w["b1"]))
        towers.out.weight.copy_(torch.from_numpy(w["w2"]))
        towers.out.bias.copy_(torch.from_numpy(w["b2"]))
        code = fitted.item_index
        user = fitted.user_history[fitted.user_ids.index("3")]
        history = user[(user != len(code)) & (user != code["a0"])][-fitted.history:]
        expected = towers.context(torch.from_numpy(history[None]),
                                  torch.tensor([code["a0"]]))[0].numpy()
    assert np.allclose(fitted.query_vector(Query("3", "a0")), expected, atol=1e-5)


def test_save_load_answers_the_same(tmp_path, fitted):
    fitted.save(tmp_path / "tt")
    loaded = TwoTower.load(tmp_path / "tt")
    assert not list(tmp_path.glob("tt/*.pkl"))
    for query in (Query("3", "a2"), Query("nobody", "b1"), Query("43", "unknown")):
        assert loaded.candidates(query, 6) == fitted.candidates(query, 6)
    assert float(loaded.train_seconds[0]) > 0


def test_load_refuses_arrays_that_disagree(tmp_path, fitted):
    fitted.save(tmp_path / "tt")
    np.save(tmp_path / "tt" / "item_vectors.npy", np.zeros((3, fitted.dim), np.float32))
    with pytest.raises(RetrievalError, match="unreadable twotower source"):
        TwoTower.load(tmp_path / "tt")


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="index"):
        TwoTower(index="magic")
    with pytest.raises(ValueError, match="temperature"):
        TwoTower(temperature=0.0)
