"""Retrieval judged on held-out days: is the video a person watched next in the pool, which
source found it, and where does the ranker put it.

For every positive event (a click, a long view, a like: one label column at a time) of user u on
video v during the evaluation days, the query is ``Query(u, q)`` with q the user's previous
positive of the same label (from the fitting days or earlier evaluation days; none for a first
one), which is what the service sees when u finishes q. Then:

    pool recall@N     v is among the N pooled candidates
    source recall     v is in the source's own top N ("found"), and within its quota
    ranked recall@10  v is in the ranker's top 10 of the pool: the two stages judged together
    pairwise          share of the other pool items the ranker scores below v (random: 50%)
    ... vs shown      the same against the pool items the user was shown on the evaluation days
                      and did not engage with: the logged clicks' exposure taken out

beside two pools of the same size that know nothing about the query: the N items with most
positives in the fitting days, and N random catalogue items; and which source the pool's items,
its ranked top 10 and its hits come from. Recall is only fair when no source has seen the
evaluation days, so events well before the pool's last fitted event are refused
(``evaluate_retrieval``). Ranking is a callback (``Scorer``), so this module needs no serving code.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from watchnext.retrieve.base import Query, RetrievalError
from watchnext.retrieve.log import LogColumns, WatchLog
from watchnext.retrieve.pool import SOURCE_KINDS, CandidatePool
from watchnext.stats import clustered_mean

Scorer = Callable[[str, str | None, list[str], float], np.ndarray]
"""(user id, query video or None, candidate ids, event time in epoch seconds) -> one score each."""

TOP_K = 10


@dataclass(frozen=True)
class Events:
    """Positive events of one label on the evaluation days, each with its query video."""

    label: str
    users: list[str]
    items: list[str]
    queries: list[str | None]
    times: np.ndarray  # [N] epoch seconds
    earlier: dict[str, set[str]] = field(default_factory=dict)  # user -> history positives
    # user -> videos shown to the user on the evaluation days without a positive of the label
    shown: dict[str, set[str]] = field(default_factory=dict)


def positive_events(history: pa.Table, evaluation: pa.Table, label: str,
                    columns: LogColumns) -> Events:
    """Positives of ``label`` in ``evaluation``, in time order per user, each paired with the
    user's previous positive of the same label in ``history`` or earlier in ``evaluation``."""
    cols = LogColumns(columns.user, columns.item, columns.time, watched=label)
    past = WatchLog.from_table(history, cols) if history.num_rows else None
    now = WatchLog.from_table(evaluation, cols)
    last: dict[str, str] = {}
    earlier: dict[str, set[str]] = {}
    if past is not None:
        for u, i in zip(past.users.tolist(), past.items.tolist(), strict=True):
            last[past.user_ids[u]] = past.item_ids[i]  # sorted by (user, time): the last wins
            earlier.setdefault(past.user_ids[u], set()).add(past.item_ids[i])
    users, items, queries = [], [], []
    for u, i in zip(now.users.tolist(), now.items.tolist(), strict=True):
        user, item = now.user_ids[u], now.item_ids[i]
        users.append(user)
        items.append(item)
        queries.append(last.get(user))
        last[user] = item
    return Events(label, users, items, queries, now.times.copy(), earlier,
                  _shown_without_positive(evaluation, label, columns))


def _shown_without_positive(table: pa.Table, label: str, columns: LogColumns
                            ) -> dict[str, set[str]]:
    """user -> the videos of ``table``'s rows whose ``label`` is 0 (shown, no positive)."""
    negative = table.filter(pc.equal(pc.fill_null(table[label], 1), 0))
    shown: dict[str, set[str]] = {}
    for user, item in zip(pc.cast(negative[columns.user], pa.string()).to_pylist(),
                          pc.cast(negative[columns.item], pa.string()).to_pylist(), strict=True):
        if user is not None and item is not None:
            shown.setdefault(user, set()).add(item)
    return shown


