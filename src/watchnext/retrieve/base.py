"""The interface every candidate source implements, and the files it is saved as.

A source captures one kind of similarity to the video being watched (paper, section 3): it is
fitted on impression logs, answers ``candidates(query, n)`` with its best ``n`` items and saves
itself as JSON (parameters, ids) plus ``.npy`` arrays, loaded with ``allow_pickle=False``.

Sources work on integer item codes (``retrieve`` returns codes into ``item_ids`` as arrays), so
the pool can merge a few hundred candidates per source with numpy rather than per-item Python;
``candidates`` is the readable view of the same answer.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import pyarrow as pa

from watchnext.retrieve.log import LogColumns, WatchLog


class RetrievalError(ValueError):
    """Retrieval artefacts are missing, corrupt or inconsistent; the message names the file."""


@dataclass(frozen=True)
class Query:
    """What retrieval knows about a request: who is watching, what, and what to leave out."""

    user_id: str | None = None
    video_id: str | None = None
    exclude: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class Candidate:
    """One retrieved item and the source's own score for it (larger is better)."""

    item_id: str
    score: float


class CandidateSource(ABC):
    """A candidate generator: ``fit`` on logs, ``candidates`` per query, ``save`` / ``load``."""

    kind: ClassVar[str]

    def __init__(self, columns: LogColumns | None = None):
        self.columns = columns or LogColumns()
        self.fitted = False
        self._item_ids: list[str] = []
        self._item_index: dict[str, int] = {}

    @property
    def item_ids(self) -> list[str]:
        """The ids that ``retrieve``'s codes index."""
        return self._item_ids

    @item_ids.setter
    def item_ids(self, ids: list[str]) -> None:
        self._item_ids = list(ids)
        self._item_index = {v: i for i, v in enumerate(self._item_ids)}

    @property
    def item_index(self) -> dict[str, int]:
        return self._item_index

    def fit(self, table: pa.Table, log: WatchLog | None = None) -> Self:
        """Learn from an impression log; ``log`` is its ``WatchLog`` when already extracted."""
        self._fit(log if log is not None else WatchLog.from_table(table, self.columns), table)
        self.fitted = True
        return self

    @abstractmethod
    def _fit(self, log: WatchLog, table: pa.Table) -> None: ...

    @abstractmethod
    def retrieve(self, query: Query, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(codes into ``item_ids``, scores): up to ``n`` items for ``query``, best first, never
        the query video or an excluded one."""

    def candidates(self, query: Query, n: int) -> list[Candidate]:
        """``retrieve`` as a list of (item id, score)."""
        codes, scores = self.retrieve(query, n)
        return [Candidate(self._item_ids[c], s) for c, s in zip(codes.tolist(), scores.tolist(),
                                                                strict=True)]

    def allowed(self, codes: np.ndarray, scores: np.ndarray, query: Query, n: int
                ) -> tuple[np.ndarray, np.ndarray]:
        """The first ``n`` of ``codes`` (best first) that are neither the query nor excluded."""
        banned = [self._item_index[v] for v in (query.video_id, *query.exclude)
                  if v is not None and v in self._item_index]
        if banned:
            keep = ~np.isin(codes, banned)
            codes, scores = codes[keep], scores[keep]
        return codes[:n].astype(np.int64, copy=False), scores[:n].astype(np.float32, copy=False)

    @abstractmethod
    def params(self) -> dict[str, Any]:
        """Constructor arguments, saved as JSON so ``load`` rebuilds the same source."""

    @abstractmethod
    def arrays(self) -> dict[str, np.ndarray]:
        """The fitted state as named numeric arrays."""

    @abstractmethod
    def ids(self) -> dict[str, list[str]]:
        """The fitted state's id lists (item ids, user ids, topics)."""

    @abstractmethod
    def _restore(self, arrays: dict[str, np.ndarray], ids: dict[str, list[str]]) -> None: ...

    def save(self, directory: str | Path) -> Path:
        """Write ``source.json`` and one ``.npy`` per array into ``directory``."""
        if not self.fitted:
            raise RetrievalError(f"{self.kind}: save() called before fit()")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        arrays = self.arrays()
        for name, value in arrays.items():
            np.save(directory / f"{name}.npy", np.ascontiguousarray(value), allow_pickle=False)
        meta = {"kind": self.kind, "params": self.params(), "columns": vars(self.columns),
                "arrays": sorted(arrays), "ids": self.ids()}
        (directory / "source.json").write_text(json.dumps(meta))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> Self:
        directory = Path(directory)
        meta = read_meta(directory)
        if meta.get("kind") != cls.kind:
            raise RetrievalError(f"{directory}/source.json: holds a {meta.get('kind')!r} source, "
                                 f"not {cls.kind!r}")
        try:
            source = cls(columns=LogColumns(**meta["columns"]), **meta["params"])
            arrays = {name: np.load(directory / f"{name}.npy", allow_pickle=False)
                      for name in meta["arrays"]}
            source._restore(arrays, meta["ids"])
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise RetrievalError(f"{directory}: unreadable {cls.kind} source ({exc})") from exc
        source.fitted = True
        return source


def read_meta(directory: Path) -> dict[str, Any]:
    try:
        meta = json.loads((directory / "source.json").read_text())
    except FileNotFoundError as exc:
        raise RetrievalError(f"{directory}/source.json: missing") from exc
    except json.JSONDecodeError as exc:
        raise RetrievalError(f"{directory}/source.json: corrupt ({exc})") from exc
    if not isinstance(meta, dict):
        raise RetrievalError(f"{directory}/source.json: expected an object")
    return meta


def csr_from_pairs(rows: np.ndarray, cols: np.ndarray, weights: np.ndarray, num_rows: int,
                   keep: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sum duplicate (row, col) weights, then keep each row's ``keep`` largest, best first.

    Returns CSR arrays (indptr, indices, values); ties break by column index for determinism.
    """
    if len(rows) == 0:
        return np.zeros(num_rows + 1, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    width = int(max(cols.max(), rows.max())) + 1
    pair, inverse = np.unique(rows * width + cols, return_inverse=True)
    total = np.bincount(inverse, weights=weights)
    r, c = pair // width, pair % width
    order = np.lexsort((c, -total, r))
    r, c, total = r[order], c[order], total[order]
    starts = np.r_[0, np.flatnonzero(np.diff(r)) + 1]
    rank = np.arange(len(r)) - np.repeat(starts, np.diff(np.r_[starts, len(r)]))
    mask = rank < keep
    r, c, total = r[mask], c[mask], total[mask]
    indptr = np.zeros(num_rows + 1, np.int64)
    np.add.at(indptr, r + 1, 1)
    return np.cumsum(indptr), c.astype(np.int64), total.astype(np.float32)
