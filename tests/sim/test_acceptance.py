"""End to end in the default world (slow): the shallow tower recovers the true examination curves.

A reduced Table 2 (two arms, fewer logs): the learned bias must follow every device's true
examination curve, and the debiased model must order candidates by true click appeal better than
the model trained without debiasing.
"""

from __future__ import annotations

import tomllib

import pytest

from tests.sim.conftest import CONFIGS
from watchnext.sim.experiment import run_experiment
from watchnext.sim.experiment_config import experiment_from_dict


@pytest.mark.slow
def test_shallow_tower_recovers_examination_and_debiases(tmp_path):
    raw = tomllib.loads((CONFIGS / "experiment_table2.toml").read_text())
    raw["arms"] = [a for a in raw["arms"] if a["name"] in ("no_debiasing", "shallow_tower")]
    raw["replicates"] = 1  # one training per arm: the ready config's replicates take ~30 min
    raw["logging"].update(days=4, requests_per_day=20000)
    raw["evaluation"]["requests"] = 5000
    results = run_experiment(experiment_from_dict(raw, CONFIGS), tmp_path, log=lambda _m: None)
    shallow, plain = results["arms"]["shallow_tower"], results["arms"]["no_debiasing"]
    bias = shallow["ground_truth"]["bias"]
    assert set(bias) == {"phone", "desktop", "tablet", "tv"}
    for device, check in bias.items():
        assert check["spearman"] >= 0.9, (device, check)
    assert shallow["ground_truth"]["ndcg"]["click"] > plain["ground_truth"]["ndcg"]["click"] + 0.02
