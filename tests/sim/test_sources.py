"""Sources judged live: arms rank watchnext's pool, cut to their sources, on the same requests
with response noise fixed per (request, video); the new config keys are validated by name."""

from __future__ import annotations

import copy
import json
import re
import tomllib

import numpy as np
import pytest
import torch

from tests.sim.conftest import tiny_experiment
from watchnext.config import ConfigError
from watchnext.retrieve.base import Query
from watchnext.sim import sources
from watchnext.sim.ab import training_groups
from watchnext.sim.experiment import run_experiment
from watchnext.sim.experiment_config import arm_sources, experiment_from_dict
from watchnext.sim.setup import load
from watchnext.sim.world import NOISE_FIELDS

SHARES = {"cowatch": 0.3, "topic": 0.3, "popular": 0.4}
MODEL = {"model": {"num_experts": 2, "expert_units": [8], "bottom_units": [16]},
         "train": {"max_epochs": 1, "batch_size": 512}}


def sources_experiment(**overrides) -> dict:
    """A tiny pool experiment: full pool (control), one source dropped, popular alone, the
    logging policy on the world's candidates and an A/A arm."""
    raw = tiny_experiment(
        name="tiny-sources", replicates=2,
        evaluation={"requests": 120, "control": "all"},
        retrieval={"pool_size": 20, "shares": SHARES, "fresh_share": 0.0, "fresh_days": 2.0},
        arms=[{"name": "all", **MODEL},
              {"name": "without_topic", "drop_source": "topic", **MODEL},
              {"name": "popular_only", "sources": ["popular"], **MODEL},
              {"name": "logging_policy", "policy": "popularity", "world_candidates": True},
              {"name": "all_retrained", "seed_offset": 1, **MODEL}])
    raw.update(overrides)
    return raw


@pytest.mark.parametrize(("change", "key"), [
    (lambda r: r["retrieval"].update(pool_size=0), "retrieval.pool_size"),
    (lambda r: r["retrieval"].update(shares={"cowatch": 0.5, "nearest": 0.5}),
     "retrieval.shares.nearest"),
    (lambda r: r["retrieval"].update(shares={"cowatch": -0.5}), "retrieval.shares.cowatch"),
    (lambda r: r["retrieval"].update(shares={}), "retrieval.shares"),
    (lambda r: r["retrieval"].update(fresh_share=1.5), "retrieval.fresh_share"),
    (lambda r: r["retrieval"].update(fresh_days=0), "retrieval.fresh_days"),
    (lambda r: r["retrieval"].update(quota=3), "retrieval.quota"),
    (lambda r: r["retrieval"].update(exclude_watched="yes"), "retrieval.exclude_watched"),
    (lambda r: r["arms"][1].update(drop_source="embedding"), "arms[1].drop_source"),
    (lambda r: r["arms"][2].update(sources=["popular", "twotower"]), "arms[2].sources[1]"),
    (lambda r: r["arms"][2].update(sources=["popular", "popular"]), "arms[2].sources[1]"),
    (lambda r: r["arms"][2].update(sources="popular"), "arms[2].sources"),
    (lambda r: r["arms"][2].update(drop_source="topic"), "arms[2]"),
    (lambda r: r["arms"][3].update(sources=["topic"]), "arms[3]"),
    (lambda r: r.update(kind="polarisation"), "retrieval"),
    (lambda r: r.pop("retrieval"), "arms[1].drop_source"),
])
def test_every_bad_retrieval_key_is_named(change, key):
    raw = sources_experiment()
    change(raw)
    with pytest.raises(ConfigError, match="^" + re.escape(key) + ":"):
        experiment_from_dict(raw)


def test_arms_resolve_their_sources_and_share_one_training():
    cfg = experiment_from_dict(sources_experiment()).config
    kept = {arm.name: arm_sources(cfg, arm) for arm in cfg.arms}
    assert kept == {"all": ("cowatch", "topic", "popular"), "without_topic": ("cowatch", "popular"),
                    "popular_only": ("popular",), "logging_policy": None,
                    "all_retrained": ("cowatch", "topic", "popular")}
    # Arms differing only by candidates train once; the A/A arm (another seed) and the fixed
    # policy train on their own.
    assert training_groups(cfg.arms) == [("all", "without_topic", "popular_only"),
                                         ("logging_policy",), ("all_retrained",)]
    # Without [retrieval] every arm ranks the world's candidates.
    plain = experiment_from_dict(tiny_experiment()).config
    assert all(arm_sources(plain, arm) is None for arm in plain.arms)


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("sources")
    results = run_experiment(experiment_from_dict(sources_experiment()), out, log=lambda m: None)
    return out, results


