"""A learned retriever: a two-tower model trained on the watch log (Yi et al., RecSys 2019).

The context tower reads what the service knows when a user finishes video q: the user's last
``history`` watches (mean-pooled) and q itself; the item tower is one vector per video. Both are
L2-normalised, so retrieval is a faiss inner-product search, as for the co-watch embeddings:

    h    = mean_{j in last H watches before q} G_j             (0 for a cold user)
    c    = normalise(W2 relu(W1 [h ; G_q ; 1[h known] ; 1[q known]] + b1) + b2)
    v_i  = normalise(E_i)
    s(c, i) = <c, v_i> / temperature - log Q(i)              in-batch softmax, log-Q corrected

Each watch with a preceding one is a positive (context: the watches before it, query: the one
right before); the other positives of the batch are its negatives. In-batch negatives are drawn
in proportion to popularity, so without the ``- log Q(i)`` correction (Q = the item's share of
the log's watches, exact here because the whole log is at hand) the softmax learns to push down
popular items merely for being sampled often. A share ``context_dropout`` of examples loses its
history, and as many their query video, so the tower learns to answer a cold user or an unknown
query video from the other half; with neither, the source answers nothing (popular fills in).

The training loop is a dozen lines of its own rather than ``watchnext.train.loop``: that loop
trains the multitask ranker on encoded feature batches with per-task losses, early stopping and
checkpoints; this is one softmax over id embeddings, a few epochs, fitted with the other sources.
Serving is numpy (the tower's weights are saved as arrays with the source, no pickle).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import torch
from torch import nn

from watchnext.model.layers import mlp
from watchnext.retrieve.base import CandidateSource, Query
from watchnext.retrieve.embedding import (
    INDEX_KINDS,
    inner_product_index,
    normalise,
    single_thread,
)
from watchnext.retrieve.log import LogColumns, WatchLog

if TYPE_CHECKING:
    import faiss

WEIGHTS = ("input_vectors", "w1", "b1", "w2", "b2")


class _Towers(nn.Module):
    """The two towers; ``input`` row ``num_items`` is the zero vector of "no video"."""

    def __init__(self, num_items: int, dim: int, hidden: int):
        super().__init__()
        self.missing = num_items
        self.input = nn.Embedding(num_items + 1, dim, padding_idx=num_items)
        self.hidden = mlp(2 * dim + 2, (hidden,))
        self.out = nn.Linear(hidden, dim)
        self.items = nn.Embedding(num_items, dim)
        for table in (self.input, self.items):
            nn.init.normal_(table.weight, std=0.1)
        with torch.no_grad():
            self.input.weight[num_items].zero_()

    def context(self, history: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """[B, dim] unit context vectors from history codes [B, H] and query codes [B]
        (``missing`` marks an absent entry)."""
        present = (history != self.missing).float()
        count = present.sum(1, keepdim=True)
        pooled = self.input(history).sum(1) / count.clamp_min(1.0)
        known = torch.cat([(count > 0).float(), (query != self.missing).float()[:, None]], 1)
        x = torch.cat([pooled, self.input(query), known], 1)
        return nn.functional.normalize(self.out(self.hidden(x)), dim=1)

    def item_vectors(self) -> torch.Tensor:
        return nn.functional.normalize(self.items.weight, dim=1)


def training_examples(log: WatchLog, history: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(history codes [N, H], query codes [N], target codes [N]) for every watch that has a
    previous one; histories are padded with ``log.num_items`` on the left."""
    missing = log.num_items
    same_user = np.r_[False, log.users[1:] == log.users[:-1]]
    targets = np.flatnonzero(same_user)
    query = log.items[targets - 1]
    hist = np.full((len(targets), history), missing, np.int64)
    for k in range(1, history + 1):  # column H - k holds the k-th watch before the query
        at = targets - 1 - k
        valid = at >= 0
        valid[valid] = log.users[at[valid]] == log.users[targets[valid]]
        hist[valid, history - k] = log.items[at[valid]]
    return hist, query, log.items[targets]


