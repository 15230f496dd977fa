"""The browser tests (marker `e2e`): the real stack — a Temporal dev server, `python
worker.py` and the API under uvicorn, each a child process on a free port, stopped by its
PID — with the demo users (`whistle seed-demo`) and a policy whose `land` clock is short,
driven through the pages by Debian's headless Chromium (`/usr/bin/chromium`, launched by
Playwright's Python package; `playwright install` is never used).

Every request for a host other than 127.0.0.1 is aborted and fails the test, as do console
errors, page errors, failed requests and answers of 400 or more. Screenshots of every page
go to `tests/e2e/artifacts/<run>/` (gitignored); the path is printed at the end of the run.
Without Chromium or Playwright the tests skip, saying why (`make browser` installs Chromium).
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.conftest import prepare_read_model
from tests.faults.conftest import ApiProcess, DevServer, Procs, Workers, connect
from whistle.settings import DATA_DIR, Settings

CHROMIUM = Path(os.environ.get("WHISTLE_E2E_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--lang=zh-CN", "--no-sandbox", "--disable-gpu",
                 "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
LOCAL_HOST = "127.0.0.1"
DEMO_PASSWORD = "whistle-demo-2026"

# The short clock: a `land` summons must report in within REPORT_IN_SECONDS; a missed one
# is reminded at once (催办) and its supervisor notified SUPERVISOR_AFTER_SECONDS later (督办).
SHORT_CATEGORY = "land"
REPORT_IN_SECONDS = 90  # room for two departments to sign in and report in on a slow machine
SUPERVISOR_AFTER_SECONDS = 5


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if not CHROMIUM.exists():
        return (f"{CHROMIUM} is missing: run `make browser` as root "
                "(apt-get install -y chromium chromium-driver)")
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is missing: .venv/bin/pip install -e '.[dev]'"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).resolve().parent
    why = browser_missing()
    for item in items:
        if here in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.e2e)
            if why:
                item.add_marker(pytest.mark.skip(reason=why))


# --- screenshots ------------------------------------------------------------------------------

_run_dir: list[Path] = []


def artifact_dir() -> Path:
    """This run's screenshot folder, made on first use."""
    if not _run_dir:
        path = ARTIFACTS / time.strftime("%Y%m%d-%H%M%S")
        path.mkdir(parents=True, exist_ok=True)
        _run_dir.append(path)
    return _run_dir[0]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _run_dir:
        shots = sorted(_run_dir[0].glob("*.png"))
        terminalreporter.write_line(
            f"e2e screenshots ({len(shots)}): {_run_dir[0]}")


# --- the stack --------------------------------------------------------------------------------


def short_clock_policy(path: Path) -> Path:
    """The sample policy with SHORT_CATEGORY's report-in clock cut to seconds and a ladder
    of 催办 then 督办 (no 提级, so the town's coordinator keeps the case)."""
    doc = yaml.safe_load((DATA_DIR / "policy.yaml").read_text(encoding="utf-8"))
    doc["version"] = f"{doc['version']}+e2e"
    doc["categories"][SHORT_CATEGORY].update(
        report_in_hours=REPORT_IN_SECONDS / 3600,
        ladder=[{"action": "remind", "after_hours": 0},
                {"action": "notify_supervisor", "after_hours": SUPERVISOR_AFTER_SECONDS / 3600}])
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


@dataclass
class Stack:
    base_url: str
    settings: Settings
    procs: Procs


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """Temporal dev server + worker + API as child processes on free ports, a fresh SQLite
    read model with the sample reference data and the demo users."""
    root = tmp_path_factory.mktemp("e2e")
    url = f"sqlite:///{root / 'whistle.db'}"
    prepare_read_model(url)
    settings = Settings(env="test", database_url=url,
                        policy_file=short_clock_policy(root / "policy.yaml"),
                        task_queue=f"e2e-{uuid.uuid4().hex[:12]}")
    seeded = subprocess.run(
        [str(Path(sys.executable).parent / "whistle"), "seed-demo"],
        env={**os.environ, "WHISTLE_ENV": "development", "WHISTLE_DATABASE_URL": url},
        capture_output=True, text=True, timeout=120)
    assert seeded.returncode == 0, seeded.stdout + seeded.stderr
    procs = Procs(root / "logs")
    ok = False
    try:
        server = DevServer(procs, root / "temporal.db")
        await server.start()
        client = await connect(server.address)
        await Workers(procs, settings, server.address).start(client)
        api = ApiProcess(procs, settings, server.address)
        await api.start()
        print(f"\ne2e stack: {api.base_url} (logs {procs.log_dir}); pids "
              + ", ".join(f"{c.name}={c.pid}" for c in procs.children))
        yield Stack(api.base_url, settings, procs)
        ok = True
    finally:
        procs.stop_all()
        if not ok:
            for child in procs.children:
                print(f"\n--- {child.name} (pid {child.pid}) log tail ---\n{child.tail()}")


