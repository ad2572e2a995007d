"""The real thing: `python -m watchnext.serve serve` in its own process, over TCP."""

import httpx
import pytest

from .live import served

pytestmark = pytest.mark.slow


def test_served_process_answers_and_reloads(fresh_registry):
    with served(fresh_registry, token="live-token") as url, httpx.Client(base_url=url) as client:
        assert client.get("/readyz").json()["version"] == "v2"  # newest by default
        response = client.post("/v1/watch-next", json={"user_id": "u", "k": 3})
        assert response.status_code == 200 and len(response.json()["items"]) == 3
        reload = client.post("/admin/reload", json={"version": "v1"},
                             headers={"Authorization": "Bearer live-token"}, timeout=120)
        assert reload.status_code == 200 and reload.json()["previous"] == "v2"
        assert client.post("/v1/watch-next", json={"k": 1}).json()["model_version"] == "v1"
        assert 'watchnext_model_info{version="v1"' in client.get("/metrics").text
