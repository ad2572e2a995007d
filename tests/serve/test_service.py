import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from watchnext.api import Ranker
from watchnext.serve import ServingModel
from watchnext.serve.model_dir import ModelDirError, build_model_dir, load_ranker, read_manifest
from watchnext.workflows import build_service

from .conftest import tiny_config

WHEN = dt.datetime(2022, 4, 18, 1, tzinfo=dt.UTC)


def known_pair(serving):
    example = serving.store.examples["users"][0]
    return example["user_id"], example["last_video"]


def test_watch_next_ranks_pooled_candidates(serving):
    user, video = known_pair(serving)
    ranking = serving.watch_next(user, video, None, k=10, when=WHEN)
    assert ranking.known_user and ranking.known_video
    assert len(ranking.items) == 10 and ranking.candidates > 10
    scores = [i.score for i in ranking.items]
    assert scores == sorted(scores, reverse=True)
    assert video not in [i.video_id for i in ranking.items]
    for item in ranking.items:
        assert set(item.predictions) == set(serving.task_names)
        assert item.source in item.sources and item.source in serving.pool.sources
    assert ranking.model_version == "v1"


def test_top_k_is_the_best_of_all_candidates(serving):
    user, video = known_pair(serving)
    full = serving.watch_next(user, video, None, k=1000, when=WHEN)
    top = serving.watch_next(user, video, None, k=5, when=WHEN)
    assert [i.video_id for i in top.items] == [i.video_id for i in full.items[:5]]
    assert len(full.items) == full.candidates


def test_exclude(serving):
    user, video = known_pair(serving)
    first = serving.watch_next(user, video, None, k=3, when=WHEN).items[0].video_id
    again = serving.watch_next(user, video, None, k=3, exclude=[first], when=WHEN)
    assert first not in [i.video_id for i in again.items]


def test_cold_start_user_and_video(serving):
    ranking = serving.watch_next("nobody-knows-me", "nor-this-video", "smart-fridge", k=7,
                                 when=WHEN)
    assert not ranking.known_user and not ranking.known_video
    assert len(ranking.items) == 7 and {i.source for i in ranking.items} == {"popular"}
    anonymous = serving.watch_next(None, None, None, k=3)
    assert len(anonymous.items) == 3


def test_score_caller_candidates_matches_watch_next_scores(serving):
    user, video = known_pair(serving)
    ranked = serving.watch_next(user, video, None, k=20, when=WHEN)
    ids = [i.video_id for i in ranked.items][::-1] + ["brand-new", ranked.items[0].video_id]
    scored = serving.score(user, video, None, ids, when=WHEN)
    assert len(scored.items) == 21  # the duplicate is scored once
    by_id = {i.video_id: i.score for i in scored.items}
    for item in ranked.items:
        assert by_id[item.video_id] == pytest.approx(item.score, rel=1e-6)
    assert {i.source for i in scored.items} == {"caller"}
    assert not next(i for i in scored.items if i.video_id == "brand-new").known_video
    assert len(serving.score(user, video, None, ids, k=4, when=WHEN).items) == 4


def test_context_changes_scores_position_does_not_exist(serving):
    user, video = known_pair(serving)
    ids = serving.store.item_ids[:30]
    night = serving.score(user, video, None, ids, when=dt.datetime(2022, 4, 18, 16, tzinfo=dt.UTC))
    noon = serving.score(user, video, None, ids, when=dt.datetime(2022, 4, 18, 4, tzinfo=dt.UTC))
    a = {i.video_id: i.score for i in night.items}
    b = {i.video_id: i.score for i in noon.items}
    assert any(abs(a[v] - b[v]) > 1e-9 for v in ids)  # hour is a model input


def test_details(serving):
    user, video = known_pair(serving)
    item = serving.watch_next(user, video, None, k=1, details=True).items[0]
    assert item.details["video_id"] == item.video_id
    assert item.details == serving.store.item_details(item.video_id) and len(item.details) > 1


