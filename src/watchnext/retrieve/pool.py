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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from watchnext.retrieve.base import Candidate, CandidateSource, Query, RetrievalError, read_meta
from watchnext.retrieve.cowatch import CoWatch
from watchnext.retrieve.embedding import EmbeddingRetrieval
from watchnext.retrieve.log import LogColumns, WatchLog
from watchnext.retrieve.popular import PopularFresh
from watchnext.retrieve.topic import TopicMatch

SOURCE_KINDS: dict[str, type[CandidateSource]] = {
    cls.kind: cls for cls in (CoWatch, EmbeddingRetrieval, TopicMatch, PopularFresh)}
MANIFEST = "pool.json"


@dataclass
class PooledCandidate:
    """A candidate as the ranker sees it: the item and where it came from."""

    item_id: str
    source: str
    sources: list[str] = field(default_factory=list)
    source_score: float = 0.0


class CandidatePool:
    """Named sources, each with a quota, merged and capped at ``max_candidates``."""

    def __init__(self, sources: dict[str, CandidateSource], max_candidates: int = 300,
                 quotas: dict[str, int] | None = None):
        if not sources:
            raise ValueError("CandidatePool needs at least one source")
        if max_candidates < 1:
            raise ValueError(f"max_candidates must be >= 1, got {max_candidates}")
        self.sources = dict(sources)
        self.max_candidates = max_candidates
        self.quotas = {name: (quotas or {}).get(name, max_candidates) for name in self.sources}

    def fit(self, table: pa.Table, columns: LogColumns | None = None) -> CandidatePool:
        """Fit every source on one impression log (the watch log is extracted once)."""
        log = WatchLog.from_table(table, columns or LogColumns())
        for source in self.sources.values():
            source.fit(table, log if source.columns == (columns or LogColumns()) else None)
        return self

    def candidates(self, query: Query, limit: int | None = None) -> list[PooledCandidate]:
        """Up to ``limit`` (default ``max_candidates``) distinct candidates.

        First pass: round-robin by rank over each source's list cut at its quota. Second pass, if
        the pool is not full yet: the same over what lies beyond the quotas.
        """
        cap = min(limit or self.max_candidates, self.max_candidates)
        lists = {name: source.candidates(query, cap) for name, source in self.sources.items()}
        pooled: dict[str, PooledCandidate] = {}
        first = {name: found[:self.quotas[name]] for name, found in lists.items()}
        rest = {name: found[self.quotas[name]:] for name, found in lists.items()}
        for part in (first, rest):
            longest = max((len(v) for v in part.values()), default=0)
            for rank in range(longest):
                for name, found in part.items():
                    if rank < len(found):
                        self._add(pooled, name, found[rank], cap)
        return list(pooled.values())

    @staticmethod
    def _add(pooled: dict[str, PooledCandidate], name: str, item: Candidate, cap: int) -> None:
        known = pooled.get(item.item_id)
        if known is not None:
            if name not in known.sources:
                known.sources.append(name)
        elif len(pooled) < cap:
            pooled[item.item_id] = PooledCandidate(item.item_id, name, [name], item.score)

    def describe(self) -> dict[str, Any]:
        return {"max_candidates": self.max_candidates, "quotas": self.quotas,
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
                    "sources": [{"name": n, "kind": s.kind} for n, s in self.sources.items()]}
        (directory / MANIFEST).write_text(json.dumps(manifest, indent=2))
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
        return cls(sources, manifest.get("max_candidates", 300), manifest.get("quotas"))


def default_pool(table: pa.Table, columns: LogColumns | None = None, max_candidates: int = 300,
                 topic_column: str = "topic") -> CandidatePool:
    """The standard pool: co-watch, embeddings, topic (only when the column exists), popular.

    Quotas (in shares of the pool) give the similarity sources most of it and keep popular/fresh
    a minority; for a cold-start query the others find nothing and popular fills the pool.
    """
    columns = columns or LogColumns()
    shares = {"cowatch": 0.4, "embedding": 0.3, "popular": 0.15}
    sources: dict[str, CandidateSource] = {
        "cowatch": CoWatch(columns),
        "embedding": EmbeddingRetrieval(columns),
    }
    if topic_column and topic_column in table.column_names:
        sources["topic"] = TopicMatch(columns, topic_column=topic_column)
        shares["topic"] = 0.15
    else:
        shares["embedding"] += 0.15
    sources["popular"] = PopularFresh(columns)
    quotas = {name: max(1, round(share * max_candidates)) for name, share in shares.items()}
    return CandidatePool(sources, max_candidates, quotas).fit(table, columns)
