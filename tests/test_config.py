import copy
import datetime
import json
import re
from typing import Literal, get_origin, get_type_hints

import pytest

from tests.conftest import small_config_dict
from watchnext.config import (
    BiasSpec,
    ConfigError,
    FeatureSpec,
    ModelSpec,
    TaskSpec,
    TrainSpec,
    config_from_dict,
    day_ranges,
    load_config,
)
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
    (lambda r: r["model"].update(kind="ple", shared_experts=0), "model.shared_experts"),
    (lambda r: r["model"].update(kind="ple", task_experts=-1), "model.task_experts"),
    (lambda r: r["model"].update(kind="ple", ple_layers=0), "model.ple_layers"),
    (lambda r: r["model"].update(kind="ple", ple_layers=1.5), "model.ple_layers"),
    (lambda r: r["model"].update(kind="shared_bottom", bottom_units=[]), "model.bottom_units"),
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


@pytest.mark.parametrize("mutate, key, message", [
    (lambda r: r["train"].update(precision="fp16"), "train.precision", "one of fp32, bf16"),
    (lambda r: r["tasks"][0].update(positive_map="square"), "tasks[0].positive_map", "one of exp"),
    (lambda r: r["bias"].update(method="ipw"), "bias.method", "one of shallow_tower, adversarial"),
    (lambda r: r["model"].update(gate_input="raw"), "model.gate_input", "one of bottom, input"),
    (lambda r: r["tasks"][0].update(type=1), "tasks[0].type", "expected str"),
])
def test_closed_sets_name_the_key_and_the_allowed_values(mutate, key, message):
    with pytest.raises(ConfigError, match=re.escape(key) + ".*" + message):
        config_from_dict(_broken(mutate))


def test_literal_fields_are_typed_as_literals():
    """Every closed set is a Literal, so the allowed values live in the type (and only there)."""
    hints = {**get_type_hints(FeatureSpec), **get_type_hints(TaskSpec), **get_type_hints(BiasSpec),
             **get_type_hints(ModelSpec), **get_type_hints(TrainSpec)}
    for name in ("kind", "transform", "type", "group", "positive_map", "method", "gate_input",
                 "precision"):
        assert get_origin(hints[name]) is Literal, name


CROSS = {"name": "user_video", "kind": "categorical", "cross": ["user_id", "video_id"],
         "hash_buckets": 64}


@pytest.mark.parametrize("mutate, key", [
    (lambda r: r["features"].append({**CROSS, "kind": "numeric", "hash_buckets": 0}),
     "features[5].cross"),
    (lambda r: r["features"].append({**CROSS, "cross": ["user_id"]}), "features[5].cross"),
    (lambda r: r["features"].append({**CROSS, "cross": ["user_id", "user_id"]}), "features[5].cross"),
    (lambda r: r["features"].append({**CROSS, "column": "user_id"}), "features[5].cross"),
    (lambda r: r["features"].append({**CROSS, "cross": "user_id"}), "features[5].cross"),
    (lambda r: r["features"][3].update(expression="tags + 1"), "features[3].expression"),
    (lambda r: r["features"][2].update(expression="hour % 6", column="hour"), "features[2].expression"),
    (lambda r: r["features"][0].update(cross=[1.5, 2]), "features[0].cross"),
])
def test_bad_crosses_and_expressions_name_the_key(mutate, key):
    with pytest.raises(ConfigError, match=re.escape(key)):
        config_from_dict(_broken(mutate))


def test_categorical_expressions_and_crosses_are_accepted():
    raw = _broken(lambda r: r["features"].extend([
        CROSS, {"name": "hour_part", "kind": "categorical", "expression": "hour % 6"}]))
    cfg = config_from_dict(raw)
    assert cfg.features[-2].cross == ("user_id", "video_id")
    assert cfg.features[-2].input_columns == ("user_id", "video_id")
    assert cfg.features[-1].expression == "hour % 6"


HISTORY = {"entity": "user_id", "labels": ["is_click", "watch"], "windows": ["all", 3],
           "counted": ["is_click"]}


