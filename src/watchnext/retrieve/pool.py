"""The candidate pool: several sources merged into a few hundred de-duplicated candidates.

Sources are interleaved rank by rank (first of each source, then second of each, ...), each up to
its quota, so every similarity kind reaches the ranker even when one source could fill the whole
pool alone; what the quotas leave free is then filled from beyond them. A video
found by several sources is kept once, credited to the source that ranked it first, with every
source listed. The popular source answers every query, so an unknown user or video (cold start)
still gets a full pool.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from watchnext.retrieve.base import CandidateSource, Query, RetrievalError, read_meta
from watchnext.retrieve.cowatch import CoWatch
from watchnext.retrieve.embedding import EmbeddingRetrieval
from watchnext.retrieve.log import LogColumns, WatchLog
from watchnext.retrieve.popular import PopularFresh
from watchnext.retrieve.topic import TopicMatch
from watchnext.retrieve.twotower import TwoTower

SOURCE_KINDS: dict[str, type[CandidateSource]] = {
    cls.kind: cls for cls in (CoWatch, EmbeddingRetrieval, TwoTower, TopicMatch, PopularFresh)}

WATCHED_USERS, WATCHED_COUNTS, WATCHED_ITEMS = ("watched_users.npy", "watched_counts.npy",
                                                "watched_items.npy")
Found = dict[str, tuple[np.ndarray, np.ndarray]]
"""Per source name: (codes into that source's ``item_ids``, scores), best first."""
MANIFEST = "pool.json"


@dataclass
class PooledCandidate:
    """A candidate as the ranker sees it: the item and where it came from."""

    item_id: str
    source: str
    sources: list[str] = field(default_factory=list)
    source_score: float = 0.0


@dataclass
class PoolResult:
    """A pooled answer as arrays: ``codes`` into ``item_ids``, the first source of each, and
    every (candidate position, source) pair in discovery order, for ``sources_of``."""

    item_ids: list[str]
    codes: np.ndarray  # [N] pooled items, in pool order
    source: np.ndarray  # [N] index into source_names of the source that found it first
    scores: np.ndarray  # [N] that source's score
    source_names: list[str]
    found_position: np.ndarray  # [E] candidate position of each discovery
    found_source: np.ndarray  # [E] source of each discovery

    def __len__(self) -> int:
        return len(self.codes)

    @property
    def ids(self) -> list[str]:
        return [self.item_ids[c] for c in self.codes.tolist()]

    def sources_of(self, position: int) -> list[str]:
        return [self.source_names[s] for s in self.found_source[self.found_position == position]]

    def candidates(self) -> list[PooledCandidate]:
        return [PooledCandidate(self.item_ids[c], self.source_names[s], self.sources_of(i), sc)
                for i, (c, s, sc) in enumerate(zip(self.codes.tolist(), self.source.tolist(),
                                                   self.scores.tolist(), strict=True))]


class CandidatePool:
    """Named sources, each with a quota, merged and capped at ``max_candidates``."""

    def __init__(self, sources: dict[str, CandidateSource], max_candidates: int = 300,
                 quotas: dict[str, int] | None = None, skipped: dict[str, str] | None = None,
                 fitted_until: float | None = None, fit_seconds: dict[str, float] | None = None,
                 watched: Mapping[str, Iterable[str]] | None = None):
        if not sources:
            raise ValueError("CandidatePool needs at least one source")
        if max_candidates < 1:
            raise ValueError(f"max_candidates must be >= 1, got {max_candidates}")
        self.sources = dict(sources)
        self.max_candidates = max_candidates
        self.quotas = {name: (quotas or {}).get(name, max_candidates) for name in self.sources}
        self.skipped = dict(skipped or {})  # source kind -> why the pool has none of it
        self.fitted_until = fitted_until  # newest fitted watch (epoch s): evaluate after it only
        self.fit_seconds = dict(fit_seconds or {})  # source name -> wall seconds its fit took
        # user -> videos watched in the fitting logs, left out of the user's pools; None: keep them
        self.watched = {u: frozenset(v) for u, v in watched.items()} if watched is not None \
            else None
        self.item_ids: list[str] = []
        self._to_pool: dict[str, np.ndarray] = {}
        if all(source.fitted for source in self.sources.values()):
            self._index_items()

    def _index_items(self) -> None:
        """One id space for all sources: each source's codes map into ``self.item_ids``."""
        index: dict[str, int] = {}
        for name, source in self.sources.items():
            self._to_pool[name] = np.array([index.setdefault(v, len(index))
                                            for v in source.item_ids], dtype=np.int64)
        self.item_ids = list(index)

    def fit(self, table: pa.Table, columns: LogColumns | None = None,
            exclude_watched: bool = False) -> CandidatePool:
        """Fit every source on one impression log (the watch log is extracted once);
        ``exclude_watched``: remember each user's watched videos, to leave out of their pools."""
        log = WatchLog.from_table(table, columns or LogColumns())
        for name, source in self.sources.items():
            start = time.perf_counter()
            source.fit(table, log if source.columns == (columns or LogColumns()) else None)
            self.fit_seconds[name] = round(time.perf_counter() - start, 3)
        self.fitted_until = log.now if len(log) else None
        self.watched = None
        if exclude_watched:
            seen: dict[str, set[str]] = {}
            for u, i in zip(log.users.tolist(), log.items.tolist(), strict=True):
                seen.setdefault(log.user_ids[u], set()).add(log.item_ids[i])
            self.watched = {u: frozenset(v) for u, v in seen.items()}
        self._index_items()
        return self

    def candidates(self, query: Query, limit: int | None = None) -> list[PooledCandidate]:
        """``merge`` as a list of candidates."""
        return self.merge(query, limit).candidates()

    def cap(self, limit: int | None = None) -> int:
        """The pool size a ``limit`` gives: at most ``max_candidates``."""
        return min(limit or self.max_candidates, self.max_candidates)

    def retrieve_each(self, query: Query, limit: int | None = None) -> Found:
        """Every source's own answer, up to the pool's size each (what ``merge`` merges); the
        user's watched videos are excluded when the pool keeps them (``fit(exclude_watched)``)."""
        if self.watched is not None and query.user_id in self.watched:
            query = Query(query.user_id, query.video_id,
                          query.exclude | self.watched[query.user_id])
        return {name: source.retrieve(query, self.cap(limit))
                for name, source in self.sources.items()}

    def merge(self, query: Query, limit: int | None = None, found: Found | None = None
              ) -> PoolResult:
        """Up to ``limit`` (default ``max_candidates``) distinct candidates; ``found`` is
        ``retrieve_each``'s answer when the caller already has it (it is retrieved otherwise).

        First pass: round-robin by rank over each source's list cut at its quota. Second pass, if
        the pool is not full yet: the same over what lies beyond the quotas. Computed as one sort
        of every (pass, rank, source) discovery, keeping each item's first.
        """
        cap = self.cap(limit)
        found = found if found is not None else self.retrieve_each(query, cap)
        names = list(self.sources)
        codes, scores, source, rank = [], [], [], []
        for s, name in enumerate(names):
            items, score = found[name]
            items, score = items[:cap], score[:cap]
            codes.append(self._to_pool[name][items])
            scores.append(score)
            source.append(np.full(len(items), s, np.int64))
            rank.append(np.arange(len(items)))
        codes_all, scores_all = np.concatenate(codes), np.concatenate(scores)
        source_all, rank_all = np.concatenate(source), np.concatenate(rank)
        quota = np.array([self.quotas[n] for n in names], np.int64)
        second = rank_all >= quota[source_all]
        order = np.lexsort((source_all, rank_all, second))
        codes_all, scores_all, source_all = codes_all[order], scores_all[order], source_all[order]
        _, first = np.unique(codes_all, return_index=True)
        chosen = np.sort(first)[:cap]
        pooled = codes_all[chosen]
        if not len(pooled):
            empty = np.zeros(0, np.int64)
            return PoolResult(self.item_ids, empty, empty, np.zeros(0, np.float32), names, empty,
                              empty)
        sorter = np.argsort(pooled)
        at = np.minimum(np.searchsorted(pooled, codes_all, sorter=sorter), len(pooled) - 1)
        hit = pooled[sorter[at]] == codes_all
        return PoolResult(self.item_ids, pooled, source_all[chosen], scores_all[chosen], names,
                          sorter[at][hit], source_all[hit])

    def describe(self) -> dict[str, Any]:
        return {"max_candidates": self.max_candidates, "quotas": self.quotas,
                "skipped": self.skipped, "fitted_until": self.fitted_until,
                "fit_seconds": self.fit_seconds, "exclude_watched": self.watched is not None,
                "sources": {name: {"kind": s.kind, **s.params()} for name, s in self.sources.items()}}

    def save(self, directory: str | Path) -> Path:
        """One sub-folder per source plus ``pool.json`` naming them."""
        directory = Path(directory)
        if directory.exists():
            shutil.rmtree(directory)
        directory.mkdir(parents=True)
        for name, source in self.sources.items():
            source.save(directory / name)
        manifest = {"max_candidates": self.max_candidates, "quotas": self.quotas,
                    "skipped": self.skipped, "fitted_until": self.fitted_until,
                    "fit_seconds": self.fit_seconds,
                    "sources": [{"name": n, "kind": s.kind} for n, s in self.sources.items()]}
        (directory / MANIFEST).write_text(json.dumps(manifest, indent=2))
        if self.watched is not None:
            users = sorted(self.watched)
            lists = [sorted(self.watched[u]) for u in users]
            np.save(directory / WATCHED_USERS, np.array(users, dtype=str), allow_pickle=False)
            np.save(directory / WATCHED_COUNTS, np.array([len(v) for v in lists], np.int64),
                    allow_pickle=False)
            np.save(directory / WATCHED_ITEMS, np.array([v for vs in lists for v in vs],
                                                        dtype=str), allow_pickle=False)
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> CandidatePool:
        directory = Path(directory)
        try:
            manifest = json.loads((directory / MANIFEST).read_text())
            entries = manifest["sources"]
        except FileNotFoundError as exc:
            raise RetrievalError(f"{directory}/{MANIFEST}: missing") from exc
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise RetrievalError(f"{directory}/{MANIFEST}: corrupt ({exc})") from exc
        sources = {}
        for entry in entries:
            kind = entry.get("kind")
            if kind not in SOURCE_KINDS:
                raise RetrievalError(f"{directory}/{MANIFEST}: unknown source kind {kind!r}")
            folder = directory / entry["name"]
            if read_meta(folder).get("kind") != kind:
                raise RetrievalError(f"{folder}: source kind does not match {MANIFEST}")
            sources[entry["name"]] = SOURCE_KINDS[kind].load(folder)
        return cls(sources, manifest.get("max_candidates", 300), manifest.get("quotas"),
                   manifest.get("skipped"), manifest.get("fitted_until"),
                   manifest.get("fit_seconds"), _load_watched(directory))


def _load_watched(directory: Path) -> dict[str, list[str]] | None:
    """The saved watched lists, or None when the pool keeps watched videos."""
    if not (directory / WATCHED_USERS).exists():
        return None
    try:
        users, counts, items = (np.load(directory / name, allow_pickle=False).tolist() for name in
                                (WATCHED_USERS, WATCHED_COUNTS, WATCHED_ITEMS))
    except (OSError, ValueError) as exc:
        raise RetrievalError(f"{directory}/{WATCHED_USERS}: unreadable ({exc})") from exc
    if len(users) != len(counts) or sum(counts) != len(items):
        raise RetrievalError(f"{directory}: the watched lists disagree with each other")
    ends = np.cumsum([0, *counts]).tolist()
    return {u: items[lo:hi] for u, lo, hi in zip(users, ends[:-1], ends[1:], strict=True)}


DEFAULT_SHARES = {"cowatch": 0.1, "embedding": 0.2, "twotower": 0.3, "topic": 0.1,
                  "popular": 0.3}
DEFAULT_POPULAR = {"fresh_share": 1.0, "fresh_days": 1.0}
"""Each source's quota as a share of the pool, and how much of the popular list goes to newly
arrived videos: chosen on KuaiRand's validation day (docs/retrieval.md, "Pool settings")."""


def default_pool(table: pa.Table, columns: LogColumns | None = None, max_candidates: int = 300,
                 topic_column: str = "topic", shares: dict[str, float] | None = None,
                 exclude_watched: bool = True, popular: dict[str, float] | None = None
                 ) -> CandidatePool:
    """The standard pool: the sources named in ``shares`` (default ``DEFAULT_SHARES``), each
    with that share of the pool as its quota.

    Topic is only built when its column exists; otherwise the pool records why it is missing
    (``pool.skipped``: the build warns, the evaluation shows a row) and its share goes to
    embedding. What a source leaves of its quota is filled from beyond the others' quotas; for a
    cold-start query only popular answers and fills the pool. ``exclude_watched``: a user's
    pools leave out the videos the user watched in ``table`` (on KuaiRand no click repeats an
    earlier one, so they only take room: docs/retrieval.md, "Pool settings"). ``popular``: the
    popular source's settings (default ``DEFAULT_POPULAR``).
    """
    columns = columns or LogColumns()
    shares = dict(DEFAULT_SHARES if shares is None else shares)
    unknown = set(shares) - set(SOURCE_KINDS)
    if unknown or any(v < 0 for v in shares.values()):
        raise ValueError(f"pool shares: unknown sources {sorted(unknown)} or a negative share")
    skipped: dict[str, str] = {}
    if "topic" in shares and not (topic_column and topic_column in table.column_names):
        moved = shares.pop("topic")
        if "embedding" in shares:
            shares["embedding"] += moved
        skipped["topic"] = (f"no {topic_column!r} column in the logs; its quota "
                            f"({moved:.0%}) went to embedding" if topic_column
                            else "topic_column is empty")
    special = {"topic": lambda: TopicMatch(columns, topic_column=topic_column),
               "popular": lambda: PopularFresh(columns, **(DEFAULT_POPULAR if popular is None
                                                           else popular))}
    sources: dict[str, CandidateSource] = {
        name: special[name]() if name in special else SOURCE_KINDS[name](columns)
        for name in shares}
    quotas = {name: max(1, round(share * max_candidates)) for name, share in shares.items()}
    return CandidatePool(sources, max_candidates, quotas, skipped).fit(table, columns,
                                                                       exclude_watched)
