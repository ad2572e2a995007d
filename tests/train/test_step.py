"""The one training step: loss normalisation over parts, and the settings that change a step
(precision, compile, device) taking effect in every way of training."""

from __future__ import annotations

import sys

import pyarrow.parquet as pq
import pytest
import torch

from tests.conftest import make_impressions, small_config_dict
from tests.streamdata import stream_config, write_days
from watchnext.api import Ranker
from watchnext.config import ConfigError, config_from_dict
from watchnext.data.encoder import FeatureEncoder
from watchnext.model.ranker import MultitaskRanker
from watchnext.train import step as step_module
from watchnext.train.distributed import Distributed, resolve_device
from watchnext.train.step import TrainStep, check_step_settings


def _no_dropout(config):
    return config.replace(model={"gate_dropout": 0.0}, bias={"position_dropout": 0.0})


def _step_on(config, table, parts):
    encoder = FeatureEncoder(config).fit(table)
    batch = encoder.transform(table)
    torch.manual_seed(0)
    model = MultitaskRanker(config, encoder)
    shares = TrainStep(config, model, Distributed())([batch.select(p) for p in parts],
                                                     list(range(len(parts))))
    return model.state_dict(), shares


@pytest.mark.parametrize("method", ["shallow_tower", "adversarial"])
def test_a_batch_in_uneven_parts_steps_like_the_whole_batch(config, method):
    """The loss is the global mean: parts weigh by their label counts, absent labels included."""
    table = make_impressions(300)
    likes = table["is_like"].to_pylist()
    likes[:150] = [None] * 150  # the first part has far fewer like labels than the second
    table = table.set_column(table.column_names.index("is_like"), "is_like",
                             __import__("pyarrow").array(likes))
    config = _no_dropout(config).replace(bias={"method": method, "device": ""})
    whole, whole_shares = _step_on(config, table, [torch.arange(300)])
    split, split_shares = _step_on(config, table, [torch.arange(200), torch.arange(200, 300)])
    for name in whole:
        torch.testing.assert_close(whole[name], split[name], rtol=1e-5, atol=1e-6, msg=name)
    torch.testing.assert_close(whole_shares, split_shares)


def _fit_every_way(config, tmp_path):
    """The trained weights of fit, fit_sequential and fit_stream (one process)."""
    write_days(tmp_path / "data", days=1, files_per_day=1, rows_per_file=128)
    table = pq.read_table(tmp_path / "data" / "day=2024-03-01" / "part-0.parquet")
    return {
        "fit": Ranker(config).fit(table).model.state_dict(),
        "fit_sequential": Ranker(config).fit_sequential([("d", table)], tmp_path / "seq")
        .model.state_dict(),
        "fit_stream": Ranker(config).fit_stream(tmp_path / "data", tmp_path / "stream")
        .model.state_dict(),
    }


def _differs(a, b) -> bool:
    return any(not torch.equal(a[k], b[k]) for k in a)


def test_bf16_takes_effect_in_every_mode(tmp_path, monkeypatch):
    config = stream_config(batch_size=32).replace(train={"max_epochs": 1})
    fp32 = _fit_every_way(config, tmp_path / "fp32")
    entered = []
    real = step_module.autocast

    def recording(precision, device):
        entered.append(precision)
        return real(precision, device)

    monkeypatch.setattr(step_module, "autocast", recording)
    bf16 = _fit_every_way(config.replace(train={"precision": "bf16"}), tmp_path / "bf16")
    assert set(entered) == {"bf16"} and len(entered) == 3 * 4  # 4 steps in each of 3 modes
    for mode in fp32:
        assert _differs(fp32[mode], bf16[mode]), mode


def test_compile_takes_effect_in_every_mode(tmp_path, monkeypatch):
    compiled = []

    def spy(module, *args, **kwargs):
        compiled.append(type(module).__name__)
        return module

    monkeypatch.setattr(torch, "compile", spy)
    config = stream_config(batch_size=32).replace(train={"max_epochs": 1})
    _fit_every_way(config, tmp_path / "plain")
    assert compiled == []
    _fit_every_way(config.replace(train={"compile": True}), tmp_path / "compiled")
    assert compiled == ["MultitaskRanker"] * 3


def test_compile_is_refused_with_several_processes():
    config = stream_config().replace(train={"compile": True})
    with pytest.raises(ConfigError, match="train.compile: not supported with several processes"):
        check_step_settings(config, Distributed(rank=0, world=2))
    check_step_settings(config, Distributed())


@pytest.mark.slow
def test_compiled_training_matches_eager_training(config, impressions):
    eager = Ranker(_no_dropout(config)).fit(impressions).model.state_dict()
    compiled = Ranker(_no_dropout(config).replace(train={"compile": True})).fit(impressions)
    for name, value in compiled.model.state_dict().items():
        torch.testing.assert_close(value, eager[name], rtol=1e-3, atol=1e-4, msg=name)


def test_device_setting_is_validated(config):
    with pytest.raises(ConfigError, match="train.device: 'tpu' is not one of auto, cpu, cuda"):
        config.replace(train={"device": "tpu"})
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_a_clear_error(config, impressions):
    with pytest.raises(ConfigError, match="train.device: 'cuda', but torch sees no CUDA device"):
        Ranker(config.replace(train={"device": "cuda"})).fit(impressions)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_training_on_cuda_matches_the_cpu(config, impressions, tmp_path):
    config = _no_dropout(config)
    cpu = Ranker(config.replace(train={"device": "cpu"})).fit(impressions)
    gpu = Ranker(config.replace(train={"device": "cuda"})).fit(impressions)
    assert gpu.metrics["device"].startswith("cuda")
    for name, value in gpu.model.state_dict().items():
        assert value.device.type == "cpu"  # held on the CPU for prediction after training
        torch.testing.assert_close(value, cpu.model.state_dict()[name], rtol=1e-3, atol=1e-4)
    sequential = Ranker(config.replace(train={"device": "cuda"})).fit_sequential(
        [("d", impressions)], tmp_path / "run", checkpoint_every=3)
    resumed = Ranker.load(tmp_path / "run")
    torch.testing.assert_close(resumed.predict(impressions), sequential.predict(impressions))



def test_sharded_tables_without_torchrec_name_the_extra(monkeypatch):
    raw = small_config_dict()
    raw["train"]["embeddings"] = "sharded"
    for feature in raw["features"]:
        if feature["kind"] != "numeric":
            feature["embedding_dim"] = 4
    config = config_from_dict(raw)
    encoder = FeatureEncoder(config).fit(make_impressions())
    model = MultitaskRanker(config, encoder, id_tables=False)
    monkeypatch.setitem(sys.modules, "watchnext.train.sharded", None)  # as if not installed
    with pytest.raises(ConfigError, match="needs TorchRec: install the `sharded` extra"):
        TrainStep(config, model, Distributed(), encoder)
