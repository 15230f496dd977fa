"""Channel administration through the API: a webhook's key is shown once, owners and
targets are checked, a key can be rotated, a channel switched off or removed, and its
deliveries listed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
from sqlmodel import Session

from tests.helpers import TestUsers
from whistle.db import make_engine
from whistle.models import NotificationDelivery
from whistle.settings import Settings

URL = "/api/v1/channels"


async def test_channels_are_managed_by_admins_with_the_secret_shown_once(
        api: httpx.AsyncClient, settings: Settings, users: TestUsers):
    admin = users.headers("admin", "admin", "huizhou")

    async def call(method: str, url: str, **kw: Any) -> httpx.Response:
        return await api.request(method, url, headers=admin, **kw)

    made = await call("POST", URL, json={"owner": "department:xjk-petition",
                                         "kind": "webhook",
                                         "target": "https://ops.example.org/whistle"})
    assert made.status_code == 201, made.text
    hook = made.json()
    assert hook["secret"].startswith("whsec_") and hook["has_secret"]
    cid = hook["id"]
    shown = (await call("GET", f"{URL}/{cid}")).json()
    assert "secret" not in shown and shown["has_secret"]
    assert all("secret" not in c for c in (await call("GET", URL)).json())
    rotated = (await call("PATCH", f"{URL}/{cid}", json={"rotate_secret": True})).json()
    assert rotated["secret"] not in (None, hook["secret"])
    off = (await call("PATCH", f"{URL}/{cid}", json={"active": False})).json()
    assert off["active"] is False and off["secret"] is None

    mail = await call("POST", URL, json={"owner": "user:admin", "kind": "email",
                                         "target": "duty@xjk.example.org"})
    assert mail.status_code == 201 and mail.json()["secret"] is None
    listed = await call("GET", URL, params={"owner": "user:admin"})
    assert [c["kind"] for c in listed.json()] == ["email"]

    for body, field in [
        ({"owner": "department:nowhere", "kind": "log"}, "owner"),
        ({"owner": "centre:xiaojinkou", "kind": "webhook", "target": "ftp://x"}, "target"),
        ({"owner": "centre:xiaojinkou", "kind": "email", "target": "not-an-address"},
         "target"),
    ]:
        r = await call("POST", URL, json=body)
        assert r.status_code == 422 and r.json()["field"] == field, r.text
    r = await call("PATCH", f"{URL}/{mail.json()['id']}", json={"rotate_secret": True})
    assert r.status_code == 422

    engine = make_engine(settings.database_url)
    with Session(engine) as s:
        s.add(NotificationDelivery(idempotency_key="k" * 40, channel_id=cid, message_id=1,
                                   status="failed", attempts=10, last_error="HTTP 500",
                                   created_at=datetime.now(UTC)))
        s.commit()
    engine.dispose()
    got = (await call("GET", f"{URL}/{cid}/deliveries", params={"status": "failed"})).json()
    assert [(d["attempts"], d["last_error"]) for d in got] == [(10, "HTTP 500")]
    assert (await call("DELETE", f"{URL}/{cid}")).status_code == 204
    assert (await call("GET", f"{URL}/{cid}")).status_code == 404
    coord = users.headers("c.coord", "coordinator", "xiaojinkou")
    assert (await api.get(URL, headers=coord)).status_code == 403
