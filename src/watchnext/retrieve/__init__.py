"""Candidate generation: several sources, each one kind of similarity, pooled for the ranker."""

from watchnext.retrieve.base import Candidate, CandidateSource, Query, RetrievalError
from watchnext.retrieve.cowatch import CoWatch
from watchnext.retrieve.embedding import EmbeddingRetrieval
from watchnext.retrieve.log import LogColumns, WatchLog
from watchnext.retrieve.pool import SOURCE_KINDS, CandidatePool, PooledCandidate, default_pool
from watchnext.retrieve.popular import PopularFresh
from watchnext.retrieve.topic import TopicMatch
from watchnext.retrieve.twotower import TwoTower

__all__ = ["SOURCE_KINDS", "Candidate", "CandidatePool", "CandidateSource", "CoWatch",
           "EmbeddingRetrieval", "LogColumns", "PooledCandidate", "PopularFresh", "Query",
           "RetrievalError", "TopicMatch", "TwoTower", "WatchLog", "default_pool"]
