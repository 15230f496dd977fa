"""Signing in and out of the pages, and the language switch. The session cookie holds a
sign-in token from whistle.identity, the same kind POST /api/v1/auth/token issues."""

from __future__ import annotations

import logging
from datetime import timedelta
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from api.deps import SessionDep, SettingsDep
from api.web.core import (
    LANG_COOKIE,
    SESSION_COOKIE,
    Viewer,
    calendar_warning,
    lang_of,
    posted,
    render,
    same_site,
    session_principal,
    text,
)
from api.web.i18n import LANGUAGES, gettext
from whistle import identity
from whistle.domain import Role
from whistle.identity import AccountLocked, TokenKind

log = logging.getLogger("whistle.web")
router = APIRouter(include_in_schema=False)

# Where a role starts.
HOME = {Role.COORDINATOR: "/cases", Role.GRID_WORKER: "/cases", Role.SUPERVISOR: "/escalated",
        Role.DEPARTMENT: "/inbox", Role.AUDITOR: "/cases"}


@router.get("/")
def home(request: Request, who: Viewer) -> Response:
    """The start page of the user's role (an admin's, without case pages, warns when the
    official holiday calendar runs out soon)."""
    if who.role in HOME:
        return RedirectResponse(HOME[who.role], status_code=303)
    return render(request, "home.html", horizon=calendar_warning(request, who))


@router.get("/login")
def login_page(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    """The sign-in form (a signed-in user goes on to `next`)."""
    next_path = same_site(request.query_params.get("next"))
    if session_principal(request, session, settings) is not None:
        return RedirectResponse(next_path, status_code=303)
    return render(request, "login.html", next=next_path, username="", errors={})


@router.post("/login")
async def login(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    """Check the password (with the lockout of whistle.identity) and set the session
    cookie: HttpOnly, SameSite=Lax, Secure in production."""
    form = await posted(request)
    lang = lang_of(request)
    username, password = (text(form, "username") or "")[:64], form.get("password")
    next_path = same_site(text(form, "next"))
    errors: dict[str, str] = {}
    if not username:
        errors["username"] = gettext(lang, "This field is required.")
    if not isinstance(password, str) or not password or len(password) > 128:
        errors["password"] = gettext(lang, "This field is required.")
    if not errors:
        try:
            user = identity.verify_password(session, username, str(password))
        except AccountLocked as e:
            until = e.until.astimezone(ZoneInfo(settings.timezone)).strftime("%H:%M")
            errors["form"] = gettext(lang, "Too many wrong passwords: try again after "
                                           "%(time)s, or ask an admin to reset the password.",
                                     time=until)
            user = None
        else:
            if user is None:
                log.warning("failed page sign-in for %r", username)
                errors["form"] = gettext(lang, "Wrong user name or password.")
    if errors:
        return render(request, "login.html", status_code=401 if "form" in errors else 422,
                      next=next_path, username=username, errors=errors)
    assert user is not None
    token, _ = identity.issue_token(
        session, secret_key=settings.secret_key.get_secret_value(), username=user.username,
        kind=TokenKind.SESSION, name="page sign-in",
        ttl=timedelta(hours=settings.session_hours))
    session.commit()
    target = next_path if next_path != "/" else "/?done=signed_in"
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(SESSION_COOKIE, token, max_age=int(settings.session_hours * 3600),
                        httponly=True, samesite="lax", secure=settings.env == "production",
                        path="/")
    return response


@router.post("/logout")
async def logout(request: Request, session: SessionDep, who: Viewer) -> Response:
    """End this sign-in: the token is revoked, the cookie removed."""
    await posted(request)
    if who.token_id is not None:
        identity.revoke(session, who.token_id)
        session.commit()
    response = RedirectResponse("/login?done=signed_out", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/lang/{lang}")
def switch_language(request: Request, lang: str) -> Response:
    """Set the `lang` cookie and go back to `next` (a path on this site only). Changes
    nothing else, so a GET is safe."""
    response = RedirectResponse(same_site(request.query_params.get("next")), status_code=303)
    if lang in LANGUAGES:
        response.set_cookie(LANG_COOKIE, lang, max_age=365 * 24 * 3600, samesite="lax",
                            path="/")
    return response
