import json
import re

import pytest
from fastapi.testclient import TestClient

from watchnext.serve import ModelRegistry, create_app

TOKEN = "api-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def client(registry_root):
    registry = ModelRegistry(registry_root)
    registry.load()
    return TestClient(create_app(registry, admin_token=TOKEN, max_body_bytes=32 * 1024))


@pytest.fixture(scope="module")
def example(client):
    return client.get("/v1/examples").json()["users"][0]


def test_watch_next(client, example):
    body = {"user_id": example["user_id"], "video_id": example["last_video"], "k": 5,
            "device": "android", "exclude": [], "time": "2022-04-18T09:00:00+08:00"}
    response = client.post("/v1/watch-next", json=body)
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["model_version"] == "v1" and data["known_user"] and data["known_video"]
    assert len(data["items"]) == 5 and [i["rank"] for i in data["items"]] == [1, 2, 3, 4, 5]
    item = data["items"][0]
    assert set(item) >= {"video_id", "score", "predictions", "source", "sources", "known_video"}
    assert set(item["predictions"]) == {"click", "long_view", "watch_time", "like", "comment",
                                        "follow", "forward"}
    assert data["timings_ms"]["ranking"] >= 0


def test_integer_ids_are_accepted_and_answered_as_integers(client, example):
    body = {"user_id": int(example["user_id"]), "video_id": int(example["last_video"]), "k": 2}
    data = client.post("/v1/watch-next", json=body).json()
    assert data["user_id"] == int(example["user_id"]) and data["known_user"]
    assert data["video_id"] == int(example["last_video"]) and data["known_video"]


def test_score_answers_each_id_with_the_json_type_it_came_in(client, example):
    known = client.post("/v1/watch-next", json={"k": 2}).json()["items"]
    sent = [1054335349840, known[0]["video_id"], int(known[1]["video_id"]), "x", 2**53 - 1]
    response = client.post("/v1/score", json={"user_id": example["user_id"], "candidates": sent})
    assert response.status_code == 200, response.text
    got = [item["video_id"] for item in response.json()["items"]]
    assert sorted(got, key=str) == sorted(sent, key=str)
    assert [type(g) for g in sorted(got, key=str)] == [type(s) for s in sorted(sent, key=str)]
    assert 1054335349840 in got and "1054335349840" not in got


def test_ids_equal_as_strings_are_one_candidate_answered_as_first_given(client):
    response = client.post("/v1/score", json={"candidates": [7, "7", "8", 8]})
    assert response.json()["candidates"] == 2
    assert {(type(i["video_id"]), str(i["video_id"])) for i in response.json()["items"]} == {
        (int, "7"), (str, "8")}


@pytest.mark.parametrize("when", ["2022-04-18T09:00:00Z", "2022-04-18t09:00:00.123456789+08:00",
                                  "1971-01-01T00:00:00+14:00", "2999-12-31T23:59:59-23:59",
                                  "2024-02-29T12:00:00z"])
def test_rfc3339_times_in_range_are_served(client, when):
    assert client.post("/v1/watch-next", json={"k": 1, "time": when}).status_code == 200


def test_cold_start_is_not_an_error(client):
    response = client.post("/v1/watch-next", json={"user_id": "new!", "video_id": "?", "k": 4})
    assert response.status_code == 200
    data = response.json()
    assert not data["known_user"] and not data["known_video"] and len(data["items"]) == 4
    assert client.post("/v1/watch-next", json={}).status_code == 200


def test_score(client, example):
    top = client.post("/v1/watch-next", json={"user_id": example["user_id"], "k": 3}).json()
    ids = [i["video_id"] for i in top["items"]] + ["unknown-video"]
    response = client.post("/v1/score", json={"user_id": example["user_id"], "candidates": ids})
    assert response.status_code == 200
    data = response.json()
    assert sorted(i["video_id"] for i in data["items"]) == sorted(ids)
    assert {i["source"] for i in data["items"]} == {"caller"}


@pytest.mark.parametrize("path,body,field", [
    ("/v1/watch-next", {"k": 0}, "k"),
    ("/v1/watch-next", {"k": 101}, "k"),
    ("/v1/watch-next", {"k": "ten"}, "k"),
    ("/v1/watch-next", {"k": True}, "k"),
    ("/v1/watch-next", {"user_id": 1.5}, "user_id"),
    ("/v1/watch-next", {"user_id": ""}, "user_id"),
    ("/v1/watch-next", {"user_id": "x" * 129}, "user_id"),
    ("/v1/watch-next", {"video_id": ["a"]}, "video_id"),
    ("/v1/watch-next", {"exclude": "abc"}, "exclude"),
    ("/v1/watch-next", {"exclude": list(range(1001))}, "exclude"),
    ("/v1/watch-next", {"surprise": 1}, "surprise"),
    ("/v1/watch-next", {"time": "yesterday"}, "time"),
    ("/v1/watch-next", {"time": "9999-12-31T23:59:59Z"}, "time"),
    ("/v1/watch-next", {"time": "1970-12-31T23:59:59Z"}, "time"),
    ("/v1/watch-next", {"time": "2022-04-18T09:00:00"}, "time"),  # no offset
    ("/v1/watch-next", {"time": "2022-04-18 09:00:00Z"}, "time"),
    ("/v1/watch-next", {"time": "2022-02-30T09:00:00Z"}, "time"),
    ("/v1/watch-next", {"time": "2023-02-29T09:00:00Z"}, "time"),
    ("/v1/watch-next", {"time": 1650272400}, "time"),
    ("/v1/watch-next", {"user_id": 2**53}, "user_id"),
    ("/v1/watch-next", {"video_id": -(2**53)}, "video_id"),
    ("/v1/score", {"candidates": [9223372036854775999]}, "candidates"),
    ("/v1/watch-next", {"device": ""}, "device"),
    ("/v1/score", {}, "candidates"),
    ("/v1/score", {"candidates": []}, "candidates"),
    ("/v1/score", {"candidates": [None]}, "candidates"),
])
def test_invalid_bodies_get_422_naming_the_field(client, path, body, field):
    response = client.post(path, json=body)
    assert response.status_code == 422, response.text
    data = response.json()
    assert field in data["message"], data