def test_a_history_block_declares_its_features_after_the_explicit_ones():
    raw = _broken(lambda r: r.update(history=[HISTORY], history_labels={"watch": "log1p(watch_ms)"}))
    cfg = config_from_dict(raw)
    names = [f.name for f in cfg.features]
    assert names[:5] == [f["name"] for f in small_config_dict()["features"]]
    assert names[5:] == [
        "user_id_hist_n", "user_id_hist_is_click", "user_id_hist_watch", "user_id_hist_first",
        "user_id_hist_last", "user_id_hist_is_click_pos", "user_id_hist_is_click_neg",
        "user_id_last3d_n", "user_id_last3d_is_click", "user_id_last3d_watch",
        "user_id_last3d_is_click_pos", "user_id_last3d_is_click_neg"]
    assert all(f.kind == "numeric" and f.transform == "standardize" and f.column == f.name
               for f in cfg.features[5:])
    assert cfg.history[0].windows == ("all", "3")


def test_an_explicit_feature_wins_over_the_block_and_the_saved_config_loads_back(tmp_path):
    explicit = {"name": "user_id_hist_n", "kind": "numeric", "transform": "log1p"}
    raw = _broken(lambda r: r.update(history=[HISTORY], history_labels={"watch": "watch_ms"}))
    raw["features"].append(explicit)
    cfg = config_from_dict(raw)
    assert [f.name for f in cfg.features].count("user_id_hist_n") == 1
    assert cfg.features[5].transform == "log1p"
    cfg.save(tmp_path / "config.json")
    saved = json.loads((tmp_path / "config.json").read_text())
    assert len(saved["features"]) == len(cfg.features)  # the saved config is explicit
    assert load_config(tmp_path / "config.json") == cfg == config_from_dict(cfg.to_dict())


@pytest.mark.parametrize("block, key", [
    ({"labels": ["is_click"]}, "history[0].entity"),
    ({**HISTORY, "labels": []}, "history[0].labels"),
    ({**HISTORY, "windows": ["week"]}, r"history[0].windows[0]"),
    ({**HISTORY, "windows": [0]}, r"history[0].windows[0]"),
    ({**HISTORY, "windows": []}, "history[0].windows"),
    ({**HISTORY, "windows": [3, 3]}, "history[0].windows"),
    ({**HISTORY, "name": "recent"}, "history[0].name"),
    ({**HISTORY, "counted": ["is_like"]}, "history[0].counted[0]"),
    ({**HISTORY, "smoothing": -1}, "history[0].smoothing"),
    ({**HISTORY, "transform": "zscore"}, "history[0].transform"),
    ({**HISTORY, "window": 3}, "history[0].window"),
])
def test_bad_history_blocks_name_the_key(block, key):
    raw = _broken(lambda r: r.update(history=[block]))
    with pytest.raises(ConfigError, match=re.escape(key)):
        config_from_dict(raw)


def test_history_needs_a_day_column_and_distinct_names():
    no_day = _broken(lambda r: r.update(history=[HISTORY]))
    no_day["data"]["day_column"] = ""
    with pytest.raises(ConfigError, match=r"history\[0\]: .*data.day_column"):
        config_from_dict(no_day)
    twice = _broken(lambda r: r.update(history=[HISTORY, {**HISTORY, "windows": [3]}]))
    with pytest.raises(ConfigError, match=r"history\[0\]: history\[1\] declares the same"):
        config_from_dict(twice)
    with pytest.raises(ConfigError, match=r"history_labels.watch: expected str"):
        config_from_dict(_broken(lambda r: r.update(history_labels={"watch": 3})))


