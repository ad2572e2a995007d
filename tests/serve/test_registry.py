import logging
import shutil
import threading

import pytest
from fastapi.testclient import TestClient

from watchnext.serve import ModelRegistry, create_app
from watchnext.serve.model_dir import ModelDirError
from watchnext.serve.registry import ReloadInProgress, VersionNotFound

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_versions_sort_naturally_and_newest_is_default(fresh_registry, model_dir):
    shutil.copytree(model_dir, fresh_registry / "v10")
    (fresh_registry / "notes").mkdir()  # not a model: ignored
    registry = ModelRegistry(fresh_registry)
    assert registry.versions() == ["v1", "v2", "v10"]
    assert registry.load().version == "v10"


def test_single_model_directory_is_its_own_registry(model_dir):
    registry = ModelRegistry(model_dir)
    assert registry.single and registry.versions() == ["v1"]
    assert registry.load().version == "v1"
    with pytest.raises(VersionNotFound):
        registry.reload("v2")


def test_reload_swaps_and_returns_previous(loaded_registry):
    new, previous = loaded_registry.reload("v2")
    assert (new.version, previous.version) == ("v2", "v1")
    assert loaded_registry.current is new and loaded_registry.reloads["success"] == 2


def test_broken_version_is_refused_and_old_keeps_serving(loaded_registry, fresh_registry):
    (fresh_registry / "v2" / "model.safetensors").write_bytes(b"not weights")
    before = loaded_registry.current
    with pytest.raises(ModelDirError, match="checksum mismatch"):
        loaded_registry.reload("v2")
    assert loaded_registry.current is before and loaded_registry.reloads["failure"] == 1
    with pytest.raises(VersionNotFound, match="invalid version"):
        loaded_registry.reload("../v1")
    with pytest.raises(VersionNotFound, match="not found"):
        loaded_registry.reload("v3")


def test_start_serves_the_newest_version_that_loads(fresh_registry, model_dir, caplog):
    shutil.copytree(model_dir, fresh_registry / "v3")
    (fresh_registry / "v3" / "model.safetensors").write_bytes(b"not weights")
    (fresh_registry / "v2" / "service.json").write_text("{")
    registry = ModelRegistry(fresh_registry)
    with caplog.at_level(logging.INFO, logger="watchnext.serve"):
        assert registry.load().version == "v1"
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("refused model v3: ") and "checksum mismatch" in m for m in messages)
    assert any(m.startswith("refused model v2: ") and "corrupt" in m for m in messages)
    assert any(m.startswith("serving model v1 ") for m in messages)
    assert "serving v1, not the newest version: refused v3, v2" in messages
    assert registry.reloads == {"success": 1, "failure": 2}
    (fresh_registry / "v1" / "service.json").write_text("{")
    with pytest.raises(ModelDirError, match="no version loads .*v3: .*v2: .*v1: "):
        ModelRegistry(fresh_registry).load()
    with pytest.raises(ModelDirError, match="corrupt"):  # a version named is that version
        ModelRegistry(fresh_registry).load("v2")


def test_every_swap_and_refusal_is_logged_with_its_version(loaded_registry, fresh_registry,
                                                           caplog):
    with caplog.at_level(logging.INFO, logger="watchnext.serve"):
        loaded_registry.reload("v2")
        (fresh_registry / "v1" / "model.safetensors").write_bytes(b"not weights")
        with pytest.raises(ModelDirError):
            loaded_registry.reload("v1")
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("serving model v2 (") and m.endswith("was v1") for m in messages)
    assert any(m.startswith("refused model v1: ") and m.endswith("still serving v2")
               for m in messages)


def test_reloads_are_serialised(loaded_registry, fresh_registry):
    gate, entered = threading.Event(), threading.Event()
    real_loader = loaded_registry.loader

    def slow_loader(*args, **kwargs):
        entered.set()
        gate.wait(30)
        return real_loader(*args, **kwargs)

    loaded_registry.loader = slow_loader
    worker = threading.Thread(target=loaded_registry.reload, args=("v2",))
    worker.start()
    assert entered.wait(30)
    with pytest.raises(ReloadInProgress):
        loaded_registry.reload("v1")
    gate.set()
    worker.join(60)
    assert loaded_registry.current.version == "v2"


def test_in_flight_request_finishes_on_the_old_model(loaded_registry):
    """A request that started on v1 completes on v1 while v2 is swapped in meanwhile."""
    old = loaded_registry.current
    started, release = threading.Event(), threading.Event()
    encode = old.store.encode

    def blocking_encode(*args, **kwargs):
        started.set()
        assert release.wait(30)
        return encode(*args, **kwargs)

    old.store.encode = blocking_encode
    client = TestClient(create_app(loaded_registry, admin_token=TOKEN))
    result = {}
    body = {"user_id": "someone", "video_id": "something", "k": 3}
    worker = threading.Thread(
        target=lambda: result.update(r=client.post("/v1/watch-next", json=body)))
    worker.start()
    try:
        assert started.wait(30)
        reload = client.post("/admin/reload", json={"version": "v2"}, headers=AUTH)
        assert reload.status_code == 200, reload.text
        assert reload.json() == {"version": "v2", "previous": "v1", "backend":
                                 loaded_registry.current.backend.name}
        during = client.post("/v1/watch-next", json=body)
        assert during.json()["model_version"] == "v2"
    finally:
        release.set()
        worker.join(60)
    assert result["r"].status_code == 200
    assert result["r"].json()["model_version"] == "v1" and len(result["r"].json()["items"]) == 3
