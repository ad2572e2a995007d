"""Embedding retrieval: item vectors factorised from co-watch, searched by inner product in faiss.

Co-watch counts only reach videos that were watched next to the query video. A low-rank
factorisation of the co-watch matrix generalises one step further: videos with similar co-watch
neighbourhoods get close vectors even if nobody watched them together. We take

    M_ab = max(0, log(C_ab * sum_c C_c^0.75 / (C_a * C_b^0.75)))    smoothed positive PMI
    M   ~= U S V^T  (randomised SVD, torch sparse)                   item vector_a = U_a sqrt(S)

and L2-normalise, so inner product is cosine. A user's vector is the decay-weighted mean of the
vectors of their last watches: it answers when the query video is unknown (cold video, known user).
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import torch

from watchnext.retrieve.base import CandidateSource, Query, csr_from_pairs
from watchnext.retrieve.cowatch import cowatch_pairs
from watchnext.retrieve.log import LogColumns, WatchLog

if TYPE_CHECKING:
    import faiss

INDEX_KINDS = ("flat", "hnsw")


def ppmi(rows: np.ndarray, cols: np.ndarray, counts: np.ndarray, n: int, alpha: float = 0.75
         ) -> np.ndarray:
    """Positive pointwise mutual information of co-occurrence counts (context smoothing alpha)."""
    row_sum = np.bincount(rows, weights=counts, minlength=n)
    col_pow = np.bincount(cols, weights=counts, minlength=n) ** alpha
    pmi = np.log(counts * col_pow.sum() / (row_sum[rows] * col_pow[cols]) + 1e-12)
    return np.maximum(pmi, 0.0)


def randomized_svd(matrix: torch.Tensor, rank: int, seed: int, oversample: int = 10,
                   power_iterations: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``rank`` left singular vectors and values of a sparse matrix (Halko et al., 2011).

    The final small SVD goes through the ``width x width`` Gram matrix of ``q^T M``, which is
    cheap and accurate enough for retrieval vectors.
    """
    n = matrix.shape[1]
    width = min(rank + oversample, n)
    forward, backward = matrix, matrix.t().coalesce()
    generator = torch.Generator().manual_seed(seed)
    q = torch.linalg.qr(forward @ torch.randn(n, width, generator=generator,
                                              dtype=matrix.dtype))[0]
    for _ in range(power_iterations):
        q = torch.linalg.qr(backward @ q)[0]
        q = torch.linalg.qr(forward @ q)[0]
    small = (backward @ q).t()  # q^T M, [width, n]
    eigenvalues, vectors = torch.linalg.eigh(small @ small.t())
    order = torch.argsort(eigenvalues, descending=True)[:rank]
    return q @ vectors[:, order], eigenvalues[order].clamp_min(0).sqrt()


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one thread: the thin QRs here gain nothing from more, and on a busy machine
    the extra threads' spin-waits made them 30x slower (measured: 19 ms vs 580 ms per QR)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.where(norms > 0, vectors / np.maximum(norms, 1e-12), 0.0).astype(np.float32)


