"""The model layer's loader: a checkpoint becomes (config, encoder, model), and loading a model
changes nothing process-wide (torch's thread count, glibc's allocator)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from tests.conftest import make_impressions, small_config_dict
from watchnext.api import Ranker
from watchnext.artifacts.checkpoint import CheckpointError
from watchnext.config import config_from_dict
from watchnext.model.load import load_model

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A checkpoint whose config asks training for 2 threads and a retaining allocator."""
    impressions = make_impressions(600)
    cfg = config_from_dict(small_config_dict()).replace(
        train={"threads": 2, "retain_freed_memory": True, "max_epochs": 1})
    ranker = Ranker(cfg)
    ranker._build(impressions)  # weights as initialised: training would change the test process
    folder = tmp_path_factory.mktemp("load")
    pq.write_table(impressions, folder / "rows.parquet")
    return ranker, ranker.save(folder / "model"), folder / "rows.parquet"


def test_load_model_restores_config_encoder_and_weights(saved):
    ranker, path, _ = saved
    loaded = load_model(path)
    assert loaded.config == ranker.config and not loaded.model.training
    assert loaded.encoder.state_dict() == ranker.encoder.state_dict()
    weights = ranker.model.state_dict()
    assert all(torch.equal(v, weights[k]) for k, v in loaded.model.state_dict().items())
    assert loaded.path == path and "sha256" not in loaded.state


def test_weights_that_do_not_fit_the_config_are_a_checkpoint_error(saved, tmp_path):
    ranker, path, _ = saved
    wider = ranker.config.replace(model={"tower_units": [5]})
    (tmp_path / "bad").mkdir()
    for f in path.iterdir():
        (tmp_path / "bad" / f.name).write_bytes(f.read_bytes())
    state = json.loads((tmp_path / "bad" / "state.json").read_text())
    config_json = json.dumps(wider.to_dict(), indent=2).encode()
    (tmp_path / "bad" / "config.json").write_bytes(config_json)
    state["sha256"]["config.json"] = hashlib.sha256(config_json).hexdigest()
    (tmp_path / "bad" / "state.json").write_text(json.dumps(state))
    with pytest.raises(CheckpointError, match="weights do not fit the saved config"):
        load_model(tmp_path / "bad")


PROBE = textwrap.dedent("""
    import ctypes, ctypes.util, json, sys
    import torch
    torch.set_num_threads(3)
    from watchnext.api import Ranker
    ranker = Ranker.load(sys.argv[1])
    ranker.predict(sys.argv[2]); ranker.score(sys.argv[2]); ranker.evaluate(sys.argv[2])
    if sys.argv[3] == "control":  # what a training entry point does
        from watchnext.train.speed import apply_process_settings
        apply_process_settings(ranker.config.train)
    # glibc serves a 48 MiB block with mmap (far above the program break) unless told to keep
    # freed memory (M_MMAP_MAX = 0), when it comes from the heap, below the break
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.sbrk.restype, libc.sbrk.argtypes = ctypes.c_void_p, [ctypes.c_long]
    block = libc.malloc(48 << 20)
    from_heap = block < libc.sbrk(0)
    libc.free(ctypes.c_void_p(block))
    print(json.dumps({"threads": torch.get_num_threads(), "from_heap": bool(from_heap)}))
""")


def _probe(path: Path, rows: Path, mode: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", PROBE, str(path), str(rows), mode], env=env,
                         capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="probes glibc's allocator")
def test_load_and_predict_leave_threads_and_allocator_as_they_were(saved):
    _, path, rows = saved
    after_load = _probe(path, rows, "load")
    assert after_load == {"threads": 3, "from_heap": False}
    control = _probe(path, rows, "control")  # the probe sees the settings when they are made
    assert control["threads"] == 2 and control["from_heap"]


def test_a_loaded_ranker_saves_its_model_and_step_without_optimiser_state(saved, tmp_path):
    _, path, rows = saved
    loaded = Ranker.load(path)
    assert loaded.global_step == load_model(path).state["global_step"]
    again = loaded.save(tmp_path / "again")
    assert not (again / "optimizer.safetensors").exists()
    assert load_model(again).state == {"global_step": loaded.global_step}
    assert (Ranker.load(again).predict(rows) == loaded.predict(rows)).all()
