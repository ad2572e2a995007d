"""The real thing: `python -m watchnext.serve serve` in its own process, over TCP."""

import httpx
import pytest

from .live import served

pytestmark = pytest.mark.slow


def test_served_process_answers_and_reloads(fresh_registry):
    with served(fresh_registry, token="live-token") as server, \
            httpx.Client(base_url=server.url) as client:
        assert client.get("/readyz").json()["version"] == "v2"  # newest by default
        response = client.post("/v1/watch-next", json={"user_id": "u", "k": 3})
        assert response.status_code == 200 and len(response.json()["items"]) == 3
        reload = client.post("/admin/reload", json={"version": "v1"},
                             headers={"Authorization": "Bearer live-token"}, timeout=120)
        assert reload.status_code == 200 and reload.json()["previous"] == "v2"
        assert client.post("/v1/watch-next", json={"k": 1}).json()["model_version"] == "v1"
        assert 'watchnext_model_info{version="v1"' in client.get("/metrics").text
        log = server.log()
    assert "serving model v2" in log and "serving model v1" in log and "was v2" in log


def test_a_broken_newest_version_leaves_the_previous_one_serving(fresh_registry):
    (fresh_registry / "v2" / "serving.onnx").write_bytes(b"not an onnx graph")
    with served(fresh_registry, token="live-token") as server, \
            httpx.Client(base_url=server.url) as client:
        assert client.get("/readyz").json()["version"] == "v1"
        assert client.post("/v1/watch-next", json={"k": 2}).json()["model_version"] == "v1"
        refused = client.post("/admin/reload", headers={"Authorization": "Bearer live-token"},
                              timeout=120)  # the newest again: refused, v1 keeps serving
        assert refused.status_code == 422 and "still serving v1" in refused.json()["detail"]
        assert client.get("/readyz").json()["version"] == "v1"
        log = server.log()
    assert log.count("refused model v2") == 2, log
    assert "serving v1, not the newest version: refused v2" in log
    assert "serving model v1" in log
