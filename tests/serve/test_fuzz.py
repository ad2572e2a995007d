"""Property-based fuzzing of the HTTP API: whatever a client sends, the answer is never a 5xx.

Bodies are drawn from four layers, so the fuzzer reaches both the parser and the handlers:
arbitrary bytes, arbitrary JSON, objects with the real field names and adversarial values
(boundary integers, huge numbers, odd strings and times, known and unknown ids), and valid
requests with one or two fields replaced by such values (these pass validation most often and
so exercise the handlers).
"""

import datetime as dt
import json
import os

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from watchnext.serve import ModelRegistry, create_app

TOKEN = "fuzz-token"
FIELDS = ["user_id", "video_id", "device", "k", "exclude", "time", "details", "candidates"]
PATHS = ["/v1/watch-next", "/v1/score", "/admin/reload"]
# 50 examples per property keep the default run fast; WATCHNEXT_FUZZ_EXAMPLES=1000 digs deeper.
FUZZ = settings(max_examples=int(os.environ.get("WATCHNEXT_FUZZ_EXAMPLES", "50")), deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

scalars = (st.none() | st.booleans() | st.integers(-(2**70), 2**70)
           | st.integers(-3, 1002) | st.floats(allow_nan=False, allow_infinity=False)
           | st.text(max_size=40) | st.sampled_from(
               ["", "0", "v1", "v2", "../v1", "2022-04-18T09:00:00", "2022-04-18T09:00:00+14:00",
                "1970-01-01T00:00:00", "0001-01-01T00:00:00", "9999-12-31T23:59:59-12:00",
                "9999-12-31T23:59:59", "2998-12-31T23:59:59", "1971-01-01T00:00:00+14:00",
                "1e999", "\u0000", "🎬", "android", "x" * 200]))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=5)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=5),
                           max_leaves=20)
field_values = scalars | st.lists(scalars, max_size=8) | json_values
structured = st.dictionaries(st.sampled_from(FIELDS), field_values, max_size=6)
VALID = {"/v1/watch-next": {"user_id": "u", "video_id": "v", "k": 5, "exclude": ["a"]},
         "/v1/score": {"user_id": "u", "candidates": ["a", "b"]},
         "/admin/reload": {"version": "v1"}}


@pytest.fixture(scope="module")
def client(registry_root):
    registry = ModelRegistry(registry_root)
    registry.load()
    return TestClient(create_app(registry, admin_token=TOKEN, max_body_bytes=16 * 1024),
                      raise_server_exceptions=False)


@pytest.fixture(scope="module")
def known_ids(client):
    examples = client.get("/v1/examples").json()
    return [u["user_id"] for u in examples["users"][:5]] + examples["videos"][:5]


def check(response):
    assert response.status_code < 500, (response.status_code, response.text[:500])


@FUZZ
@given(path=st.sampled_from(PATHS), body=structured, use_known=st.booleans(),
       pick=st.integers(0, 9), auth=st.booleans())
def test_structured_bodies(client, known_ids, path, body, use_known, pick, auth):
    if use_known:
        body = {**body, "user_id": known_ids[pick % len(known_ids)],
                "video_id": known_ids[-1 - pick % len(known_ids)]}
    headers = {"Authorization": f"Bearer {TOKEN}"} if auth else {}
    check(client.post(path, content=json.dumps(body), headers={
        "content-type": "application/json", **headers}))


@FUZZ
@given(path=st.sampled_from(PATHS),
       changes=st.dictionaries(st.sampled_from(FIELDS), field_values, min_size=1, max_size=2),
       known=st.booleans(), pick=st.integers(0, 9))
def test_valid_requests_with_mutated_fields(client, known_ids, path, changes, known, pick):
    body = dict(VALID[path])
    if known and path != "/admin/reload":
        body["user_id"], body["video_id"] = known_ids[pick % 5], known_ids[5 + pick % 5]
    body = {key: value for key, value in {**body, **changes}.items()
            if key in VALID[path] or key in ("device", "time", "details", "k")}
    check(client.post(path, content=json.dumps(body), headers={
        "content-type": "application/json", "Authorization": f"Bearer {TOKEN}"}))


offsets = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(
    lambda minutes: dt.timezone(dt.timedelta(minutes=minutes)))
zones = st.none() | offsets
any_time = (st.datetimes(min_value=dt.datetime.min, max_value=dt.datetime.max, timezones=zones)
            | st.datetimes(min_value=dt.datetime(9999, 12, 30), max_value=dt.datetime.max,
                           timezones=zones)
            | st.datetimes(min_value=dt.datetime.min, max_value=dt.datetime(1, 1, 2),
                           timezones=zones))


@FUZZ
@given(path=st.sampled_from(["/v1/watch-next", "/v1/score"]), when=any_time,
       as_number=st.booleans())
def test_any_request_time(client, path, when, as_number):
    """Times anywhere in the calendar, with or without an offset, or as numbers: never a 5xx
    (RFC 3339 with an offset in range is served, anything else is a 422)."""
    value = when.isoformat()
    if as_number:
        aware = when if when.tzinfo else when.replace(tzinfo=dt.UTC)
        value = aware.timestamp()
    response = client.post(path, json={**VALID[path], "time": value})
    check(response)
    if as_number or when.tzinfo is None or not 1971 <= when.year <= 2999:
        assert response.status_code == 422, response.text
    else:
        assert response.status_code == 200, response.text


@FUZZ
@given(path=st.sampled_from(PATHS), body=json_values)
def test_any_json(client, path, body):
    check(client.post(path, content=json.dumps(body), headers={"content-type": "application/json"}))


@FUZZ
@given(path=st.sampled_from([*PATHS, "/", "/healthz", "/readyz", "/metrics", "/v1/model"]),
       method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]),
       body=st.binary(max_size=300) | st.sampled_from(
           [b"NaN", b'{"k": NaN}', b'{"k": Infinity}', b'{"k": 1e400}', b'{"user_id": -0}',
            b'{"exclude": [' + b'"a",' * 3000 + b'"b"]}', b"\xef\xbb\xbf{}"]),
       content_type=st.sampled_from(["application/json", "text/plain", "", "multipart/form-data"]))
def test_any_bytes_any_method(client, path, method, body, content_type):
    headers = {"content-type": content_type} if content_type else {}
    check(client.request(method, path, content=body, headers=headers))


@FUZZ
@given(segments=st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=4),
       query=st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3))
def test_any_path(client, segments, query):
    from urllib.parse import quote

    path = "/" + "/".join(quote(s, safe="") for s in segments)
    check(client.get(path, params=query))
