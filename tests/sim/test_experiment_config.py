"""Experiment configs: the ready ones load; a bad one fails with an error naming its key."""

from __future__ import annotations

import copy

import pytest

from tests.sim.conftest import CONFIGS, tiny_experiment
from watchnext.config import ConfigError
from watchnext.sim.experiment_config import experiment_from_dict, load_experiment, run_config

READY = sorted(CONFIGS.glob("experiment_*.toml"))


def test_there_is_a_ready_config_for_each_kind():
    kinds = {load_experiment(p).config.kind for p in READY}
    assert kinds == {"arms", "polarisation", "sweep", "feedback"}
    assert {p.stem for p in READY} >= {"experiment_table1", "experiment_table2",
                                       "experiment_gate_dropout", "experiment_weights",
                                       "experiment_feedback"}


@pytest.mark.parametrize("path", READY, ids=lambda p: p.stem)
def test_ready_configs_load_and_build_every_arm(path):
    experiment = load_experiment(path)
    for arm in experiment.config.arms:
        if arm.policy == "model":
            run_config(experiment.ranker, arm)
    assert experiment.world.seed == experiment.config.seed


def test_table2_arms_are_the_four_position_bias_methods():
    experiment = load_experiment(CONFIGS / "experiment_table2.toml")
    configs = {a.name: run_config(experiment.ranker, a) for a in experiment.config.arms}
    assert configs["no_debiasing"].bias.position == ""
    assert configs["shallow_tower"].bias.method == "shallow_tower" and configs["shallow_tower"].bias.device
    assert configs["adversarial"].bias.method == "adversarial"
    position_input = [f for f in configs["position_feature"].features if f.column == "position"]
    assert len(position_input) == 1 and configs["position_feature"].bias.position == ""


def test_table1_has_a_ple_arm_at_the_cost_of_mmoe_with_4_experts():
    experiment = load_experiment(CONFIGS / "experiment_table1.toml")
    arms = {a.name: a for a in experiment.config.arms}
    ple = run_config(experiment.ranker, arms["ple_1x"]).model
    assert (ple.kind, ple.ple_layers, ple.task_experts, ple.shared_experts) == ("ple", 2, 1, 2)
    assert arms["ple_1x"].cost == arms["mmoe_4_experts_1x"].cost == 1.0


def _set(path: str, value):
    def mutate(raw: dict) -> None:
        keys = path.replace("]", "").replace("[", ".").split(".")
        node = raw
        for key in keys[:-1]:
            node = node[int(key)] if key.isdigit() else node.setdefault(key, {})
        node[keys[-1]] = value
    return mutate


@pytest.mark.parametrize("mutate, key", [
    (_set("knd", "arms"), "knd"),
    (_set("kind", "bandit"), "kind"),
    (_set("logging.epsilon", 2.0), "logging.epsilon"),
    (_set("logging.policy", "oracle"), "logging.policy"),
    (_set("logging.days", 1), "logging.days"),
    (_set("evaluation.requests", "lots"), "evaluation.requests"),
    (_set("evaluation.control", "nobody"), "evaluation.control"),
    (_set("arms[1].polcy", "random"), "arms[1].polcy"),
    (_set("arms[1].name", "popularity"), "arms[1].name"),
    (_set("arms[0].model", {"kind": "mmoe"}), "arms[0].model"),
    (_set("arms[2].bias", {"method": "magic"}), "arms[2].bias.method"),
    (_set("arms[2].bias", {"position": "", "device": "", "method": "adversarial"}), "arms[2].bias.method"),
    (_set("arms[2].model", {"num_experts": 1}), "arms[2].model.num_experts"),
    (_set("arms[2].exponents", [1.0, 2.0]), "arms[2].exponents"),
    (_set("world", "no_such_world.toml"), "world"),
    (_set("sweep.arm", "nobody"), "sweep.arm"),
    (_set("feedback.rounds", 0), "feedback.rounds"),
    (_set("replicates", 0), "replicates"),
    (_set("arms[2].seed_offset", 1000), "arms[2].seed_offset"),
    (lambda r: r.update(kind="sweep", sweep={"grid": {"clik": [1.0]}}), "sweep.grid.clik"),
    (lambda r: r.update(kind="sweep", sweep={"grid": {"click": []}}), "sweep.grid.click"),
])
def test_bad_experiment_config_names_the_key(mutate, key):
    raw = copy.deepcopy(tiny_experiment())
    mutate(raw)
    with pytest.raises(ConfigError) as error:
        experiment_from_dict(raw)
    assert str(error.value).startswith(f"{key}:"), str(error.value)


def test_config_file_errors_name_the_file(tmp_path):
    path = tmp_path / "experiment_bad.toml"
    path.write_text('name = "x"\nkind = "arms"\n[[arms]]\nname = "a"\npolicy = "oracle"\n')
    with pytest.raises(ConfigError, match=r"experiment_bad.toml: arms\[0\].policy:"):
        load_experiment(path)