@pytest.mark.parametrize("data, key", [
    ({"dataset": "kuairand-sample-v1", "train": "t.parquet"}, "data.train"),
    ({"dataset": "kuairand-sample-v1", "path": "logs"}, "data.path"),
    ({"path": "logs", "valid": "v.parquet"}, "data.valid"),
    ({"train": "t.parquet", "valid_days": "2024-03-02"}, "data.valid_days"),
    ({"path": "logs", "day_column": "", "train_days": "1..2"}, "data.train_days"),
    ({"path": "logs", "train_days": "2024-13-01"}, "data.train_days[0]"),
    ({"path": "logs", "train_days": "2024-03-05..2024-03-01"}, "data.train_days[0]"),
    ({"path": "logs", "train_days": ["1", "2024-03-01"]}, "data.train_days"),
    ({"path": "logs", "train_days": "1..3", "valid_days": "2024-03-04"}, "data.valid_days"),
    ({"path": "logs", "train_days": "1..3", "test_days": [3]}, "data.test_days"),
    ({"path": "logs", "valid_fraction": 1.0}, "data.valid_fraction"),
    ({"path": "logs", "valid_fraction": 0.1, "valid_days": "3"}, "data.valid_fraction"),
    ({"path": "logs", "valid_fraction": 0.1, "request_column": ""}, "data.valid_fraction"),
    ({"paths": "logs"}, "data.paths"),
])
def test_bad_data_sections_name_the_key(data, key):
    raw = _broken(lambda r: r["data"].update(data))
    with pytest.raises(ConfigError, match=re.escape(key) + "[:]"):
        config_from_dict(raw)


def test_data_keys_accept_days_by_value_range_or_list():
    raw = _broken(lambda r: r["data"].update(
        path="logs", train_days=["2024-03-01..2024-03-05", "2024-03-07"], valid_days="2024-03-06",
        test_days=["2024-03-08"]))
    d = config_from_dict(raw).data
    assert d.source == "path" and d.train_days == ("2024-03-01..2024-03-05", "2024-03-07")
    assert day_ranges(d.valid_days, "data.valid_days") == [(datetime.date(2024, 3, 6),) * 2]
    numbers = config_from_dict(_broken(lambda r: r["data"].update(path="logs", train_days="1..2",
                                                                   valid_fraction=0.2)))
    assert day_ranges(numbers.data.train_days, "x") == [(1, 2)]


def test_a_config_with_both_sources_fails_in_the_cli(tmp_path):
    from typer.testing import CliRunner

    from watchnext.cli import app

    path = tmp_path / "run.json"
    raw = _broken(lambda r: r["data"].update(dataset="kuairand-sample-v1", train="t.parquet"))
    path.write_text(json.dumps(raw))
    result = CliRunner().invoke(app, ["train", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "data.train" in result.output


def test_ple_keys_load_and_allow_experts_on_the_input_layer():
    raw = small_config_dict(kind="ple", ple_layers=3, task_experts=2, shared_experts=4,
                            bottom_units=[])
    m = config_from_dict(raw).model
    assert (m.kind, m.ple_layers, m.task_experts, m.shared_experts) == ("ple", 3, 2, 4)


@pytest.mark.parametrize("bias, key, message", [
    ({"missing": "average"}, "bias.missing", "one of exposure_mean, dropout"),
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
    with pytest.raises(ConfigError, match="train.early_stopping.*one of total, engagement"):
        config_from_dict(raw)


@pytest.mark.parametrize("train, features, message", [
    ({}, {"hour": 4}, r"features\[3\]\.embedding_dim: 3 is not a multiple of 4"),
    ({"sparse_embeddings": True}, {"tags": 4, "hour": 4}, r"train\.sparse_embeddings: not with"),
    ({"precision": "bf16"}, {"tags": 4, "hour": 4}, r"train\.precision: .* fp32 only"),
    ({"weight_decay": 0.01}, {"tags": 4, "hour": 4}, r"train\.weight_decay, .*fused row-wise"),
    ({"weight_averaging": 0.99}, {"tags": 4, "hour": 4}, r"train\.weight_averaging: not with"),
])
def test_sharded_embeddings_refuse_what_the_fused_tables_cannot_do(train, features, message):
    raw = small_config_dict()
    raw["train"].update({"embeddings": "sharded", **train})
    for feature in raw["features"]:
        if feature["name"] in features:
            feature["embedding_dim"] = features[feature["name"]]
    with pytest.raises(ConfigError, match=message):
        config_from_dict(raw)
    raw["train"]["embeddings"] = "replicated"
    with pytest.raises(ConfigError, match=r"train\.embeddings"):
        config_from_dict(raw)