@pytest.mark.parametrize("content,content_type", [
    (b"{not json", "application/json"),
    (b"[1, 2, 3]", "application/json"),
    (b"\xff\xfe\x00garbage", "application/json"),
    (b"null", "application/json"),
    (b"k=5", "application/x-www-form-urlencoded"),
])
def test_malformed_bodies_get_4xx(client, content, content_type):
    response = client.post("/v1/watch-next", content=content,
                           headers={"content-type": content_type})
    assert 400 <= response.status_code < 500, response.text
    assert "detail" in response.json()


def test_oversized_body_gets_413(client):
    body = json.dumps({"exclude": ["x" * 100] * 400}).encode()
    response = client.post("/v1/watch-next", content=body,
                           headers={"content-type": "application/json"})
    assert response.status_code == 413 and "too large" in response.json()["detail"]


def test_unknown_route_and_method(client):
    assert client.get("/v1/nothing").status_code == 404
    assert client.get("/v1/watch-next").status_code == 405


def test_health_ready_and_docs(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["version"] == "v1"
    schema = client.get("/openapi.json").json()
    assert {"/v1/watch-next", "/v1/score", "/admin/reload", "/metrics"} <= set(schema["paths"])
    assert client.get("/docs").status_code == 200
    assert "watchnext" in client.get("/").text


def test_model_info_shows_no_paths(client, registry_root):
    response = client.get("/v1/model")
    assert response.status_code == 200
    info = response.json()
    assert info["version"] == "v1" and info["devices"] == [] and info["users"] > 0
    assert "directory" not in info and str(registry_root) not in response.text
    assert str(registry_root.parent) not in response.text


def test_model_info_reduces_paths_in_the_backend_report_to_file_names(loaded_registry):
    loaded_registry.current.backend_report = {
        "chosen": "torch", "reason": "RuntimeError: /srv/models/.v1.building-7/serving.onnx: "
                                     "export failed; see https://onnx.ai/x/y"}
    info = TestClient(create_app(loaded_registry)).get("/v1/model").json()
    assert info["backend_report"]["reason"] == ("RuntimeError: serving.onnx: export failed; "
                                                "see https://onnx.ai/x/y")


def test_docs_are_served_without_any_outside_asset(client):
    html = client.get("/docs").text
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
    assert assets and all(a.startswith("/") and not a.startswith("//") for a in assets), assets
    assert "cdn" not in html.lower()
    for asset in assets:
        response = client.get(asset)
        assert response.status_code == 200 and len(response.content) > 0, asset
    assert client.get("/redoc").status_code == 200


def test_readyz_is_503_without_a_model(tmp_path):
    client = TestClient(create_app(ModelRegistry(tmp_path)))
    assert client.get("/readyz").status_code == 503
    assert client.post("/v1/watch-next", json={}).status_code == 503
    assert client.get("/healthz").status_code == 200


def test_metrics(client):
    client.post("/v1/watch-next", json={"k": 1})
    client.post("/v1/watch-next", json={"k": 0})
    text = client.get("/metrics").text
    assert re.search(r'watchnext_requests_total\{route="/v1/watch-next",method="POST",'
                     r'status="200"\} [1-9]', text)
    assert re.search(r'status="422"\} [1-9]', text)
    assert re.search(r'watchnext_request_duration_seconds_bucket\{route="/v1/watch-next",'
                     r'le="\+Inf"\} [1-9]', text)
    assert 'watchnext_model_info{version="v1",backend=' in text
    assert "watchnext_model_reloads_total" in text and "# TYPE" in text
    assert re.search(r'watchnext_cold_start_total\{kind="user"\} [1-9]', text)


def test_admin_auth(registry_root):
    registry = ModelRegistry(registry_root)
    registry.load()
    disabled = TestClient(create_app(registry, admin_token=""))
    assert disabled.post("/admin/reload", headers=AUTH).status_code == 403
    assert disabled.post("/admin/reload").status_code == 401  # no token sent: 401 first
    client = TestClient(create_app(registry, admin_token=TOKEN))
    assert client.post("/admin/reload").status_code == 401
    assert client.post("/admin/reload", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.post("/admin/reload", headers={"Authorization": "Basic abc"}).status_code == 401


def test_admin_reload_outcomes(loaded_registry, fresh_registry):
    client = TestClient(create_app(loaded_registry, admin_token=TOKEN))
    ok = client.post("/admin/reload", headers=AUTH)  # newest: v2
    assert ok.status_code == 200 and ok.json()["version"] == "v2"
    assert client.post("/admin/reload", json={"version": "v7"}, headers=AUTH).status_code == 404
    assert client.post("/admin/reload", json={"version": "../etc"},
                       headers=AUTH).status_code == 404
    (fresh_registry / "v1" / "features" / "items.parquet").write_bytes(b"truncated")
    refused = client.post("/admin/reload", json={"version": "v1"}, headers=AUTH)
    assert refused.status_code == 422 and "still serving v2" in refused.json()["detail"]
    assert client.get("/readyz").json()["version"] == "v2"
    assert client.post("/v1/watch-next", json={"k": 2}).json()["model_version"] == "v2"
    assert 'watchnext_model_reloads_total{result="failure"} 1' in client.get("/metrics").text
