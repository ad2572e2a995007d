import copy

import pytest

from tests.conftest import small_config_dict
from watchnext.config import ConfigError, config_from_dict, load_config
from watchnext.workflows import bundled_config


@pytest.mark.parametrize("name", ["kuairand_v1", "open_bandit"])
def test_bundled_configs_load(name):
    cfg = load_config(bundled_config(name))
    assert cfg.tasks and cfg.features


def test_kuairand_config_has_paper_task_groups():
    cfg = load_config(bundled_config("kuairand_v1"))
    groups = [t.group for t in cfg.tasks]
    assert groups.count("engagement") == 3 and groups.count("satisfaction") == 4


def _broken(mutate):
    raw = copy.deepcopy(small_config_dict())
    mutate(raw)
    return raw


@pytest.mark.parametrize("mutate, key", [
    (lambda r: r["model"].update(num_expert=4), "model.num_expert"),
    (lambda r: r["model"].update(num_experts="four"), "model.num_experts"),
    (lambda r: r["model"].update(gate_dropout=1.5), "model.gate_dropout"),
    (lambda r: r["model"].update(kind="moe"), "model.kind"),
    (lambda r: r["tasks"][1].update(group="fun"), "tasks[1].group"),
    (lambda r: r["tasks"][0].pop("label"), "tasks[0].label"),
    (lambda r: r["features"][2].update(kind="text"), "features[2].kind"),
    (lambda r: r["features"][0].update(transform="log1p"), "features[0].transform"),
    (lambda r: r["train"].update(batch_size=0), "train.batch_size"),
    (lambda r: r["bias"].update(missing="dropout", position_dropout=-0.1), "bias.position_dropout"),
    (lambda r: r["tasks"].append(dict(r["tasks"][0])), "tasks[3].name"),
    (lambda r: r.update(tasks=[]), "tasks"),
])
def test_invalid_config_names_the_key(mutate, key):
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        config_from_dict(_broken(mutate))


def test_bad_toml_names_the_file(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text("[model\nkind = 'mmoe'")
    with pytest.raises(ConfigError, match="run.toml"):
        load_config(path)


def test_toml_error_names_file_and_key(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('[[features]]\nname = "a"\nkind = "categorical"\n'
                    '[[tasks]]\nname = "c"\ntype = "binary"\nlabel = "c"\ngroup = "engagement"\n'
                    '[train]\nlearning_rate = "fast"\n')
    with pytest.raises(ConfigError, match=r"run.toml: train.learning_rate"):
        load_config(path)


def test_relative_paths_resolve_against_config_folder(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('[data]\ntrain = "logs/train.parquet"\n[[features]]\nname = "a"\n'
                    'kind = "categorical"\n[[tasks]]\nname = "c"\ntype = "binary"\nlabel = "c"\n'
                    'group = "engagement"\n')
    assert load_config(path).data.train == (str(tmp_path / "logs" / "train.parquet"),)


def test_replace_merges_and_validates(config):
    changed = config.replace(model={"num_experts": 8})
    assert changed.model.num_experts == 8 and changed.model.expert_units == config.model.expert_units
    with pytest.raises(ConfigError, match="model.num_experts"):
        config.replace(model={"num_experts": 1})


def test_round_trip_through_dict(config):
    assert config_from_dict(config.to_dict()) == config


@pytest.mark.parametrize("bias, key, message", [
    ({"missing": "average"}, "bias.missing", "not one of exposure_mean, dropout"),
    ({"missing": "dropout"}, "bias.position_dropout", "needs a share > 0"),
    ({"position_dropout": 0.1}, "bias.position_dropout", "only used with bias.missing = 'dropout'"),
    ({"missing": "dropout", "position_dropout": 1.0}, "bias.position_dropout", r"\[0, 1\)"),
    ({"smoothness": -1.0}, "bias.smoothness", ">= 0"),
    ({"smoothness": "high"}, "bias.smoothness", "expected float"),
    ({"learning_rate_scale": 0.0}, "bias.learning_rate_scale", "> 0"),
    ({"smooth_from": 0}, "bias.smooth_from", "> 0"),
])
def test_shallow_tower_settings_are_validated(bias, key, message):
    raw = _broken(lambda r: r["bias"].update(bias))
    with pytest.raises(ConfigError, match=f"{key}.*{message}"):
        config_from_dict(raw)


def test_paper_position_dropout_is_a_setting():
    raw = _broken(lambda r: r["bias"].update(missing="dropout", position_dropout=0.1))
    bias = config_from_dict(raw).bias
    assert (bias.missing, bias.position_dropout) == ("dropout", 0.1)
    assert config_from_dict(small_config_dict()).bias.missing == "exposure_mean"


def test_early_stopping_criterion_is_validated():
    raw = _broken(lambda r: r["train"].update(early_stopping="click"))
    with pytest.raises(ConfigError, match="train.early_stopping.*not one of total, engagement"):
        config_from_dict(raw)