@dataclass
class _Tally:
    """Running per-event records of one row; turned into the reported figures by ``summary``."""

    users: list[str] = field(default_factory=list)  # per event: intervals are clustered by user
    found: list[bool] = field(default_factory=list)
    in_quota: list[bool] = field(default_factory=list)
    in_top: list[bool] = field(default_factory=list)  # per event: ranked into the top 10
    sizes: list[int] = field(default_factory=list)
    ranks: list[int] = field(default_factory=list)  # per hit: ranker rank, 1 = best
    merge_ranks: list[int] = field(default_factory=list)  # per hit: position in the pool's order
    pairwise: list[float] = field(default_factory=list)  # per hit
    hit_users: list[str] = field(default_factory=list)
    exposed: list[float] = field(default_factory=list)  # per hit with shown negatives in the list
    exposed_users: list[str] = field(default_factory=list)
    random_top: list[float] = field(default_factory=list)  # per hit: P(top 10) in random order
    top_items: set[str] = field(default_factory=set)
    pool_items: set[str] = field(default_factory=set)
    # Which source each pooled item, ranked top-10 item and hit came from (first finder).
    mix: dict[str, Counter[str]] = field(default_factory=lambda: {
        "pool": Counter(), "top_10": Counter(), "hits": Counter()})

    def summary(self, ranked: bool) -> dict[str, Any]:
        hits = len(self.ranks)
        out: dict[str, Any] = {"events": len(self.found),
                               "recall": _interval(self.found, self.users),
                               "mean_size": float(np.mean(self.sizes)) if self.sizes else 0.0,
                               "distinct_items": len(self.pool_items)}
        if self.in_quota:
            out["recall_in_quota"] = _interval(self.in_quota, self.users)
        if ranked:
            ranks = np.array(self.ranks, np.int64)
            out.update({
                "recall_at_10": _interval(self.in_top, self.users),
                "hits_in_top_10": float(np.mean(ranks <= TOP_K)) if hits else None,
                "hits_in_top_10_random_order": float(np.mean(self.random_top)) if hits else None,
                "median_rank": float(np.median(ranks)) if hits else None,
                "pairwise": _interval(self.pairwise, self.hit_users),
                "pairwise_exposed": _interval(self.exposed, self.exposed_users),
                "distinct_top_10": len(self.top_items)})
            if self.merge_ranks:
                out["median_merge_rank"] = float(np.median(self.merge_ranks))
        if self.mix["pool"]:
            out["source_mix"] = {part: {name: count / max(1, sum(counts.values()))
                                        for name, count in sorted(counts.items())}
                                 for part, counts in self.mix.items()}
        return out


def _interval(values: Sequence[float], groups: Sequence[str]) -> dict[str, float | int | None]:
    """A mean of values in [0, 1] with its 95% interval (clipped to [0, 1]), clustered by user:
    one person's events are not independent, so the variance sums each user's residuals before
    squaring them."""
    if not len(values):
        return {"value": None, "low": None, "high": None, "n": 0, "users": 0}
    mean, half, g = clustered_mean(np.asarray(values, np.float64), np.asarray(groups, dtype=str))
    return {"value": mean, "low": max(0.0, mean - half), "high": min(1.0, mean + half),
            "n": len(values), "users": g}


def _position(ids: Sequence[str], item: str) -> int:
    """0-based position of ``item`` in ``ids``; -1 when absent."""
    try:
        return list(ids).index(item)
    except ValueError:
        return -1


def _rank_of(scores: np.ndarray, hit: int) -> tuple[int, float]:
    """(1-based rank of candidate ``hit``, share of the others it beats; ties count half)."""
    target = scores[hit]
    above = int(np.sum(scores > target))
    ties = int(np.sum(scores == target)) - 1
    others = len(scores) - 1
    beaten = others - above - ties
    return above + 1, (beaten + 0.5 * ties) / others if others else 1.0


def _tally_ranked(tally: _Tally, ids: list[str], item: str, event: tuple[str, str | None, float],
                  scorer: Scorer | None, origins: list[str] | None = None,
                  shown: set[str] | frozenset[str] = frozenset()) -> None:
    """Record list ``ids`` for one event: found or not, and where the ranker puts ``item``;
    ``origins`` (the source of each of ``ids``) adds the source mix of the list and its top 10;
    ``shown`` (videos shown to the user without a positive) gives the exposed pairwise: the hit
    against the list's items the user saw and passed over, not ones nobody showed them."""
    user, query, when = event
    hit = _position(ids, item)
    if origins is not None:
        tally.mix["pool"].update(origins)
        if hit >= 0:
            tally.mix["hits"][origins[hit]] += 1
    tally.users.append(user)
    tally.found.append(hit >= 0)
    tally.sizes.append(len(ids))
    tally.pool_items.update(ids)
    if scorer is None:
        return
    if not ids:
        tally.in_top.append(False)
        return
    scores = _scores(scorer, user, query, ids, when)
    top = np.argsort(-scores, kind="stable")[:TOP_K].tolist()
    tally.top_items.update(ids[i] for i in top)
    if origins is not None:
        tally.mix["top_10"].update(origins[i] for i in top)
    if hit < 0:
        tally.in_top.append(False)
        return
    rank, beaten = _rank_of(scores, hit)
    tally.in_top.append(rank <= TOP_K)
    tally.ranks.append(rank)
    tally.pairwise.append(beaten)
    tally.hit_users.append(user)
    tally.random_top.append(min(1.0, TOP_K / len(ids)))
    passed = [i for i, v in enumerate(ids) if v in shown and i != hit]
    if passed:
        target, others = scores[hit], scores[passed]
        tally.exposed.append(float(np.mean((others < target) + 0.5 * (others == target))))
        tally.exposed_users.append(user)


