"""Errors as JSON with a stable `code` and a human `message`; never a bare 500 for input."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.service import RPCError

log = logging.getLogger("whistle.api")


# A request can fail on the database after its step or intake reached the case engine, so
# the message does not claim nothing was recorded; it says why repeating is safe.
DATABASE_UNAVAILABLE = ("the case database is unavailable; try again shortly (a repeated step "
                        "that already happened is refused and a repeated intake with the same "
                        "external_ref finds its case: nothing is doubled)")


class ApiError(Exception):
    """An error the API answers with: HTTP status, stable code, message, optional field."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field
        self.headers = headers


def not_found(what: str, key: str) -> ApiError:
    return ApiError(404, f"{what}_not_found", f"no {what} {key!r}")


def invalid(field: str, message: str) -> ApiError:
    return ApiError(422, "invalid_input", f"{field}: {message}", field)


def _body(code: str, message: str, **extra: object) -> dict[str, object]:
    return {"code": code, "message": message, **{k: v for k, v in extra.items() if v}}


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into the JSON shape."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, e: ApiError) -> JSONResponse:
        return JSONResponse(_body(e.code, e.message, field=e.field), status_code=e.status,
                            headers=e.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, e: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": ".".join(str(p) for p in err["loc"] if p != "body"), "message": err["msg"]}
            for err in e.errors()
        ]
        first = errors[0] if errors else {"field": "", "message": "invalid request"}
        message = f"{first['field']}: {first['message']}" if first["field"] else first["message"]
        return JSONResponse(
            _body("invalid_input", message, field=first["field"], errors=errors),
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, e: StarletteHTTPException) -> JSONResponse:
        code = {400: "invalid_body", 404: "not_found", 405: "method_not_allowed",
                413: "body_too_large"}.get(
            e.status_code, "http_error"
        )
        return JSONResponse(_body(code, str(e.detail)), status_code=e.status_code,
                            headers=e.headers)  # e.g. Allow on 405

    @app.exception_handler(RPCError)
    async def _engine_unavailable(_: Request, e: RPCError) -> JSONResponse:
        log.warning("temporal: %s", e)
        # Reads and intakes end here: an intake may have started its case before the
        # connection dropped, and a repeat with the same external_ref finds that case.
        return JSONResponse(_body("engine_unavailable",
                                  "the case engine is unavailable; try again shortly (an "
                                  "intake repeated with the same external_ref never opens "
                                  "a second case)"), status_code=503)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, e: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return JSONResponse(_body("internal_error", "internal error; it was logged"),
                            status_code=500)

    # The read model cannot be reached (connection refused or lost, SQLite "database is
    # locked" after the busy timeout, no pooled connection free in time): 503, which a
    # client may retry, not a 500. Other driver errors (integrity, bad SQL) stay 500s.
    @app.exception_handler(DBAPIError)
    @app.exception_handler(PoolTimeout)
    async def _database_unavailable(_: Request, e: Exception) -> JSONResponse:
        if isinstance(e, DBAPIError) and not (isinstance(e, OperationalError)
                                              or e.connection_invalidated):
            raise e  # not an outage: the catch-all above answers 500
        log.warning("database: %s", e)
        return JSONResponse(_body("database_unavailable", DATABASE_UNAVAILABLE),
                            status_code=503)