def test_model_dir_checksums_refuse_corruption(tmp_path, model_dir):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    vectors = broken / "retrieval" / "embedding" / "item_vectors.npy"
    vectors.write_bytes(vectors.read_bytes()[:-8])
    with pytest.raises(ModelDirError, match="checksum mismatch"):
        ServingModel.load(broken)
    (broken / "service.json").unlink()
    with pytest.raises(ModelDirError, match="service.json missing"):
        ServingModel.load(broken)
    with pytest.raises(ModelDirError, match="no such model directory"):
        read_manifest(tmp_path / "nothing")


def test_build_refuses_to_overwrite_and_is_atomic(tmp_path, model_dir, logs):
    with pytest.raises(ModelDirError, match="already exists"):
        build_service(tiny_config(), logs, model_dir)
    label = tiny_config().tasks[0].label
    with pytest.raises(Exception, match=label):
        build_service(tiny_config(), logs.drop([label]), tmp_path / "v9")
    assert not (tmp_path / "v9").exists()


def test_build_from_a_checkpoint_without_training(tmp_path, logs):
    """Serving builds from a trained checkpoint; training is the workflow's job, not serve's."""
    small = logs.slice(0, 1500)
    ranker = Ranker(tiny_config().replace(train={"max_epochs": 1})).fit(small)
    checkpoint = ranker.save(tmp_path / "ckpt")
    said: list[str] = []
    path = build_model_dir(checkpoint, small, tmp_path / "m", onnx=False, max_candidates=20,
                           log=said.append)
    assert "topic" not in small.column_names
    assert any(m.startswith("warning: the pool has no topic source") for m in said), said
    assert "twotower" in read_manifest(path)["retrieval"]["fit_seconds"]
    built = load_ranker(path).model.state_dict()
    assert all(torch.equal(v, built[k]) for k, v in ranker.model.state_dict().items())
    model = ServingModel.load(path)
    assert np.isfinite([i.score for i in model.watch_next(None, None, None, k=3).items]).all()
    with pytest.raises(ModelDirError, match="not a checkpoint"):
        build_model_dir(tmp_path / "nothing", small, tmp_path / "n", onnx=False)
    assert not (tmp_path / "n").exists()


def test_build_without_onnx_serves_with_torch(tmp_path, logs):
    small = logs.slice(0, 1500)
    path = build_service(tiny_config(), small, tmp_path / "t", onnx=False, max_candidates=50)
    assert read_manifest(path)["onnx"] == {"exported": False, "reason": "disabled"}
    model = ServingModel.load(path)
    assert model.backend.name == "torch"
    with pytest.raises(ModelDirError, match="no ONNX export"):
        ServingModel.load(path, backend="onnx")
    assert len(model.watch_next(None, None, None, k=3).items) == 3
    assert np.isfinite([i.score for i in model.watch_next(None, None, None, k=3).items]).all()


def test_build_works_without_a_user_table(tmp_path, logs, serving):
    """Columns the model reads but the logs cannot key are served as constants, not errors."""
    small = logs.slice(0, 1500)
    column = next(c for c, role in serving.store.roles.items() if role == "user"
                  and c != "user_id" and pa.types.is_string(small.schema.field(c).type))
    shuffled = small.set_column(small.schema.get_field_index(column), column,
                                pa.array(np.random.default_rng(0).choice(
                                    ["a", "b", "c"], small.num_rows)))
    path = build_service(tiny_config(), shuffled, tmp_path / "c", onnx=False, max_candidates=20)
    model = ServingModel.load(path)
    assert model.store.roles[column] == "constant"
    assert len(model.watch_next("x", "y", None, k=2).items) == 2


def test_serving_loads_a_model_without_importing_training(model_dir):
    """Serving sits on the model layer: loading and answering import no training code, no Ranker
    and no progress bars (a subprocess, so nothing else in the test session has imported them)."""
    code = (
        "import json, sys\n"
        "import watchnext.serve\n"
        "from watchnext.model.load import load_model\n"
        "from watchnext.serve import ModelRegistry, ServingModel, create_app\n"
        f"load_model({str(model_dir)!r})\n"
        f"model = ServingModel.load({str(model_dir)!r})\n"
        "model.watch_next(None, None, None, k=3)\n"
        f"create_app(ModelRegistry({str(model_dir.parent)!r}))\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith("
        "('watchnext.train', 'watchnext.api', 'watchnext.workflows', 'rich.progress')))))\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
