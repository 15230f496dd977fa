"""Pages that need no case engine: sign-in and out, CSRF, the language switch, redirects,
headers, static files."""

from __future__ import annotations

from sqlmodel import Session, select

from api.main import CSP
from tests.web.conftest import PASSWORD, Site, csrf_of
from whistle.models import ApiToken


async def test_a_page_redirects_an_anonymous_user_to_sign_in_with_next(site: Site) -> None:
    r = await site.browser().get("/cases?status=open")
    assert r.status_code == 303
    assert r.headers["location"] == "/login?next=/cases%3Fstatus%3Dopen"


async def test_sign_in_page_is_chinese_by_default_and_english_after_the_switch(
        site: Site) -> None:
    browser = site.browser()
    r = await browser.get("/login")
    assert r.status_code == 200
    assert '<html lang="zh-CN">' in r.text and "用户名" in r.text and "User name" not in r.text
    r = await browser.get("/lang/en?next=/login")
    assert r.status_code == 303 and r.headers["location"] == "/login"
    r = await browser.get("/login")
    assert '<html lang="en">' in r.text and "User name" in r.text and "用户名" not in r.text


async def test_language_switch_never_redirects_off_site(site: Site) -> None:
    browser = site.browser()
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example", "evil",
                   "/ok\r\nSet-Cookie: x=1"):
        r = await browser.get("/lang/en", params={"next": target})
        assert r.status_code == 303 and r.headers["location"] == "/", target
    r = await browser.get("/lang/xx?next=/cases")  # unknown language: cookie unchanged
    assert r.headers["location"] == "/cases" and "set-cookie" not in r.headers


async def test_sign_in_through_the_form_sets_a_safe_cookie_and_sign_out_revokes_it(
        site: Site) -> None:
    site.user("coord", "coordinator", "xiaojinkou", password=PASSWORD)
    browser = site.browser()
    r = await site.post_form(browser, "/login?next=/cases", "/login",
                             {"username": "coord", "password": PASSWORD, "next": "/cases"})
    assert r.status_code == 303 and r.headers["location"] == "/cases"
    cookie = r.headers["set-cookie"]
    assert "whistle_session=whs_" in cookie and "HttpOnly" in cookie
    assert "SameSite=lax" in cookie and "Secure" not in cookie  # Secure in production only
    r = await browser.get("/cases")
    assert r.status_code == 200 and "coord" in r.text
    assert r.headers["cache-control"] == "no-store"
    r = await site.post_form(browser, "/cases", "/logout", {})
    assert r.status_code == 303
    with Session(site.engine) as session:
        [token] = session.exec(select(ApiToken).where(ApiToken.username == "coord")).all()
        assert token.revoked_at is not None
    browser.cookies.set("whistle_session", cookie.split(";")[0].split("=", 1)[1])
    r = await browser.get("/cases")  # the old cookie no longer signs anyone in
    assert r.status_code == 303 and r.headers["location"].startswith("/login")


async def test_wrong_password_is_shown_on_the_form_in_the_users_language(site: Site) -> None:
    site.user("coord", "coordinator", "xiaojinkou", password=PASSWORD)
    r = await site.post_form(site.browser(), "/login", "/login",
                             {"username": "coord", "password": "wrong-password!"})
    assert r.status_code == 401
    assert "用户名或密码错误" in r.text and 'value="coord"' in r.text
    r = await site.post_form(site.browser("en"), "/login", "/login",
                             {"username": "", "password": ""})
    assert r.status_code == 422 and "This field is required." in r.text


async def test_sign_in_never_redirects_off_site(site: Site) -> None:
    site.user("coord", "coordinator", "xiaojinkou", password=PASSWORD)
    r = await site.post_form(site.browser(), "/login", "/login",
                             {"username": "coord", "password": PASSWORD,
                              "next": "//evil.example/"})
    assert r.status_code == 303 and r.headers["location"] == "/?done=signed_in"


