"""What every page shares: the Jinja2 environment per language, `render`, the signed-in
user from the session cookie, the permission checks of api/access.py, CSRF tokens and
form reading. See FOUNDATION.md."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl, quote
from zoneinfo import ZoneInfo

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import ValidationError
from sqlmodel import Session, select
from starlette.datastructures import FormData

from api.access import CASE_RULES, ROLES, Permission, record_denial
from api.deps import SessionDep, SettingsDep
from api.web.i18n import DEFAULT_LANG, LANGUAGES, N_, gettext, label, translations
from whistle import identity
from whistle.domain import Level, Role
from whistle.horizon import Horizon, calendar_horizon
from whistle.identity import Principal, TokenRejected
from whistle.models import CaseRecord, Category, Department, Jurisdiction
from whistle.policy import PolicyError
from whistle.settings import Settings, get_settings

TEMPLATES = Path(__file__).resolve().parent / "templates"
STATIC = Path(__file__).resolve().parent / "static"
LANG_COOKIE = "lang"
SESSION_COOKIE = "whistle_session"
PRE_COOKIE = "whistle_pre"  # seeds the login form's CSRF token before there is a session
CSRF_FIELD = "csrf_token"
TIME_FORMAT = "%Y-%m-%d %H:%M"


# --- templates ------------------------------------------------------------------------------


@lru_cache
def environment(lang: str) -> Environment:
    """One environment per language, its catalogue installed: `{{ _("…") }}`, `{% trans %}`
    and `gettext`/`ngettext` translate into `lang` (newstyle: `_("%(n)s", n=1)`)."""
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(
        default=True, default_for_string=True), extensions=["jinja2.ext.i18n"],
        trim_blocks=True, lstrip_blocks=True)
    env.install_gettext_translations(translations(lang), newstyle=True)  # type: ignore[attr-defined]
    env.globals["label"] = lambda kind, code: label(lang, kind, code)
    env.globals["lang"] = lang
    env.globals["local"] = local
    env.globals["clock"] = lambda due, now, warned=False: clock(lang, due, now, warned)
    from api.web.describe import event_details, ladder_step  # describe imports this module
    env.globals["details"] = lambda e, names, tz: event_details(lang, e.kind, e.data, names, tz)
    env.globals["ladder_step"] = lambda index, hours, working_days=None: ladder_step(
        lang, index, hours, working_days or None)
    return env


def render_template(lang: str, name: str, **context: Any) -> str:
    """The template `name` rendered in `lang` (what `render` sends; tests call it too)."""
    return environment(lang).get_template(name).render(**context)


def render(request: Request, name: str, status_code: int = 200, **context: Any
           ) -> HTMLResponse:
    """An HTML page in the user's language, with what base.html needs: the user, the
    navigation for their role, the CSRF token, the flash message."""
    lang = lang_of(request)
    who: Principal | None = getattr(request.state, "principal", None)
    settings = settings_of(request)
    context.setdefault("names", Names.empty())
    base = dict(who=who, nav=navigation(who), csrf_token=_Lazy(lambda: csrf_token(request)),
                flash=flash_of(request, lang), here=same_site(_here(request)),
                tz=settings.timezone, now=datetime.now(UTC), csrf_field=CSRF_FIELD)
    html = render_template(lang, name, **{**base, **context})
    # A page for a signed-in user holds case data: no cache keeps it.
    headers = {"Cache-Control": "no-store"} if who is not None else {}
    response = HTMLResponse(html, status_code=status_code, headers=headers)
    seed = getattr(request.state, "new_pre_seed", None)
    if seed is not None:
        response.set_cookie(PRE_COOKIE, seed, httponly=True, samesite="lax",
                            secure=settings.env == "production", path="/")
    return response


class _Lazy:
    """A template value computed when first shown: the CSRF token, so that a page without
    a form sets no pre-session cookie."""

    def __init__(self, make: Callable[[], str]) -> None:
        self.make, self.value = make, ""

    def __str__(self) -> str:
        self.value = self.value or self.make()
        return self.value

    __html__ = __str__


def navigation(who: Principal | None) -> list[tuple[str, str]]:
    """(path, msgid) of the links a role's navigation shows."""
    if who is None:
        return []
    links: list[tuple[str, str]] = []
    if who.role in ROLES[Permission.CASE_LIST]:
        links.append(("/cases", N_("Cases")))
    if who.role in ROLES[Permission.CASE_OPEN]:
        links.append(("/cases/new", N_("Open a case")))
    if who.role == Role.DEPARTMENT:
        links.append(("/inbox", N_("Inbox")))
    if who.role == Role.SUPERVISOR:
        links.append(("/escalated", N_("Escalated to me")))
    if who.role in (Role.COORDINATOR, Role.SUPERVISOR, Role.AUDITOR):
        links.append(("/dashboard", N_("Dashboard")))
    return links