def _scores(scorer: Scorer, user: str, query: str | None, ids: list[str], when: float
            ) -> np.ndarray:
    scores = np.asarray(scorer(user, query, ids, when), dtype=np.float64)
    if scores.shape != (len(ids),):
        raise RetrievalError(f"the scorer returned {scores.shape} scores for {len(ids)} items")
    return scores


def popular_items(history: pa.Table, label: str, columns: LogColumns, n: int) -> list[str]:
    """The ``n`` items with most ``label`` positives in ``history`` (ties by id, for stability)."""
    log = WatchLog.from_table(history, LogColumns(columns.user, columns.item, columns.time, label))
    counts = np.bincount(log.items, minlength=log.num_items)
    order = sorted(range(log.num_items), key=lambda i: (-counts[i], log.item_ids[i]))
    return [log.item_ids[i] for i in order[:n + 1]]


def evaluate_retrieval(pool: CandidatePool, history: pa.Table, evaluation: pa.Table,
                       labels: Sequence[str], columns: LogColumns, *, pool_size: int | None = None,
                       scorer: Scorer | None = None, seed: int = 0,
                       fitted_until: float | None = None, tolerance_s: float = 3600.0,
                       exclude_history: bool = False) -> dict[str, Any]:
    """Recall of ``pool``, of each of its sources and of the two baselines, per label.

    ``history`` holds the logs up to the evaluation (the fitting days: the previous positive of
    a user's first event comes from there, as do the popular baseline's counts); ``evaluation``
    the held-out days. ``fitted_until`` (epoch seconds, default: the pool's record of its last
    fitted event, else the newest event of ``history``): no evaluated event may come more than
    ``tolerance_s`` before it. Logs split by a day column can disagree with their timestamps by
    minutes around midnight (KuaiRand's do), but a fitted evaluation day cannot hide in an hour.
    ``exclude_history``: each query excludes the user's positives in ``history`` (what a service
    that never re-recommends a watched video would do), to measure what that rule costs.
    """
    if pool_size is not None and not 1 <= pool_size <= pool.max_candidates:
        raise RetrievalError(f"pool size {pool_size} is outside 1..{pool.max_candidates}, the "
                             "pool's cap (pool.json: max_candidates)")
    size = pool_size or pool.max_candidates
    horizon = fitted_until if fitted_until is not None else pool.fitted_until
    if horizon is None and history.num_rows:
        horizon = WatchLog.from_table(history, columns).now
    catalogue = list(pool.item_ids)
    known = set(catalogue)
    rng = np.random.default_rng(seed)
    report: dict[str, Any] = {
        "pool_size": size, "catalogue": len(catalogue), "labels": {},
        "sources": {name: {"kind": s.kind, "quota": min(pool.quotas[name], size)}
                    for name, s in pool.sources.items()},
        "missing_sources": _missing_sources(pool), "ranked": scorer is not None,
        "fitted_until": horizon}
    for label in labels:
        events = positive_events(history, evaluation, label, columns)
        _check_after(events, horizon, tolerance_s)
        popular = popular_items(history, label, columns, size) if history.num_rows else []
        report["labels"][label] = _evaluate_label(pool, events, size, popular, catalogue, known,
                                                  rng, scorer, exclude_history)
    return report


def _check_after(events: Events, horizon: float | None, tolerance_s: float) -> None:
    """Refuse events the sources may have been fitted on (see ``evaluate_retrieval``)."""
    if not len(events.times) or horizon is None:
        return
    first = float(events.times.min())
    if first <= horizon - tolerance_s:
        def when(t: float) -> str:
            return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="seconds")

        raise RetrievalError(
            f"the evaluation's {events.label!r} events start at {when(first)}, before the pool's "
            f"last fitted event ({when(horizon)}): the sources have seen the evaluation days "
            "and recall would be inflated; evaluate on days after the ones the pool was fitted on")


def _missing_sources(pool: CandidatePool) -> dict[str, str]:
    """Every source kind this pool lacks, with the reason recorded when it was built."""
    present = {s.kind for s in pool.sources.values()}
    return {kind: pool.skipped.get(kind, "not in this pool") for kind in SOURCE_KINDS
            if kind not in present}


