"""Server-rendered pages (Jinja2), Chinese first. `install(app)` mounts them at `/`, the
vendored static files at `/static`, and makes errors on page paths answer as HTML pages in
the user's language (paths under /api/ keep their JSON errors). See FOUNDATION.md."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlmodel import Session
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.service import RPCError

from api.errors import ApiError
from api.web import auth, case_page, cases, dashboard, work
from api.web.core import (
    STATIC,
    BadForm,
    CsrfFailed,
    LoginRequired,
    Names,
    lang_of,
    login_url,
    render,
)
from api.web.describe import refusal_text
from api.web.i18n import N_

log = logging.getLogger("whistle.web")

# Every page route. Another module adds its router here (e.g. the dashboard).
router = APIRouter(include_in_schema=False)
for module in (auth, cases, case_page, work, dashboard):  # /cases/new before /cases/{case_id}
    router.include_router(module.router)

Handler = Callable[[Request, Any], Awaitable[Response]]


NOT_PAGES = frozenset({"/openapi.json", "/redoc", "/metrics"})


def is_page(request: Request) -> bool:
    """Requests whose errors answer as HTML: everything outside the JSON API."""
    path = request.url.path
    return not (path.startswith(("/api/", "/docs")) or path in NOT_PAGES)


def error_page(request: Request, status: int, title: str, detail: str | None = None
               ) -> Response:
    return render(request, "error.html", status_code=status, title=title, detail=detail)


def _page_error(request: Request, e: Exception) -> Response:
    if isinstance(e, LoginRequired):
        return RedirectResponse(login_url(e.next_path), status_code=303)
    if isinstance(e, CsrfFailed):
        return error_page(request, 403, N_("The form expired or was not sent from this "
                                           "site. Go back, reload the page and try again."))
    if isinstance(e, BadForm):
        return error_page(request, 400, N_("The form could not be read."))
    if isinstance(e, ApiError):
        titles = {403: N_("You may not do this."), 404: N_("Not found."),
                  503: N_("The service is unavailable; try again shortly."),
                  504: N_("The case engine did not answer in time; check the case before "
                          "repeating the step.")}
        return error_page(request, e.status, titles.get(e.status, N_("The request failed.")),
                          refusal_text(lang_of(request), e.status, e.code, e.message,
                                       _names(request)))
    if isinstance(e, StarletteHTTPException):
        return error_page(request, e.status_code, N_("Not found.") if e.status_code == 404
                          else N_("The request failed."))
    if isinstance(e, RequestValidationError):
        return error_page(request, 404, N_("Not found."))
    if isinstance(e, RPCError | DBAPIError | PoolTimeout):
        log.warning("page unavailable: %s", e)
        return error_page(request, 503, N_("The service is unavailable; try again shortly."))
    raise e


def _names(request: Request) -> Names:
    """Department and place names for a refusal's detail line; none if the read model
    cannot be read (the page then shows codes)."""
    engine = getattr(request.app.state, "engine", None)
    if engine is None:
        return Names.empty()
    try:
        with Session(engine) as session:
            return Names.load(session, lang_of(request))
    except (DBAPIError, PoolTimeout):
        return Names.empty()


def install(app: FastAPI) -> None:
    """Mount the pages and static files on `app`, and answer page errors with HTML."""
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(router)
    for kind in (LoginRequired, CsrfFailed, BadForm):
        app.add_exception_handler(kind, _page_error)  # type: ignore[arg-type]
    for kind in (ApiError, StarletteHTTPException, RequestValidationError, RPCError,
                 DBAPIError, PoolTimeout):
        original: Handler | None = app.exception_handlers.get(kind)
        app.add_exception_handler(kind, _pages_first(original))


def _pages_first(original: Handler | None) -> Handler:
    async def handle(request: Request, e: Any) -> Response:
        if is_page(request) or original is None:
            # A driver error that is not an outage (integrity, bad SQL) goes on to the
            # API's catch-all 500, as for /api.
            if isinstance(e, DBAPIError) and original is not None and \
                    not (isinstance(e, OperationalError) or e.connection_invalidated):
                raise e
            return _page_error(request, e)
        return await original(request, e)
    return handle
