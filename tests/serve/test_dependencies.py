"""The routes take the model, registry and admin check through FastAPI dependencies, so a test
(or an embedding application) can replace them with ``app.dependency_overrides``."""

from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient

from watchnext.serve import ModelRegistry, RankedItem, Ranking, create_app
from watchnext.serve.dependencies import get_model, require_admin


class FakeModel:
    """Scores candidates by their position in the request; knows one device."""

    version, devices, task_names = "fake-1", ["tv"], ["click"]
    backend = SimpleNamespace(name="fake")
    store = SimpleNamespace(examples={"users": [{"user_id": "u", "last_video": "v"}],
                                      "videos": ["v"]})

    def __init__(self):
        self.calls = []

    def _ranking(self, ids, k):
        items = [RankedItem(i, 1.0 / (n + 1), {"click": 0.5}, "fake", ["fake"], True)
                 for n, i in enumerate(ids[:k])]
        return Ranking(items, self.version, True, True, len(ids), {"ranking": 0.0})

    def watch_next(self, user_id, video_id, device, k=10, exclude=(), when=None, details=False):
        self.calls.append(("watch_next", user_id, video_id, device))
        return self._ranking(["a", "b", "c"], k)

    def score(self, user_id, video_id, device, candidates, k=None, when=None, details=False):
        self.calls.append(("score", user_id, video_id, device, candidates))
        return self._ranking(candidates, k or len(candidates))


@pytest.fixture
def fake():
    return FakeModel()


@pytest.fixture
def client(tmp_path, fake):
    app = create_app(ModelRegistry(tmp_path))  # an empty registry: without the override, 503
    app.dependency_overrides[get_model] = lambda: fake
    return TestClient(app)


def test_routes_use_the_injected_model(client, fake):
    data = client.post("/v1/watch-next", json={"user_id": 5, "device": "tv", "k": 2}).json()
    assert data["model_version"] == "fake-1" and [i["video_id"] for i in data["items"]] == ["a", "b"]
    assert data["user_id"] == 5
    scored = client.post("/v1/score", json={"candidates": [3, "x"]}).json()
    assert [i["video_id"] for i in scored["items"]] == [3, "x"]
    assert fake.calls == [("watch_next", "5", None, "tv"), ("score", None, None, None, ["3", "x"])]
    assert client.get("/readyz").json() == {"status": "ready", "version": "fake-1",
                                            "backend": "fake"}
    assert client.get("/v1/examples").json()["videos"] == ["v"]


def test_the_injected_model_decides_which_devices_pass(client, fake):
    refused = client.post("/v1/watch-next", json={"device": "android"})
    assert refused.status_code == 422 and "'tv'" in refused.json()["message"]
    assert fake.calls == []


def test_without_the_override_the_empty_registry_answers_503(client):
    client.app.dependency_overrides.clear()
    assert client.post("/v1/watch-next", json={}).status_code == 503


def test_the_admin_check_is_a_dependency_too(tmp_path):
    app = create_app(ModelRegistry(tmp_path), admin_token="")
    assert TestClient(app).post("/admin/reload", headers={"Authorization": "Bearer x"}
                                ).status_code == 403
    app.dependency_overrides[require_admin] = lambda: None
    assert TestClient(app).post("/admin/reload").status_code == 404  # no versions in tmp_path