async def test_a_post_without_the_csrf_token_is_refused_in_the_users_language(
        site: Site) -> None:
    site.user("coord", "coordinator", "xiaojinkou", password=PASSWORD)
    browser = site.browser()
    await browser.get("/login")
    r = await browser.post("/login", data={"username": "coord", "password": PASSWORD})
    assert r.status_code == 403 and "表单已过期" in r.text
    assert "set-cookie" not in r.headers or "whistle_session" not in r.headers["set-cookie"]
    signed = site.signed_in("coord2", "coordinator", "xiaojinkou", lang="en")
    page = await signed.get("/cases")
    r = await signed.post("/logout", data={"csrf_token": "0" * 64})
    assert r.status_code == 403 and "The form expired" in r.text
    # a token from another session does not pass either
    other = site.signed_in("coord3", "coordinator", "xiaojinkou")
    r = await other.post("/logout", data={"csrf_token": csrf_of(page.text)})
    assert r.status_code == 403


async def test_a_post_that_is_not_a_form_is_refused_without_a_500(site: Site) -> None:
    signed = site.signed_in("coord", "coordinator", "xiaojinkou")
    r = await signed.post("/logout", content=b"\xff\xfe", headers={
        "content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 400
    r = await signed.post("/logout", json={"csrf_token": "x"})
    assert r.status_code == 400
    r = await signed.post("/cases/new", data={"category": "land\x00"})
    assert r.status_code == 400


async def test_pages_carry_the_security_headers_and_load_only_local_assets(site: Site) -> None:
    r = await site.browser().get("/login")
    assert r.headers["content-security-policy"] == CSP
    assert r.headers["x-frame-options"] == "DENY"
    assert "<script" not in r.text and "style=" not in r.text and "http" not in r.text.lower()
    css = await site.browser().get("/static/whistle.css")
    assert css.status_code == 200 and "text/css" in css.headers["content-type"]


async def test_unknown_page_and_unknown_case_answer_html_404(site: Site) -> None:
    signed = site.signed_in("coord", "coordinator", "xiaojinkou")
    for path in ("/no-such-page", "/cases/0123456789abcdef", "/cases/not-a-case-id"):
        r = await signed.get(path)
        assert r.status_code == 404, path
        assert "text/html" in r.headers["content-type"] and "未找到" in r.text
    r = await signed.get("/api/v1/cases/0123456789abcdef")  # the API keeps JSON errors
    assert r.status_code == 401 and r.json()["code"] == "not_authenticated"


async def test_roles_get_their_own_navigation_and_start_page(site: Site) -> None:
    staff = site.signed_in("staff", "department", department="xjk-petition")
    r = await staff.get("/")
    assert r.status_code == 303 and r.headers["location"] == "/inbox"
    r = await staff.get("/inbox")
    assert r.status_code == 200 and 'href="/inbox"' in r.text and 'href="/cases/new"' not in r.text
    coord = site.signed_in("coord", "coordinator", "xiaojinkou")
    r = await coord.get("/cases")
    assert 'href="/cases/new"' in r.text and 'href="/dashboard"' in r.text
    admin = site.signed_in("admin", "admin", "huizhou")
    r = await admin.get("/cases")
    assert r.status_code == 403 and "您无权执行此操作" in r.text


async def test_case_list_ignores_filters_that_are_not_valid(site: Site) -> None:
    coord = site.signed_in("coord", "coordinator", "xiaojinkou")
    r = await coord.get("/cases", params={"status": "nope", "level": "x'--", "page": "-1",
                                          "overdue": "maybe", "category": "A B",
                                          "department": "\u0000"})
    assert r.status_code == 200 and "暂无案件" in r.text


async def test_only_a_page_with_a_form_sets_the_pre_session_cookie(site: Site) -> None:
    r = await site.browser().get("/no-such-page")
    assert r.status_code == 404 and "set-cookie" not in r.headers
    r = await site.browser().get("/login")
    assert "whistle_pre=" in r.headers["set-cookie"] and "HttpOnly" in r.headers["set-cookie"]


async def test_a_post_without_a_session_sends_the_user_to_sign_in(site: Site) -> None:
    r = await site.browser().post("/cases/0123456789abcdef/close", data={"reason": "x"})
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/"


async def test_repeated_wrong_passwords_lock_the_account_as_the_api_does(site: Site) -> None:
    site.user("coord", "coordinator", "xiaojinkou", password=PASSWORD)
    browser = site.browser("en")
    for _ in range(5):
        r = await site.post_form(browser, "/login", "/login",
                                 {"username": "coord", "password": "wrong-password!"})
        assert r.status_code == 401 and "Wrong user name or password." in r.text
    r = await site.post_form(browser, "/login", "/login",
                             {"username": "coord", "password": PASSWORD})
    assert r.status_code == 401 and "Too many wrong passwords" in r.text