# Flash messages: a redirect carries `?done=<key>`; only these keys show anything.
FLASHES: dict[str, str] = {
    "signed_in": N_("Signed in."), "signed_out": N_("Signed out."),
    "opened": N_("The case is open and the departments are summoned."),
    "pending": N_("The case is recorded and opens as soon as the case engine takes it."),
    "step": N_("Done: the step is on the case's record."),
}


def flash_of(request: Request, lang: str) -> str | None:
    msgid = FLASHES.get(request.query_params.get("done", ""))
    return gettext(lang, msgid) if msgid else None


# --- language ---------------------------------------------------------------------------------


def lang_of(request: Request) -> str:
    """The `lang` cookie if it names a catalogue, else zh-CN."""
    value = request.cookies.get(LANG_COOKIE, "")
    return value if value in LANGUAGES else DEFAULT_LANG


def same_site(target: str | None, default: str = "/") -> str:
    """`target` if it is a path on this site, else `default`: never an open redirect
    (no scheme, no `//host`, no backslash, no control characters)."""
    if not target or len(target) > 2000 or not target.startswith("/") \
            or target.startswith("//") or "\\" in target \
            or any(ord(c) < 32 or ord(c) == 127 for c in target):
        return default
    return target


def _here(request: Request) -> str:
    query = request.url.query
    return request.url.path + ("?" + query if query else "")


# --- who is signed in ---------------------------------------------------------------------------


class LoginRequired(Exception):
    """No valid session cookie: the page redirects to /login?next=…"""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def login_url(next_path: str) -> str:
    return "/login?next=" + quote(same_site(next_path), safe="/")


def session_principal(request: Request, session: Session, settings: Settings
                      ) -> Principal | None:
    """The user of the session cookie (a token from identity.issue_token), or None."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token or len(token) > 200:
        return None
    try:
        who = identity.authenticate(session, secret_key=settings.secret_key.get_secret_value(),
                                    token=token)
    except TokenRejected:
        return None
    request.state.principal = who
    return who


def signed_in(request: Request, session: SessionDep, settings: SettingsDep) -> Principal:
    """The signed-in user, kept on `request.state.principal` for `render`; raises
    LoginRequired (→ redirect to the sign-in page) otherwise."""
    who = session_principal(request, session, settings)
    if who is None:  # after signing in, come back here (a form's target only takes POSTs)
        raise LoginRequired(_here(request) if request.method in ("GET", "HEAD") else "/")
    return who


Viewer = Annotated[Principal, Depends(signed_in)]


def allow(request: Request, session: Session, who: Principal, permission: Permission,
          case: CaseRecord | None = None, department: str | None = None) -> None:
    """Raise the 403 (recorded for the auditors) unless `who` may do `permission` — the
    API's rules from api/access.py, on the case (and department) when given."""
    why = refusal(who, permission, case, department)
    if why is not None:
        raise record_denial(session, who, request, permission, why,
                            case.case_id if case is not None else None)


