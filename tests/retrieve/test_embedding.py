import numpy as np
import pytest

from watchnext.retrieve import EmbeddingRetrieval, Query
from watchnext.retrieve.embedding import ppmi, randomized_svd
from watchnext.retrieve.log import LogColumns

WATCHED = LogColumns(watched="is_click")


def test_neighbours_come_from_the_same_community(two_communities):
    source = EmbeddingRetrieval(WATCHED, dim=4).fit(two_communities)
    for query, group in (("a0", "a"), ("b3", "b")):
        found = [c.item_id for c in source.candidates(Query(None, query), 4)]
        assert len(found) == 4 and query not in found
        assert all(v.startswith(group) for v in found), found


def test_cold_video_falls_back_to_the_user_vector(two_communities):
    source = EmbeddingRetrieval(WATCHED, dim=4).fit(two_communities)
    found = [c.item_id for c in source.candidates(Query("12", "never-seen"), 3)]
    assert found and all(v.startswith("b") for v in found)
    assert source.candidates(Query("nobody", "never-seen"), 3) == []


def test_exclusions_and_scores_descending(two_communities):
    source = EmbeddingRetrieval(WATCHED, dim=4).fit(two_communities)
    found = source.candidates(Query(None, "a0", frozenset({"a1", "a2"})), 10)
    ids = [c.item_id for c in found]
    assert "a1" not in ids and "a2" not in ids and "a0" not in ids
    scores = [c.score for c in found]
    assert scores == sorted(scores, reverse=True)


def test_randomized_svd_matches_exact_svd():
    rng = np.random.default_rng(0)
    dense = rng.random((60, 5)) @ rng.random((5, 60))  # rank 5: recovered exactly
    import torch
    matrix = torch.tensor(dense).to_sparse()
    u, s = randomized_svd(matrix, 5, seed=0)
    exact = np.linalg.svd(dense, compute_uv=False)[:5]
    assert np.allclose(s.numpy(), exact, rtol=1e-6)
    assert u.shape == (60, 5)


def test_ppmi_is_positive_and_zero_for_independent_pairs():
    rows, cols = np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1])
    values = ppmi(rows, cols, np.ones(4), 2, alpha=1.0)
    assert np.allclose(values, 0.0)


@pytest.mark.parametrize("index", ["flat", "hnsw"])
def test_save_load_round_trip(tmp_path, two_communities, index):
    source = EmbeddingRetrieval(WATCHED, dim=4, index=index).fit(two_communities)
    source.save(tmp_path / "emb")
    loaded = EmbeddingRetrieval.load(tmp_path / "emb")
    assert np.array_equal(loaded.item_vectors, source.item_vectors)
    query = Query("3", "a2")
    assert [c.item_id for c in loaded.candidates(query, 5)] == [
        c.item_id for c in source.candidates(query, 5)]


def test_rejects_bad_parameters():
    with pytest.raises(ValueError, match="index"):
        EmbeddingRetrieval(index="ivf")
    with pytest.raises(ValueError, match="dim"):
        EmbeddingRetrieval(dim=0)