def _evaluate_label(pool: CandidatePool, events: Events, size: int, popular: list[str],
                    catalogue: list[str], known: set[str], rng: np.random.Generator,
                    scorer: Scorer | None, exclude_history: bool = False) -> dict[str, Any]:
    n = len(events.items)
    tallies = {"pool": _Tally(), "popular-only": _Tally(), "random": _Tally()}
    per_source = {name: _Tally() for name in pool.sources}
    cold, repeat_events, repeats = 0, 0, []
    for user, item, query, when in zip(events.users, events.items, events.queries,
                                       events.times.tolist(), strict=True):
        cold += item not in known
        seen = events.earlier.get(user, set())
        q = Query(user, query, frozenset(seen) if exclude_history else frozenset())
        found = pool.retrieve_each(q, size)  # once per event and source: the pool merges these
        pooled = pool.merge(q, size, found)
        ids = pooled.ids
        origins = [pooled.source_names[s] for s in pooled.source.tolist()]
        repeats.append(len(seen.intersection(ids)))
        repeat_events += item in seen
        merge_position = _position(ids, item)
        if merge_position >= 0:
            tallies["pool"].merge_ranks.append(merge_position + 1)
        shown = events.shown.get(user, set())
        _tally_ranked(tallies["pool"], ids, item, (user, query, when), scorer, origins, shown)
        baseline = [v for v in popular if v != query][:size]
        _tally_ranked(tallies["popular-only"], baseline, item, (user, query, when), scorer,
                      shown=shown)
        drawn = rng.choice(len(catalogue), size=min(size + 1, len(catalogue)), replace=False)
        randoms = [catalogue[i] for i in drawn.tolist() if catalogue[i] != query][:size]
        _tally_ranked(tallies["random"], randoms, item, (user, query, when), scorer,
                      shown=shown)
        for name, source in pool.sources.items():
            listed = [source.item_ids[c] for c in found[name][0].tolist()]
            position = _position(listed, item)
            tally = per_source[name]
            tally.users.append(user)
            tally.found.append(position >= 0)
            tally.in_quota.append(0 <= position < pool.quotas[name])
            tally.sizes.append(len(listed))
            tally.pool_items.update(listed)
    rows = {"pool": tallies["pool"].summary(scorer is not None)}
    rows.update({f"source:{name}": t.summary(False) for name, t in per_source.items()})
    rows["popular-only"] = tallies["popular-only"].summary(scorer is not None)
    rows["random"] = tallies["random"].summary(scorer is not None)
    return {"events": n, "no_query": sum(q is None for q in events.queries),
            "cold_items": cold / n if n else None,
            "repeat_items": repeat_events / n if n else None,
            "pool_repeats": float(np.mean(repeats)) if repeats else None, "rows": rows}


def report_rows(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The report as one table: a row per (label, pool or source or baseline)."""
    header = ["label", "row", "events", f"recall@{report['pool_size']}", "in quota", "mean size",
              "recall@10 ranked", "hits in top 10 (random order)", "median rank (merge order)",
              "pairwise [95% CI]", "pairwise vs shown [95% CI]", "coverage"]
    rows = []
    for label, result in report["labels"].items():
        for name, row in result["rows"].items():
            rows.append([label, name, str(row["events"]), _pct(row["recall"]),
                         _pct(row.get("recall_in_quota")), f"{row['mean_size']:.1f}",
                         _pct(row.get("recall_at_10")), _top10(row), _median(row),
                         _pct(row.get("pairwise")), _pct(row.get("pairwise_exposed")),
                         f"{row['distinct_items'] / max(1, report['catalogue']):.1%}"])
        cold = result["cold_items"]
        rows.append([label, "(cold items: unseen when fitted)", str(result["events"]),
                     "-" if cold is None else f"{cold:.1%} of events", *["-"] * 8])
    for kind, why in report["missing_sources"].items():
        rows.append(["*", f"source:{kind}", "-", f"missing ({why})", *["-"] * 8])
    return header, rows


def mix_rows(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Where the pool's items, the ranker's top 10 and the hits come from (first finder), and
    how many pooled videos the user already engaged with in the history."""
    header = ["label", "source", "share of pool", "share of ranked top 10", "share of hits"]
    rows = []
    for label, result in report["labels"].items():
        mix = result["rows"]["pool"].get("source_mix", {})
        for name in report["sources"]:
            rows.append([label, name, *(f"{mix[part][name]:.1%}" if name in mix.get(part, {})
                                        else "-" for part in ("pool", "top_10", "hits"))])
        repeats = result.get("pool_repeats")
        rows.append([label, "(already positive in history, per pool)",
                     "-" if repeats is None else f"{repeats:.1f} videos", "-", "-"])
    return header, rows


def _pct(value: dict[str, Any] | None) -> str:
    if not value or value.get("value") is None:
        return "-"
    return f"{value['value']:.2%} [{value['low']:.2%}, {value['high']:.2%}]"


def _top10(row: dict[str, Any]) -> str:
    if row.get("hits_in_top_10") is None:
        return "-"
    return f"{row['hits_in_top_10']:.2%} ({row['hits_in_top_10_random_order']:.2%})"


def _median(row: dict[str, Any]) -> str:
    if row.get("median_rank") is None:
        return "-"
    merge = row.get("median_merge_rank")
    return f"{row['median_rank']:.0f}" + (f" ({merge:.0f})" if merge is not None else "")
