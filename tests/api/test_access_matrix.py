"""Every route × every role, allowed or denied, against the running app.

The table below is written by hand, independently of the rules in api/access.py: a route
the table does not list (or lists but the app lacks) fails the suite, so a new route cannot
ship without someone deciding who may call it. Bodies sent to allowed roles are invalid on
purpose (an unknown field), so an allowed call proves it got past authorisation (422) and
changes nothing."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.routing import APIRoute

from api.access import Guard, guard_of
from api.main import create_app, route_table
from tests.api.test_cases_api import INTAKE
from tests.helpers import TestUsers

ROLES = ("coordinator", "department", "grid_worker", "supervisor", "auditor", "admin")
ALL = set(ROLES)
CASE_READERS = ALL - {"admin"}
NONE: set[str] = set()

# (method, path) → roles allowed, for a case at Jiulong grid 1 standing at the town level,
# and users whose area contains it (see USERS). "department" is the summoned xjk-petition.
EXPECTED: dict[tuple[str, str], set[str]] = {
    ("GET", "/api/v1/health"): ALL,
    ("POST", "/api/v1/auth/token"): ALL,
    ("GET", "/api/v1/auth/me"): ALL,
    ("POST", "/api/v1/auth/logout"): ALL,
    ("POST", "/api/v1/auth/password"): ALL,
    ("GET", "/api/v1/auth/tokens"): ALL,
    ("DELETE", "/api/v1/auth/tokens/{token_id}"): ALL,
    ("GET", "/api/v1/users"): {"admin"},
    ("POST", "/api/v1/users"): {"admin"},
    ("GET", "/api/v1/users/{username}"): {"admin"},
    ("PATCH", "/api/v1/users/{username}"): {"admin"},
    ("GET", "/api/v1/users/{username}/tokens"): {"admin"},
    ("POST", "/api/v1/users/{username}/tokens"): {"admin"},
    ("DELETE", "/api/v1/users/{username}/tokens/{token_id}"): {"admin"},
    ("GET", "/api/v1/reference/jurisdictions"): ALL,
    ("GET", "/api/v1/reference/departments"): ALL,
    ("GET", "/api/v1/reference/categories"): ALL,
    ("PUT", "/api/v1/reference/departments/{department}"): {"admin"},
    ("GET", "/api/v1/departments/{department}/summonses"):
        {"department", "coordinator", "supervisor", "auditor"},
    ("GET", "/api/v1/routing"): {"coordinator", "grid_worker", "supervisor", "auditor"},
    ("POST", "/api/v1/cases"): {"coordinator", "grid_worker"},
    ("GET", "/api/v1/cases"): CASE_READERS,
    ("GET", "/api/v1/cases/{case_id}"): CASE_READERS,
    ("POST", "/api/v1/cases/{case_id}/summonses"): {"coordinator"},
    ("POST", "/api/v1/cases/{case_id}/summonses/{department}/report-in"): {"department"},
    ("POST", "/api/v1/cases/{case_id}/summonses/{department}/sign-off"): {"department"},
    ("POST", "/api/v1/cases/{case_id}/summonses/{department}/return"): {"department"},
    ("POST", "/api/v1/cases/{case_id}/summonses/{department}/extension"): {"department"},
    ("POST", "/api/v1/cases/{case_id}/summonses/{department}/extension/decision"):
        {"coordinator"},
    ("POST", "/api/v1/cases/{case_id}/summonses/{department}/redispatch"): {"coordinator"},
    ("POST", "/api/v1/cases/{case_id}/outcome"): {"coordinator"},
    ("POST", "/api/v1/cases/{case_id}/feedback"): {"coordinator"},
    ("POST", "/api/v1/cases/{case_id}/close"): {"coordinator"},
    ("POST", "/api/v1/cases/{case_id}/policy"): {"coordinator"},
    ("POST", "/api/v1/cases/{case_id}/facts"): {"coordinator", "grid_worker"},
    ("POST", "/api/v1/cases/{case_id}/take-over"): {"supervisor"},
    ("POST", "/api/v1/cases/{case_id}/deadlines/recompute"): {"coordinator"},
    ("POST", "/api/v1/cases/{case_id}/planning/retry"): {"coordinator"},
    ("GET", "/api/v1/audit/cases/{case_id}/history"): {"auditor"},
    ("GET", "/api/v1/audit/cases/{case_id}/replay"): {"auditor"},
    ("GET", "/api/v1/audit/cases/{case_id}/timeline"): {"auditor"},
    ("GET", "/api/v1/audit/cases/{case_id}/check"): {"auditor"},
    ("GET", "/api/v1/audit/denials"): {"auditor"},
    ("GET", "/api/v1/channels"): {"admin"},
    ("POST", "/api/v1/channels"): {"admin"},
    ("GET", "/api/v1/channels/{channel_id}"): {"admin"},
    ("PATCH", "/api/v1/channels/{channel_id}"): {"admin"},
    ("DELETE", "/api/v1/channels/{channel_id}"): {"admin"},
    ("GET", "/api/v1/channels/{channel_id}/deliveries"): {"admin"},
    ("GET", "/api/v1/digests"): {"coordinator", "supervisor", "auditor"},
    ("GET", "/api/v1/digests/{digest_id}"): {"coordinator", "supervisor", "auditor"},
    ("GET", "/api/v1/digests/{digest_id}.csv"): {"coordinator", "supervisor", "auditor"},
}
PUBLIC = {("GET", "/api/v1/health"), ("POST", "/api/v1/auth/token")}

# One user per role whose area holds the matrix case.
USERS: dict[str, tuple[str, str, str | None]] = {
    "coordinator": ("m.coordinator", "xiaojinkou", None),
    "department": ("m.petition", "", "xjk-petition"),
    "grid_worker": ("m.grid", "jiulong-grid-1", None),
    "supervisor": ("m.supervisor", "xiaojinkou", None),
    "auditor": ("m.auditor", "huizhou", None),
    "admin": ("m.admin", "huizhou", None),
}


def app_routes() -> dict[tuple[str, str], APIRoute]:
    """The route table, checked against what the app really serves (its OpenAPI document:
    every operation of every included router)."""
    routes = route_table()
    served = {(method.upper(), path) for path, ops in create_app().openapi()["paths"].items()
              for method in ops}
    assert served == set(routes), "the app serves routes outside api.main.ROUTERS"
    return routes


def test_every_route_declares_a_guard_and_is_in_the_matrix():
    routes = app_routes()
    unguarded = sorted(k for k, r in routes.items() if not isinstance(guard_of(r.dependant),
                                                                        Guard))
    assert unguarded == [], "routes without a Guard(Permission…)"
    assert sorted(set(routes) - set(EXPECTED)) == [], "routes the matrix does not cover"
    assert sorted(set(EXPECTED) - set(routes)) == [], "matrix rows for routes that are gone"


def _url(path: str, case_id: str) -> str:
    values = {"case_id": case_id, "department": "xjk-petition", "username": "m.coordinator",
              "token_id": "0123456789ab", "channel_id": "1", "digest_id": "1"}
    return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path)


def _fresh(users: TestUsers, role: str) -> dict[str, str]:
    """A token of its own per request, so a sign-out in the matrix ends only itself."""
    username, node, dept = USERS[role]
    users.token(username, role, node, dept)  # make the user once
    users.tokens.pop(username)
    return users.headers(username, role, node, dept)


async def test_route_role_matrix(api, users):
    opened = await api.post("/api/v1/cases", json={**INTAKE, "location": "jiulong-grid-1",
                                                   "level": "town"})
    assert opened.status_code == 201, opened.text
    case = opened.json()
    assert case["level"] == "town" and "xjk-petition" in case["departments"]
    cid = case["case_id"]

    routes = app_routes()
    wrong: list[str] = []
    for (method, path), allowed in sorted(EXPECTED.items()):
        url = _url(path, cid)
        has_body = routes[method, path].body_field is not None
        body: dict[str, Any] | None = {"__matrix__": 1} if has_body else None
        anonymous = await api.request(method, url, json=body,
                                      headers={"x-test-anonymous": "1"})
        if (method, path) not in PUBLIC and anonymous.status_code != 401:
            wrong.append(f"{method} {path} anonymous → {anonymous.status_code}, want 401")
        for role in ROLES:
            r = await api.request(method, url, json=body, headers=_fresh(users, role))
            denied = r.status_code == 403
            if role in allowed and r.status_code in (401, 403):
                wrong.append(f"{method} {path} {role} → {r.status_code} {r.text[:120]}")
            elif role not in allowed and not (denied and r.json()["code"] == "forbidden"):
                wrong.append(f"{method} {path} {role} → {r.status_code}, want 403")
            elif role in allowed and body is not None and r.status_code != 422:
                wrong.append(f"{method} {path} {role} → {r.status_code}, want 422 "
                             "(past authorisation, stopped by the bogus body)")
    assert wrong == []


@pytest.mark.parametrize("header", [
    "Bearer whs_0123456789ab_" + "x" * 43,  # well formed, unknown
    "Bearer not-a-token",
    "Basic dXNlcjpwYXNz",
])
async def test_a_forged_token_gets_401(api, header):
    r = await api.get("/api/v1/cases", headers={"Authorization": header})
    assert r.status_code == 401
    assert r.json()["code"] in ("invalid_token", "not_authenticated")
    assert r.headers["www-authenticate"] == "Bearer"