class TwoTower(CandidateSource):
    """Items nearest to a learned context vector of (the user's recent watches, query video)."""

    kind = "twotower"

    def __init__(self, columns: LogColumns | None = None, dim: int = 32, hidden: int = 64,
                 history: int = 20, epochs: int = 16, batch_size: int = 1024,
                 learning_rate: float = 0.01, temperature: float = 0.4,
                 context_dropout: float = 0.15, log_q: float = 1.0, index: str = "flat",
                 seed: int = 0):
        super().__init__(columns)
        if min(dim, hidden, history, epochs, batch_size) < 1:
            raise ValueError("TwoTower: dim, hidden, history, epochs and batch_size must be >= 1")
        if not (learning_rate > 0 and temperature > 0 and 0 <= context_dropout < 0.5):
            raise ValueError("TwoTower: learning_rate and temperature must be > 0, "
                             "context_dropout in [0, 0.5)")
        if index not in INDEX_KINDS:
            raise ValueError(f"TwoTower: index {index!r} is not one of {INDEX_KINDS}")
        self.dim, self.hidden, self.history, self.epochs = dim, hidden, history, epochs
        self.batch_size, self.learning_rate, self.temperature = batch_size, learning_rate, temperature
        self.context_dropout, self.index_kind, self.seed = context_dropout, index, seed
        self.log_q = log_q  # weight of the correction: 1 is Yi et al.'s, 0 switches it off
        self.user_ids: list[str] = []
        self.weights: dict[str, np.ndarray] = {}
        self.item_vectors = np.zeros((0, dim), np.float32)
        self.user_history = np.zeros((0, history), np.int64)
        self.train_loss = np.zeros(0, np.float32)
        self.train_seconds = np.zeros(1, np.float64)
        self._users: dict[str, int] = {}
        self._searchable = np.zeros(0, np.int64)
        self._faiss: faiss.Index | None = None

    # ---- fitting -----------------------------------------------------------------------------

    def _fit(self, log: WatchLog, table: pa.Table) -> None:
        start = time.perf_counter()
        n = log.num_items
        with torch.random.fork_rng():  # seeded initialisation, the caller's RNG left alone
            torch.manual_seed(self.seed)
            towers = _Towers(n, self.dim, self.hidden)
        hist, query, target = training_examples(log, self.history)
        if len(target):
            with single_thread():
                self.train_loss = self._train(towers, hist, query, target, log)
        with torch.no_grad():
            self.weights = {"input_vectors": towers.input.weight.numpy().copy(),
                            "w1": towers.hidden[0].weight.numpy().copy(),
                            "b1": towers.hidden[0].bias.numpy().copy(),
                            "w2": towers.out.weight.numpy().copy(),
                            "b2": towers.out.bias.numpy().copy()}
            vectors = towers.item_vectors().numpy().copy()
        watched = np.bincount(log.items, minlength=n) > 0
        self.item_vectors = np.where(watched[:, None], vectors, 0.0).astype(np.float32)
        self.user_ids, self.item_ids = log.user_ids, log.item_ids
        self.user_history = self._last_watches(log)
        self._build_index()
        self.train_seconds = np.array([time.perf_counter() - start])

    def _train(self, towers: _Towers, hist: np.ndarray, query: np.ndarray, target: np.ndarray,
               log: WatchLog) -> np.ndarray:
        """In-batch softmax with the log-Q correction; returns the mean loss of each epoch."""
        generator = torch.Generator().manual_seed(self.seed)
        hist_t, query_t, target_t = (torch.from_numpy(a) for a in (hist, query, target))
        log_q = torch.from_numpy(np.log(np.bincount(log.items, minlength=log.num_items)
                                        / len(log.items) + 1e-12)).float()
        optimiser = torch.optim.Adam(towers.parameters(), lr=self.learning_rate)
        losses = []
        for _ in range(self.epochs):
            order = torch.randperm(len(target_t), generator=generator)
            total = 0.0
            for batch in order.split(self.batch_size):
                h, q, t = hist_t[batch].clone(), query_t[batch].clone(), target_t[batch]
                drop = torch.rand(len(batch), generator=generator)
                h[drop < self.context_dropout] = towers.missing
                q[drop > 1 - self.context_dropout] = towers.missing
                logits = towers.context(h, q) @ towers.item_vectors()[t].T / self.temperature
                logits = logits - self.log_q * log_q[t][None, :]
                same = t[:, None] == t[None, :]  # a batch repeat of the positive is no negative
                logits = logits.masked_fill(same & ~torch.eye(len(t), dtype=torch.bool), -1e9)
                loss = nn.functional.cross_entropy(logits, torch.arange(len(t)))
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                total += loss.item() * len(batch)
            losses.append(total / len(target_t))
        return np.array(losses, np.float32)

    def _last_watches(self, log: WatchLog) -> np.ndarray:
        """Each user's last ``history + 1`` watches (oldest first, left-padded): the history the
        service reads, one longer so the query video can be left out of it."""
        width = self.history + 1
        out = np.full((len(log.user_ids), width), log.num_items, np.int64)
        starts = log.user_starts()
        for lo, hi in zip(starts[:-1], starts[1:], strict=True):
            items = log.items[max(lo, hi - width):hi]
            out[log.users[lo], width - len(items):] = items
        return out

    def _build_index(self) -> None:
        self._users = {v: i for i, v in enumerate(self.user_ids)}
        self._faiss, self._searchable = inner_product_index(self.item_vectors, self.index_kind)

    # ---- serving -----------------------------------------------------------------------------

    def query_vector(self, query: Query) -> np.ndarray | None:
        """The context tower in numpy; None when neither the user nor the video is known."""
        missing = len(self.item_ids)
        user = self._users.get(query.user_id) if query.user_id is not None else None
        q = self.item_index.get(query.video_id, missing) if query.video_id is not None else missing
        history = self.user_history[user] if user is not None else np.zeros(0, np.int64)
        history = history[(history != missing) & (history != q)][-self.history:]
        if not len(history) and q == missing:
            return None
        g = self.weights["input_vectors"]
        pooled = g[history].mean(0) if len(history) else np.zeros(self.dim, np.float32)
        x = np.concatenate([pooled, g[q], [float(len(history) > 0), float(q != missing)]])
        hidden = np.maximum(self.weights["w1"] @ x + self.weights["b1"], 0.0)
        return normalise((self.weights["w2"] @ hidden + self.weights["b2"])[None])[0]

    def retrieve(self, query: Query, n: int) -> tuple[np.ndarray, np.ndarray]:
        vector = self.query_vector(query)
        if vector is None or self._faiss is None or not len(self._searchable):
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        k = min(len(self._searchable), n + len(query.exclude) + 1)
        scores, positions = self._faiss.search(np.ascontiguousarray(vector[None], np.float32), k)
        found = positions[0] >= 0
        return self.allowed(self._searchable[positions[0][found]], scores[0][found], query, n)

    # ---- saving ------------------------------------------------------------------------------

    def params(self) -> dict[str, Any]:
        return {"dim": self.dim, "hidden": self.hidden, "history": self.history,
                "epochs": self.epochs, "batch_size": self.batch_size,
                "learning_rate": self.learning_rate, "temperature": self.temperature,
                "context_dropout": self.context_dropout, "log_q": self.log_q,
                "index": self.index_kind,
                "seed": self.seed}

    def arrays(self) -> dict[str, np.ndarray]:
        return {**self.weights, "item_vectors": self.item_vectors,
                "user_history": self.user_history, "train_loss": self.train_loss,
                "train_seconds": self.train_seconds}

    def ids(self) -> dict[str, list[str]]:
        return {"items": self.item_ids, "users": self.user_ids}

    def _restore(self, arrays: dict[str, np.ndarray], ids: dict[str, list[str]]) -> None:
        self.weights = {name: arrays[name].astype(np.float32) for name in WEIGHTS}
        self.item_vectors = arrays["item_vectors"].astype(np.float32)
        self.user_history = arrays["user_history"].astype(np.int64)
        self.train_loss, self.train_seconds = arrays["train_loss"], arrays["train_seconds"]
        self.item_ids, self.user_ids = ids["items"], ids["users"]
        n = len(self.item_ids)
        if (self.item_vectors.shape != (n, self.dim)
                or self.weights["input_vectors"].shape != (n + 1, self.dim)
                or self.weights["w1"].shape != (self.hidden, 2 * self.dim + 2)
                or self.weights["w2"].shape != (self.dim, self.hidden)
                or self.user_history.shape != (len(self.user_ids), self.history + 1)
                or (self.user_history.size and int(self.user_history.max()) > n)):
            raise ValueError("two-tower arrays disagree with the id lists, dim or history")
        self._build_index()