def refusal(who: Principal, permission: Permission, case: CaseRecord | None = None,
            department: str | None = None) -> str | None:
    """Why `who` may not do `permission` (None: they may). For showing only the actions
    that fit; nothing is recorded."""
    if who.role not in ROLES[permission]:
        return f"a {who.role} may not {permission}"
    rule = CASE_RULES.get(permission)
    if rule is None or case is None:
        return None
    extra = [department] if permission == Permission.SUMMONS_ACT else []
    return rule(who, case, *extra)


def may(who: Principal, permission: Permission, case: CaseRecord | None = None,
        department: str | None = None) -> bool:
    return refusal(who, permission, case, department) is None


# --- CSRF ----------------------------------------------------------------------------------------


class CsrfFailed(Exception):
    """A POST without the right CSRF token: 403."""


def settings_of(request: Request) -> Settings:
    """The app's settings (set at start-up; the process's own before that, e.g. an error
    page answered by an app whose lifespan has not run)."""
    settings: Settings | None = getattr(request.app.state, "settings", None)
    return settings or get_settings()


def _secret(request: Request) -> bytes:
    return settings_of(request).secret_key.get_secret_value().encode()


def csrf_token(request: Request) -> str:
    """HMAC(secret key, session id) for a signed-in user; before sign-in, HMAC of a random
    pre-session cookie (set with the page that shows the form)."""
    who: Principal | None = getattr(request.state, "principal", None)
    if who is not None and who.token_id is not None:
        seed = "session:" + who.token_id
    else:
        pre = request.cookies.get(PRE_COOKIE) or getattr(request.state, "new_pre_seed", None)
        if not pre or len(pre) > 100:
            pre = secrets.token_urlsafe(24)
            request.state.new_pre_seed = pre
        seed = "pre:" + pre
    return hmac.new(_secret(request), seed.encode(), hashlib.sha256).hexdigest()


def check_csrf(request: Request, form: FormData) -> None:
    """Refuse the POST unless its form carries the token of this session (or pre-session)."""
    sent = form.get(CSRF_FIELD)
    has_seed = getattr(request.state, "principal", None) is not None \
        or bool(request.cookies.get(PRE_COOKIE))
    if not has_seed or not isinstance(sent, str) or \
            not hmac.compare_digest(sent, csrf_token(request)):
        raise CsrfFailed()


# --- forms -------------------------------------------------------------------------------------


class BadForm(Exception):
    """The body is not a readable url-encoded form: 400."""


MAX_FIELDS = 300