# --- the browser ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def chromium() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                           args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


@dataclass
class Guard:
    """What went wrong in one user's browser: anything here fails the test."""

    blocked: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    bad_status: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        return [f"request left {LOCAL_HOST}: {u}" for u in self.blocked] + \
            [f"console error: {m}" for m in self.console] + \
            [f"page error: {m}" for m in self.page_errors] + \
            [f"request failed: {m}" for m in self.failed] + \
            [f"answer >= 400: {m}" for m in self.bad_status]

    def assert_clean(self, who: str) -> None:
        problems = self.problems()
        assert not problems, f"{who}'s browser:\n" + "\n".join(problems)


class User:
    """One person's browser: a context of its own (cookies, language), one page, a guard,
    and screenshots named after the step."""

    def __init__(self, name: str, context: Any, page: Any, base_url: str, guard: Guard,
                 shoot: Callable[[Any, str], Awaitable[Path]]) -> None:
        self.name, self.context, self.page = name, context, page
        self.base_url, self.guard, self._shoot = base_url, guard, shoot

    async def goto(self, path: str) -> Any:
        response = await self.page.goto(self.base_url + path)
        assert response is not None
        return response

    async def shot(self, step: str) -> Path:
        return await self._shoot(self.page, f"{self.name}-{step}")

    async def sign_in(self, username: str, password: str = DEMO_PASSWORD) -> None:
        await self.goto("/login")
        await self.shot("login")
        await self.page.fill("#username", username)
        await self.page.fill("#password", password)
        await self.page.click("form[action='/login'] button[type=submit]")
        await self.page.wait_for_load_state()
        assert "/login" not in self.page.url, f"{username} could not sign in"

    async def text(self, selector: str = "main") -> str:
        return str(await self.page.inner_text(selector))

    def path(self) -> str:
        parts = urlsplit(self.page.url)
        return parts.path


@pytest.fixture
async def open_browser(chromium: Any, stack: Stack
                       ) -> AsyncIterator[Callable[[str], Awaitable[User]]]:
    """`await open_browser("coord")`: a new user's browser on the stack, guarded."""
    counter = [0]
    made: list[User] = []

    async def shoot(page: Any, name: str) -> Path:
        counter[0] += 1
        path = artifact_dir() / f"{counter[0]:02d}-{re.sub(r'[^A-Za-z0-9_.-]', '-', name)}.png"
        await page.screenshot(path=str(path), full_page=True)
        return path

    async def make(name: str) -> User:
        guard = Guard()
        context = await chromium.new_context(locale="zh-CN", viewport={"width": 1280,
                                                                       "height": 900})

        async def only_local(route: Any) -> None:
            if urlsplit(route.request.url).hostname == LOCAL_HOST:
                await route.continue_()
            else:
                guard.blocked.append(route.request.url)
                await route.abort()

        await context.route("**/*", only_local)
        page = await context.new_page()
        page.on("console", lambda m: guard.console.append(f"{m.text} @ {m.location}")
                if m.type == "error" else None)
        page.on("pageerror", lambda e: guard.page_errors.append(str(e)))
        page.on("requestfailed", lambda r: guard.failed.append(f"{r.url}: {r.failure}"))
        page.on("response", lambda r: guard.bad_status.append(f"{r.status} {r.url}")
                if r.status >= 400 else None)
        user = User(name, context, page, stack.base_url, guard, shoot)
        made.append(user)
        return user

    yield make
    for user in made:
        await user.context.close()
    for user in made:
        user.guard.assert_clean(user.name)
