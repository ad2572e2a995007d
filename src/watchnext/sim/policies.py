"""Ranking policies that serve simulated traffic: random, popularity, a trained ranker, and a mix.

A policy scores every candidate of every request (``[R, C]``); the world shows the top ``slots``.
Randomness of a policy is seeded from the traffic it serves, so two arms with the same exploration
rate explore on the same requests with the same shuffles (common random numbers).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch

from watchnext.api import Ranker
from watchnext.model.score import log_combined_score
from watchnext.sim import logs
from watchnext.sim.world import Outcomes, Traffic, World, slate_positions

_RANDOM_SALT = 7


class Policy(Protocol):
    name: str

    def scores(self, world: World, traffic: Traffic) -> np.ndarray:
        """A score per candidate ``[R, C]``; higher is shown higher."""


class RandomPolicy:
    """Uniformly random slates: the unbiased exploration log."""

    name = "random"

    def __init__(self, salt: int = _RANDOM_SALT):
        self.salt = salt

    def scores(self, world: World, traffic: Traffic) -> np.ndarray:
        rng = np.random.default_rng([world.config.seed, *traffic.key(self.salt)])
        return rng.random(traffic.shape)


class PopularityPolicy:
    """Most-viewed first: a typical production policy before any learned ranker."""

    name = "popularity"

    def scores(self, world: World, traffic: Traffic) -> np.ndarray:
        return world.log_popularity[traffic.candidates]


class ModelPolicy:
    """A trained watchnext ranker in serving mode: order by prod_t pred_t ** w_t.

    ``serve_position`` is for a model that takes the slot as an input feature: the position is
    unknown before ranking, so every candidate is scored as if shown in that slot.
    """

    def __init__(self, ranker: Ranker, name: str = "model", exponents: Sequence[float] | None = None,
                 serve_position: int | None = None):
        self.ranker, self.name = ranker, name
        self.exponents = list(exponents) if exponents is not None else None
        self.serve_position = serve_position

    def predictions(self, world: World, traffic: Traffic) -> np.ndarray:
        """Per-task serving predictions ``[R, C, T]``."""
        table = logs.candidates(world, traffic, self.serve_position)
        return self.ranker.predict(table).reshape(*traffic.shape, -1)

    def combine(self, predictions: np.ndarray, exponents: Sequence[float] | None = None
                ) -> np.ndarray:
        """log prod_t pred_t ** w_t ``[R, C]`` from predictions ``[R, C, T]`` (log: same order)."""
        flat = torch.from_numpy(predictions.reshape(-1, predictions.shape[-1]))
        weights = exponents if exponents is not None else self.exponents
        score = log_combined_score(flat, self.ranker.config.tasks, weights)
        return score.numpy().reshape(predictions.shape[:2])

    def scores(self, world: World, traffic: Traffic) -> np.ndarray:
        return self.combine(self.predictions(world, traffic))


class EpsilonMix:
    """With probability ``epsilon`` per request, a random slate instead of ``base``'s."""

    def __init__(self, base: Policy, epsilon: float, salt: int = _RANDOM_SALT):
        self.base, self.epsilon, self.salt = base, epsilon, salt
        self.name = f"{base.name}+eps{epsilon:g}" if epsilon else base.name

    def scores(self, world: World, traffic: Traffic) -> np.ndarray:
        return explore(world, traffic, self.base.scores(world, traffic), self.epsilon, self.salt)

    def served_by(self, world: World, traffic: Traffic) -> np.ndarray:
        """Per request, the name of the policy that ordered its slate: ``random`` where it
        explored, so the logs mark the randomised traffic (``watchnext bias`` reads it)."""
        chosen = explored(world, traffic, self.epsilon, self.salt)
        return np.where(chosen, RandomPolicy.name, self.base.name)


def explored(world: World, traffic: Traffic, epsilon: float, salt: int = _RANDOM_SALT
             ) -> np.ndarray:
    """Which requests ``[R]`` are shown a random slate at exploration rate ``epsilon``."""
    if epsilon <= 0:
        return np.zeros(traffic.shape[0], dtype=bool)
    rng = np.random.default_rng([world.config.seed, *traffic.key(salt + 1)])
    return rng.random(traffic.shape[0]) < epsilon


def explore(world: World, traffic: Traffic, scores: np.ndarray, epsilon: float,
            salt: int = _RANDOM_SALT) -> np.ndarray:
    """``scores`` with a random share ``epsilon`` of requests given random scores instead."""
    if epsilon <= 0:
        return scores
    chosen = explored(world, traffic, epsilon, salt)
    return np.where(chosen[:, None], RandomPolicy(salt).scores(world, traffic), scores)


def served_by(policy: Policy, world: World, traffic: Traffic) -> np.ndarray | str:
    """The policy name to log per request (an array for a mix that explores)."""
    return policy.served_by(world, traffic) if isinstance(policy, EpsilonMix) else policy.name


def serve(world: World, traffic: Traffic, policy: Policy) -> Outcomes:
    """Rank with ``policy``, show the top slots, and return the users' responses."""
    position = slate_positions(policy.scores(world, traffic), world.config.slots)
    return world.respond(traffic, position)


def make_policy(name: str) -> Policy:
    """A non-learned policy by name (``random`` or ``popularity``)."""
    policies = {"random": RandomPolicy, "popularity": PopularityPolicy}
    if name not in policies:
        raise ValueError(f"unknown policy {name!r}; known: {', '.join(policies)}")
    return policies[name]()
