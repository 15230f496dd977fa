"""Fixtures for the pages: the app with its own read model (SQLite, then PostgreSQL), and
browsers-in-miniature — httpx clients that keep cookies — signed in as a given user."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.engine import Engine
from sqlmodel import Session
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from api.web.core import SESSION_COOKIE
from whistle import identity
from whistle.db import make_engine
from whistle.models import AppUser
from whistle.settings import Settings
from worker import build_worker

BASE = "http://whistle"
CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')
PASSWORD = "correct-horse-battery"


def csrf_of(html: str) -> str:
    """The CSRF token of the (first) form on a page."""
    m = CSRF.search(html)
    assert m, "no CSRF field on the page"
    return m.group(1)


class Site:
    """The app and helpers to make users and signed-in clients."""

    def __init__(self, app: FastAPI, settings: Settings, engine: Engine) -> None:
        self.app, self.settings, self.engine = app, settings, engine
        self.clients: list[httpx.AsyncClient] = []

    def user(self, username: str, role: str, jurisdiction: str = "",
             department: str | None = None, password: str | None = None) -> None:
        with Session(self.engine) as session:
            if session.get(AppUser, username) is None:
                identity.create_user(session, username=username, display_name=username,
                                     role=role, jurisdiction=jurisdiction,
                                     department=department, password=password)
                session.commit()

    def browser(self, lang: str | None = None) -> httpx.AsyncClient:
        """A client with a cookie jar, signed in as nobody."""
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url=BASE)
        if lang:
            client.cookies.set("lang", lang)
        self.clients.append(client)
        return client

    def signed_in(self, username: str, role: str, jurisdiction: str = "",
                  department: str | None = None, lang: str | None = None
                  ) -> httpx.AsyncClient:
        """A client whose session cookie is a fresh sign-in token of `username` (made
        directly, skipping the password hash; test_login_* sign in through the form)."""
        self.user(username, role, jurisdiction, department)
        with Session(self.engine) as session:
            token, _ = identity.issue_token(
                session, secret_key=self.settings.secret_key.get_secret_value(),
                username=username, kind=identity.TokenKind.SESSION, name="test",
                ttl=timedelta(hours=1))
            session.commit()
        client = self.browser(lang)
        client.cookies.set(SESSION_COOKIE, token)
        return client

    async def post_form(self, client: httpx.AsyncClient, page: str, action: str,
                        data: dict[str, Any]) -> httpx.Response:
        """GET `page`, take its CSRF token, POST `data` to `action` (no redirects)."""
        r = await client.get(page)
        assert r.status_code == 200, r.text
        return await client.post(action, data={"csrf_token": csrf_of(r.text), **data})

    async def close(self) -> None:
        for client in self.clients:
            await client.aclose()


@pytest.fixture
async def site(settings: Settings) -> AsyncIterator[Site]:
    """The app without a case engine (pages that never reach Temporal)."""
    app = create_app(settings, client=object())  # type: ignore[arg-type]
    engine = make_engine(settings.database_url)
    async with app.router.lifespan_context(app):
        made = Site(app, settings, engine)
        yield made
        await made.close()
    engine.dispose()


@asynccontextmanager
async def running_site(env: WorkflowEnvironment, settings: Settings) -> AsyncIterator[Site]:
    """The app on `env`'s Temporal server with a worker on the settings' task queue."""
    app = create_app(settings, client=env.client)
    engine = make_engine(settings.database_url)
    with ThreadPoolExecutor(max_workers=8) as executor:
        async with (build_worker(env.client, settings, executor, engine),
                    app.router.lifespan_context(app)):
            made = Site(app, settings, engine)
            yield made
            await made.close()
    engine.dispose()


@pytest.fixture
async def web(dev_env: WorkflowEnvironment, settings: Settings) -> AsyncIterator[Site]:
    """The app on the dev Temporal server with a worker on the test's task queue."""
    async with running_site(dev_env, settings) as made:
        yield made
