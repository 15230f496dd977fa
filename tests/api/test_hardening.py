"""Hostile input never breaks anything, and the defaults are the safe ones: security headers
on every response, CORS closed unless origins are configured, a body limit that holds for
chunked bodies too, and every input bounded in length. No Temporal: the app gets a stand-in
client, which none of these requests reaches."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from api.main import CSP, DOCS_CSP, create_app
from whistle.settings import Settings

BASE = "http://whistle.test"
HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "content-security-policy": CSP,
    "cross-origin-opener-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=()",
}
ALLOWED = "https://cases.example.org"


def _settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"env": "test",
                              "database_url": f"sqlite:///{tmp_path / 'whistle.db'}",
                              "max_body_bytes": 1024}
    return Settings(**(values | overrides))


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator[Any]:
    """`async with make_client(**settings) as client`: the app from create_app, its lifespan
    run (tables in a fresh SQLite file), an httpx client on it."""

    def make(**overrides: Any) -> Any:
        app = create_app(_settings(tmp_path, **overrides), client=object())  # type: ignore[arg-type]
        return _running(app)

    yield make


class _running:
    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self._lifespan: Any = None
        self._client: httpx.AsyncClient | None = None

    async def __aenter__(self) -> httpx.AsyncClient:
        self._lifespan = self.app.router.lifespan_context(self.app)
        await self._lifespan.__aenter__()
        self._client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app),
                                         base_url=BASE)
        return self._client

    async def __aexit__(self, *exc: object) -> None:
        assert self._client is not None
        await self._client.aclose()
        await self._lifespan.__aexit__(*exc)


@pytest.fixture
async def client(make_client: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client() as c:
        yield c


def assert_security_headers(response: httpx.Response, *, api: bool = True) -> None:
    for name, value in HEADERS.items():
        assert response.headers.get(name) == value, (name, response.headers)
    if api:
        assert response.headers.get("cache-control") == "no-store"
    assert "strict-transport-security" not in response.headers  # not outside production


# --- security headers ---------------------------------------------------------------------


async def test_headers_on_200(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/health")
    assert r.status_code == 200, r.text
    assert_security_headers(r)


async def test_headers_on_404(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/no-such-thing")
    assert r.status_code == 404
    assert r.json()["code"] == "not_found"
    assert_security_headers(r)
    r = await client.get("/elsewhere")
    assert r.status_code == 404
    assert_security_headers(r, api=False)
    assert "cache-control" not in r.headers  # no-store is for /api/ only


async def test_headers_on_422(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/v1/auth/token", json={"username": "x", "password": "y",
                                                      "admin": True})
    assert r.status_code == 422
    assert r.json()["code"] == "invalid_input"
    assert_security_headers(r)


async def test_headers_on_413(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/v1/auth/token", content=b"x" * 2000,
                          headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert r.json()["code"] == "body_too_large"
    assert_security_headers(r)


async def test_docs_get_a_relaxed_csp_outside_production(client: httpx.AsyncClient) -> None:
    for path in ("/docs", "/redoc"):
        r = await client.get(path)
        assert r.status_code == 200, path
        assert r.headers["content-security-policy"] == DOCS_CSP
        assert r.headers["x-frame-options"] == "DENY"
    r = await client.get("/openapi.json")
    assert r.headers["content-security-policy"] == CSP


async def test_production_serves_no_docs_and_sends_hsts(tmp_path: Path) -> None:
    settings = Settings(env="production", secret_key="s" * 40,
                        database_url="postgresql+psycopg://whistle@127.0.0.1:9/whistle")
    app = create_app(settings, client=object())  # type: ignore[arg-type]
    # No lifespan: these requests need no database.
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as c:
        for path in ("/docs", "/redoc", "/docs/oauth2-redirect"):
            r = await c.get(path)
            assert r.status_code == 404, path
            assert r.headers["content-security-policy"] == CSP
            assert r.headers["strict-transport-security"].startswith("max-age=")
        r = await c.get("/openapi.json")
        assert r.status_code == 200


# --- CORS ---------------------------------------------------------------------------------

PREFLIGHT = {"Origin": ALLOWED, "Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "authorization,content-type"}


async def test_no_cors_by_default(client: httpx.AsyncClient) -> None:
    r = await client.options("/api/v1/cases", headers=PREFLIGHT)
    assert not [h for h in r.headers if h.startswith("access-control-")], r.headers
    assert_security_headers(r)
    r = await client.get("/api/v1/health", headers={"Origin": ALLOWED})
    assert r.status_code == 200
    assert not [h for h in r.headers if h.startswith("access-control-")]


async def test_cors_allows_only_the_configured_origins(make_client: Any) -> None:
    async with make_client(cors_origins=[ALLOWED]) as client:
        r = await client.options("/api/v1/cases", headers=PREFLIGHT)
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == ALLOWED
        assert "access-control-allow-credentials" not in r.headers
        methods = {m.strip() for m in r.headers["access-control-allow-methods"].split(",")}
        assert methods == {"GET", "POST", "PUT", "PATCH", "DELETE"}
        assert_security_headers(r)

        r = await client.get("/api/v1/health", headers={"Origin": ALLOWED})
        assert r.headers["access-control-allow-origin"] == ALLOWED

        other = "https://evil.example"
        r = await client.options("/api/v1/cases", headers=PREFLIGHT | {"Origin": other})
        assert r.status_code == 400
        assert "access-control-allow-origin" not in r.headers
        r = await client.get("/api/v1/health", headers={"Origin": other})
        assert r.status_code == 200
        assert "access-control-allow-origin" not in r.headers

        r = await client.options("/api/v1/cases", headers=PREFLIGHT | {
            "Access-Control-Request-Headers": "x-custom"})
        assert r.status_code == 400  # a header outside the list is not allowed


async def test_cors_origins_from_a_comma_separated_environment(
        make_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WHISTLE_CORS_ORIGINS", f"https://other.example,{ALLOWED}")
    async with make_client() as client:
        r = await client.get("/api/v1/health", headers={"Origin": ALLOWED})
        assert r.headers["access-control-allow-origin"] == ALLOWED


# --- body limit ---------------------------------------------------------------------------


async def _chunks(total: int, size: int = 100) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        chunk = b" " * min(size, total - sent)
        sent += len(chunk)
        yield chunk


async def test_chunked_body_over_the_limit_is_refused(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/v1/auth/token", content=_chunks(5000),
                          headers={"content-type": "application/json"})
    assert r.request.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in r.request.headers
    assert r.status_code == 413, r.text
    assert r.json() == {"code": "body_too_large", "message": "request body over 1024 bytes"}
    assert_security_headers(r)


async def test_chunked_body_over_the_limit_is_refused_before_authentication(
        client: httpx.AsyncClient) -> None:
    """Nothing is processed for an oversized body, not even the caller's token."""
    r = await client.post("/api/v1/cases", content=_chunks(5000),
                          headers={"content-type": "application/json"})
    assert r.status_code == 413, r.text