def inner_product_index(vectors: np.ndarray, kind: str) -> tuple[faiss.Index, np.ndarray]:
    """A faiss inner-product index (``flat``: exact, ``hnsw``: graph) over the non-zero rows of
    ``vectors``, and those rows' codes (a zero vector is an item the source knows nothing of)."""
    faiss = _import_faiss()
    searchable = np.flatnonzero(np.linalg.norm(vectors, axis=1) > 0)
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(vectors.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
    else:
        index = faiss.IndexFlatIP(vectors.shape[1])
    if len(searchable):
        index.add(np.ascontiguousarray(vectors[searchable], np.float32))
    return index, searchable


class EmbeddingRetrieval(CandidateSource):
    """Nearest items to the query video's (and the user's) co-watch embedding."""

    kind = "embedding"

    def __init__(self, columns: LogColumns | None = None, dim: int = 32, window: int = 5,
                 half_life_days: float = 14.0, user_history: int = 20, user_weight: float = 0.5,
                 index: str = "flat", seed: int = 0):
        super().__init__(columns)
        if dim < 1 or window < 1 or user_history < 1:
            raise ValueError("EmbeddingRetrieval: dim, window and user_history must be >= 1")
        if index not in INDEX_KINDS:
            raise ValueError(f"EmbeddingRetrieval: index {index!r} is not one of {INDEX_KINDS}")
        self.dim, self.window, self.half_life_days = dim, window, half_life_days
        self.user_history, self.user_weight, self.index_kind, self.seed = (
            user_history, user_weight, index, seed)
        self.user_ids: list[str] = []
        self.item_vectors = np.zeros((0, dim), np.float32)
        self.user_vectors = np.zeros((0, dim), np.float32)
        self._users: dict[str, int] = {}
        self._searchable = np.zeros(0, np.int64)
        self._faiss: faiss.Index | None = None

    def _fit(self, log: WatchLog, table: pa.Table) -> None:
        n = log.num_items
        a, b, w = cowatch_pairs(log, self.window, self.half_life_days, with_weight=1.0)
        indptr, cols, counts = csr_from_pairs(a, b, w, n, keep=n)
        rows = np.repeat(np.arange(n), np.diff(indptr))
        vectors = np.zeros((n, self.dim), np.float32)
        if len(rows):
            values = ppmi(rows, cols, counts.astype(np.float64), n)
            rank = min(self.dim, n)
            with single_thread(), torch.sparse.check_sparse_tensor_invariants(enable=True):
                matrix = torch.sparse_coo_tensor(np.stack([rows, cols]), values, (n, n)).coalesce()
                u, s = randomized_svd(matrix, rank, self.seed)
            vectors[:, :rank] = (u * s.sqrt()).numpy()
            vectors[np.diff(indptr) == 0] = 0.0
        self.item_vectors = normalise(vectors)
        self.user_ids = log.user_ids
        self.user_vectors = self._user_vectors(log)
        self.item_ids = log.item_ids
        self._build_index()

    def _user_vectors(self, log: WatchLog) -> np.ndarray:
        """Decay-weighted mean of each user's last ``user_history`` watched item vectors."""
        starts = log.user_starts()
        decay = log.decay(self.half_life_days)
        out = np.zeros((len(log.user_ids), self.dim), np.float32)
        for lo, hi in zip(starts[:-1], starts[1:], strict=True):
            first = max(lo, hi - self.user_history)
            items, weights = log.items[first:hi], decay[first:hi]
            out[log.users[lo]] = weights @ self.item_vectors[items]
        return normalise(out)

    def _build_index(self) -> None:
        self._users = {v: i for i, v in enumerate(self.user_ids)}
        self._faiss, self._searchable = inner_product_index(self.item_vectors, self.index_kind)

    def query_vector(self, query: Query) -> np.ndarray | None:
        """The query video's vector, blended with the user's; the user's alone for a cold video."""
        item = self.item_index.get(query.video_id) if query.video_id is not None else None
        user = self._users.get(query.user_id) if query.user_id is not None else None
        item_vec = self.item_vectors[item] if item is not None else None
        user_vec = self.user_vectors[user] if user is not None else None
        if item_vec is not None and not item_vec.any():
            item_vec = None
        if user_vec is not None and not user_vec.any():
            user_vec = None
        if item_vec is None and user_vec is None:
            return None
        if item_vec is None:
            return user_vec
        if user_vec is None:
            return item_vec
        return normalise((item_vec + self.user_weight * user_vec)[None])[0]

    def retrieve(self, query: Query, n: int) -> tuple[np.ndarray, np.ndarray]:
        vector = self.query_vector(query)
        if vector is None or self._faiss is None or not len(self._searchable):
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        k = min(len(self._searchable), n + len(query.exclude) + 1)
        scores, positions = self._faiss.search(np.ascontiguousarray(vector[None]), k)
        found = positions[0] >= 0
        return self.allowed(self._searchable[positions[0][found]], scores[0][found], query, n)

    def params(self) -> dict[str, Any]:
        return {"dim": self.dim, "window": self.window, "half_life_days": self.half_life_days,
                "user_history": self.user_history, "user_weight": self.user_weight,
                "index": self.index_kind, "seed": self.seed}

    def arrays(self) -> dict[str, np.ndarray]:
        return {"item_vectors": self.item_vectors, "user_vectors": self.user_vectors}

    def ids(self) -> dict[str, list[str]]:
        return {"items": self.item_ids, "users": self.user_ids}

    def _restore(self, arrays: dict[str, np.ndarray], ids: dict[str, list[str]]) -> None:
        self.item_vectors = arrays["item_vectors"].astype(np.float32)
        self.user_vectors = arrays["user_vectors"].astype(np.float32)
        self.item_ids, self.user_ids = ids["items"], ids["users"]
        if (self.item_vectors.shape != (len(self.item_ids), self.dim)
                or self.user_vectors.shape != (len(self.user_ids), self.dim)):
            raise ValueError("embedding arrays disagree with the id lists or dim")
        self._build_index()


def _import_faiss() -> Any:
    """faiss on first use: it comes with the serve extra, and the other sources work without it."""
    try:
        return importlib.import_module("faiss")
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError("embedding retrieval needs faiss, which comes with the serve "
                                  "extra: pip install 'watchnext[serve]'") from exc