async def read_form(request: Request) -> FormData:
    """The url-encoded form of a POST (the pages post no files). Text holding NUL, which
    PostgreSQL cannot store, is refused like the API refuses it."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise BadForm()
    try:
        pairs = parse_qsl((await request.body()).decode("utf-8"), keep_blank_values=True,
                          max_num_fields=MAX_FIELDS)
    except (UnicodeDecodeError, ValueError) as e:
        raise BadForm() from e
    if any("\x00" in k or "\x00" in v for k, v in pairs):
        raise BadForm()
    return FormData(pairs)


async def posted(request: Request) -> FormData:
    """The form of a POST, CSRF-checked."""
    form = await read_form(request)
    check_csrf(request, form)
    return form


def text(form: FormData, name: str) -> str | None:
    """A text field, stripped; None when empty or absent."""
    value = form.get(name)
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value or None


# pydantic error types → msgids shown next to the field.
_FIELD_MESSAGES = {
    "missing": N_("This field is required."),
    "string_too_short": N_("This field is required."),
    "string_too_long": N_("This is too long."),
    "too_long": N_("Too many entries."),
    "too_short": N_("Choose at least one."),
    "enum": N_("Choose one of the options."),
    "literal_error": N_("Choose one of the options."),
    "bool_parsing": N_("Choose one of the options."),
    "timezone_aware": N_("Enter a date and time."),
    "datetime_from_date_parsing": N_("Enter a date and time."),
    "datetime_parsing": N_("Enter a date and time."),
    "datetime_type": N_("Enter a date and time."),
}


def field_errors(lang: str, error: ValidationError) -> dict[str, str]:
    """A pydantic error as {field: message in `lang`}, the first message per field."""
    found: dict[str, str] = {}
    for err in error.errors():
        name = str(err["loc"][0]) if err["loc"] else "form"
        msgid = _FIELD_MESSAGES.get(err["type"], N_("This value is not valid."))
        found.setdefault(name, gettext(lang, msgid))
    return found


# --- reference names, times ---------------------------------------------------------------


class Names:
    """Display names of departments, places and categories in one language (reference
    data is small: loaded per request)."""

    def __init__(self, departments: dict[str, str], places: dict[str, str],
                 categories: dict[str, str]) -> None:
        self.departments, self.places, self.categories = departments, places, categories

    @classmethod
    def empty(cls) -> Names:
        return cls({}, {}, {})

    @classmethod
    def load(cls, session: Session, lang: str) -> Names:
        attr = "name_zh" if lang == "zh-CN" else "name_en"
        return cls(
            {d.code: getattr(d, attr) for d in session.exec(select(Department))},
            {j.code: getattr(j, attr) for j in session.exec(select(Jurisdiction))},
            {c.code: getattr(c, attr) for c in session.exec(select(Category))},
        )

    def department(self, code: str | None) -> str:
        return self.departments.get(code or "", code or "")

    def place(self, code: str | None) -> str:
        return self.places.get(code or "", code or "")

    def category(self, code: str | None) -> str:
        return self.categories.get(code or "", code or "")


def local(value: datetime | None, tz: str) -> str:
    """A time as the user reads it, in the deployment's zone."""
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(ZoneInfo(tz)).strftime(TIME_FORMAT)


def span(lang: str, seconds: float) -> str:
    """A duration as days/hours/minutes in `lang` (the largest two units)."""
    minutes = int(abs(seconds) // 60)
    days, hours, mins = minutes // 1440, minutes % 1440 // 60, minutes % 60
    if days:
        return gettext(lang, "%(days)sd %(hours)sh", days=days, hours=hours)
    if hours:
        return gettext(lang, "%(hours)sh %(minutes)smin", hours=hours, minutes=mins)
    if mins == 0:
        return gettext(lang, "under a minute")
    return gettext(lang, "%(minutes)smin", minutes=mins)


SOON_SECONDS = 24 * 3600  # "about to be overdue": under a day left


def clock(lang: str, due: datetime | None, now: datetime, warned: bool = False
          ) -> dict[str, str]:
    """How a deadline stands now: {"text", "state"} with state overdue / soon / ok. Soon:
    under a day left, or the case engine gave its early warning (临期预警, at the policy's
    share of the clock) for this deadline (`warned`)."""
    if due is None:
        return {"text": "", "state": ""}
    if due.tzinfo is None:
        due = due.replace(tzinfo=UTC)
    left = (due - now).total_seconds()
    if left < 0:
        return {"text": gettext(lang, "overdue by %(span)s", span=span(lang, left)),
                "state": "overdue"}
    return {"text": gettext(lang, "%(span)s left", span=span(lang, left)),
            "state": "soon" if left < SOON_SECONDS or warned else "ok"}


def calendar_warning(request: Request, who: Principal) -> Horizon | None:
    """How far the official holiday arrangement reaches (whistle/horizon.py, on the API's
    policy, as GET /api/v1/health), when that is too short, for those who can have it
    extended: admins and the city level. None otherwise."""
    if who.role != Role.ADMIN and who.level != Level.CITY:
        return None
    try:
        policy = request.app.state.live_policy.last_good()
    except PolicyError:
        return None  # no usable policy ever: nothing planned on any calendar yet
    horizon = calendar_horizon(policy, datetime.now(UTC), settings_of(request).timezone)
    return horizon if horizon.short else None


CASE_ID = re.compile(r"^[0-9a-f]{16}$")
CODE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