async def test_chunked_body_under_the_limit_goes_through(client: httpx.AsyncClient) -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b'{"username": "nobody", '
        yield b'"password": "wrong", "extra": 1}'

    r = await client.post("/api/v1/auth/token", content=body(),
                          headers={"content-type": "application/json"})
    assert r.request.headers.get("transfer-encoding") == "chunked"
    assert r.status_code == 422  # read and validated: the unknown field is refused
    assert r.json()["field"] == "extra"


@pytest.mark.parametrize("length", ["1025", "999999999999", "12x", "-1"])
async def test_content_length_over_the_limit_or_invalid_is_refused(
        client: httpx.AsyncClient, length: str) -> None:
    request = client.build_request("POST", "/api/v1/auth/token", content=b"{}",
                                   headers={"content-type": "application/json"})
    request.headers["content-length"] = length
    r = await client.send(request)
    assert r.status_code == 413
    assert r.json()["code"] == "body_too_large"


# --- every input is bounded ---------------------------------------------------------------

# A pattern bounds a string's length when it is anchored and has no open-ended repeat.
_OPEN_REPEAT = re.compile(r"(?<!\\)[*+]|\{\d*,\}")
BOUNDED_FORMATS = {"date-time", "date", "time", "uuid"}


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].removeprefix("#/components/schemas/")
        schema = spec["components"]["schemas"][name]
    return schema


def _unbounded(spec: dict[str, Any], schema: dict[str, Any], where: str,
               seen: set[str]) -> list[str]:
    if "$ref" in schema:
        if schema["$ref"] in seen:
            return []
        seen = seen | {schema["$ref"]}
    schema = _resolve(spec, schema)
    found: list[str] = []
    for key in ("anyOf", "oneOf", "allOf"):
        for i, sub in enumerate(schema.get(key, [])):
            found += _unbounded(spec, sub, f"{where}[{key}{i}]", seen)
    kind = schema.get("type")
    if "enum" in schema or "const" in schema:
        return found
    if kind == "string":
        pattern = schema.get("pattern", "")
        bounded_pattern = (pattern.startswith("^") and pattern.endswith("$")
                           and not _OPEN_REPEAT.search(pattern))
        if ("maxLength" not in schema and not bounded_pattern
                and schema.get("format") not in BOUNDED_FORMATS):
            found.append(f"{where}: string without maxLength")
    elif kind == "array":
        if "maxItems" not in schema:
            found.append(f"{where}: array without maxItems")
        found += _unbounded(spec, schema.get("items", {}), f"{where}[]", seen)
    elif kind == "object" or "properties" in schema:
        if schema.get("additionalProperties") is not False:
            found.append(f"{where}: object accepts unknown fields")
        for name, sub in schema.get("properties", {}).items():
            found += _unbounded(spec, sub, f"{where}.{name}", seen)
    return found


def test_every_request_input_is_bounded(tmp_path: Path) -> None:
    """Every body refuses unknown fields; every string in a body, query, path or header
    has a maximum length (or a bounded pattern, enum or date format); every list a maximum
    number of items. A new route or body that forgets one fails here."""
    spec = create_app(_settings(tmp_path), client=object()).openapi()  # type: ignore[arg-type]
    problems: list[str] = []
    for path, item in spec["paths"].items():
        for method, op in item.items():
            where = f"{method.upper()} {path}"
            for param in op.get("parameters", []):
                problems += _unbounded(spec, param["schema"],
                                       f"{where} {param['in']} {param['name']}", set())
            for media, content in op.get("requestBody", {}).get("content", {}).items():
                problems += _unbounded(spec, content["schema"], f"{where} body ({media})",
                                       set())
    assert not problems, "\n".join(problems)