def test_a_drop_one_arm_never_shows_what_only_that_source_found(ran):
    out, results = ran
    experiment = experiment_from_dict(sources_experiment())
    setup = load(experiment, out, results["logging"]["dates"], log=lambda m: None)
    full, dropped = setup.pools["all"], setup.pools["without_topic"]
    assert full.shape == dropped.shape == (120, 20)
    assert setup.pools["all_retrained"] is full  # the same sources share one candidate array
    # Refit the same pool (it is deterministic) to see which source found what.
    every = sources.logs.read_days(out / "logs", results["logging"]["dates"])
    rt = experiment.config.retrieval
    pool = sources.fit_pool(every, setup.world, rt.pool_size, rt.shares, rt.popular,
                            rt.exclude_watched)
    only_topic, differ = 0, 0
    for r, (user, query) in enumerate(zip(setup.traffic.user.tolist(),
                                          setup.traffic.query.tolist(), strict=True)):
        found = pool.retrieve_each(Query(str(user), str(query)))
        own = {n: {int(pool.sources[n].item_ids[c]) for c in codes.tolist()}
               for n, (codes, _) in found.items()}
        topic_only = own["topic"] - own["cowatch"] - own["popular"]
        shown_full = set(full[r].tolist())
        only_topic += len(topic_only & shown_full)
        assert not topic_only & set(dropped[r].tolist())
        assert query not in shown_full and len(shown_full) == 20
        differ += shown_full != set(dropped[r].tolist())
    assert only_topic > 0 and differ > 0  # the arms really get different candidates
    # Popular alone: the same list for every request but the query (and the user's watched).
    popular = setup.pools["popular_only"]
    assert len(np.unique(popular[:, :5], axis=0)) < len(popular)


def test_pool_arms_serve_identical_requests_with_common_random_numbers(ran):
    out, results = ran
    experiment = experiment_from_dict(sources_experiment())
    setup = load(experiment, out, results["logging"]["dates"], log=lambda m: None)
    (full, _), (dropped, _) = setup.arm_traffic("all"), setup.arm_traffic("without_topic")
    for field in ("request_id", "user", "device", "query"):
        assert np.array_equal(getattr(full, field), getattr(dropped, field))
    # The same video in the same request draws the same noise in both arms, wherever it sits.
    hits = 0
    for r in range(len(full.user)):
        common, i, j = np.intersect1d(full.candidates[r], dropped.candidates[r],
                                      return_indices=True)
        hits += len(common)
        for name in NOISE_FIELDS:
            assert np.array_equal(full.noise[name][r, i], dropped.noise[name][r, j])
    assert hits > 0
    # ...and different videos draw differently.
    assert not np.array_equal(full.noise["click"][:, 0], full.noise["click"][:, 1])
    # An arm on the world's candidates shows them, with the same per-video draws.
    world_traffic, _ = setup.arm_traffic("logging_policy")
    assert np.array_equal(world_traffic.candidates, setup.traffic.candidates)
    hits = 0
    for r in range(len(full.user)):
        common, i, j = np.intersect1d(world_traffic.candidates[r], full.candidates[r],
                                      return_indices=True)
        hits += len(common)
        assert np.array_equal(world_traffic.noise["exam"][r, i], full.noise["exam"][r, j])
    assert hits > 0


def test_the_report_judges_every_arm_against_the_catalogue(ran):
    out, results = ran
    assert set(results["retrieval"]["arms"]) == {"all", "without_topic", "popular_only",
                                                 "all_retrained"}
    for name, arm in results["arms"].items():
        judged = arm["catalogue"]
        assert 0 <= judged["top_recall"] <= judged["pool_recall"] <= 1, name
        assert 0 < judged["ndcg"] <= 1
        if name != "all":
            assert "catalogue_ndcg_lift" in arm and len(arm["catalogue_ndcg_lift"]
                                                        ["per_replicate"]) == 2
    # Arms sharing the control's training report its training time, not a training of their own.
    assert [r["train_seconds"] for r in results["arms"]["without_topic"]["replicates"]] == \
        [r["train_seconds"] for r in results["arms"]["all"]["replicates"]]
    table = (out / "table.md").read_text()
    assert "## Against the catalogue's true utility" in table
    assert "| popular_only | popular |" in table and "world's candidates" in table
    assert json.loads((out / "retrieval" / "pool.json").read_text())["pool"]["max_candidates"] == 20


def test_candidates_written_for_other_arms_are_refused(ran, tmp_path):
    out, results = ran
    changed = sources_experiment()
    changed["arms"][1]["drop_source"] = "cowatch"
    experiment = experiment_from_dict(copy.deepcopy(changed))
    with pytest.raises(ConfigError, match="other arms, sources or requests"):
        sources.read_candidates(experiment.config, out, 120)
    with pytest.raises(ConfigError, match="unreadable candidates"):
        sources.read_candidates(experiment.config, tmp_path, 120)


def test_the_ready_config_and_the_cli_refusal(tmp_path):
    from typer.testing import CliRunner

    from tests.sim.test_experiment import _cli
    from watchnext.sim import commands

    path = commands.bundled("sources", "experiment_")
    assert path.name == "experiment_sources.toml"
    cfg = experiment_from_dict(tomllib.loads(path.read_text()), path.parent).config
    assert cfg.retrieval.pool_size == 100 and cfg.control == "all_sources"
    bad = tmp_path / "experiment_bad.toml"
    world, ranker = path.parent / "sim_world.toml", path.parent / "sim_ranker.toml"
    bad.write_text(f'name = "bad"\nkind = "arms"\nworld = "{world}"\nranker = "{ranker}"\n'
                   '[retrieval]\npool_size = 50\n[[arms]]\nname = "a"\ndrop_source = "nearest"\n')
    result = CliRunner().invoke(_cli(), ["experiment", str(bad), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "arms[0].drop_source" in result.output
