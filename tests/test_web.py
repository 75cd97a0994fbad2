"""The web app's pages over a real socket (uvicorn in the test's loop, the session's runtime behind it).

Sign-in sets an HTTP-only, SameSite=Strict cookie holding the token; the
cookie alone never authenticates the API (only with the web header or the
session's CSRF token, and never cross-site); a person sees their own job and
soulprint and nobody else's; a person's hostile text is escaped everywhere.
The same pages in a real browser are tests/test_browser.py.
"""

from __future__ import annotations

import io
import uuid
import zipfile

import httpx
import pytest
from starlette.requests import Request

from soulprint.models.events import MemoryWritten, SectionsPublished
from soulprint.runtime import build_api, build_query_service
from soulprint.services.http.inputs import SESSION_COOKIE, csrf_token, session_token
from soulprint.services.http.server import ApiServer, bind
from soulprint.services.http.web.markdown import render
from soulprint.services.http.web.pages import _next, workspace_zip
from support.waiting import wait_until

HOSTILE = '<script>alert("owned")</script><img src=x onerror="alert(2)">'
SECTIONS = {name: f"# {name}\n\n{name} of a person who typed {HOSTILE} and [a link](javascript:alert(3)).\n"
            for name in ("SOUL", "IDENTITY", "USER", "AGENTS", "TOOLS")}
MEMORY = f"# MEMORY\n\n## Preferences\n- Likes {HOSTILE}\n"
SITE = {"Sec-Fetch-Site": "same-origin"}


# -- unit: the rules themselves ------------------------------------------------------


def _request(headers: dict[str, str], cookie: str | None = None, query: str = "") -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    raw.append((b"host", b"127.0.0.1:8700"))
    if cookie is not None:
        raw.append((b"cookie", f"{SESSION_COOKIE}={cookie}".encode()))
    return Request({"type": "http", "method": "POST", "path": "/v1/x", "headers": raw,
                    "query_string": query.encode(), "scheme": "http", "server": ("127.0.0.1", 8700)})


def test_the_cookie_counts_only_with_the_web_header_or_the_csrf_token_and_never_cross_site():
    token = "sp_abc_secret"
    assert session_token(_request({}, token)) is None  # a form another site posts carries the cookie only
    assert session_token(_request({"X-Soulprint-Web": "1"}, token)) == token
    assert session_token(_request({}, token, f"csrf={csrf_token(token)}")) == token
    assert session_token(_request({}, token, f"csrf={csrf_token('sp_other')}")) is None
    assert session_token(_request({"X-Soulprint-Web": "1", "Sec-Fetch-Site": "cross-site"}, token)) is None
    assert session_token(_request({"X-Soulprint-Web": "1", "Origin": "https://evil.example"}, token)) is None
    assert session_token(_request({"X-Soulprint-Web": "1", "Origin": "http://127.0.0.1:8700"}, token)) == token
    assert session_token(_request({"X-Soulprint-Web": "1"})) is None
    assert csrf_token(token) == csrf_token(token) != csrf_token(token + "x")


def test_markdown_escapes_every_tag_and_refuses_script_links():
    html = render(f"# Hi {HOSTILE}\n\n- [x](javascript:alert(1)) [ok](https://example.org)\n\n<div>raw</div>\n")
    assert "<script" not in html and "<img" not in html and "<div>" not in html
    assert "&lt;script&gt;" in html and "&lt;div&gt;raw&lt;/div&gt;" in html
    assert 'href="javascript:' not in html
    assert '<a href="https://example.org" rel="noopener noreferrer nofollow">ok</a>' in html


def test_after_sign_in_only_a_path_of_the_app():
    assert _next("/app/jobs/j1") == "/app/jobs/j1"
    for hostile in ("https://evil.example/app", "//evil.example/app", "/\\evil.example", "/v1/soulprint", None, ""):
        assert _next(hostile) == "/app"


def test_the_workspace_zip_holds_the_five_files_and_memory():
    with zipfile.ZipFile(io.BytesIO(workspace_zip(SECTIONS, MEMORY))) as z:
        assert sorted(z.namelist()) == ["AGENTS.md", "IDENTITY.md", "MEMORY.md", "SOUL.md", "TOOLS.md", "USER.md"]
        assert z.read("MEMORY.md").decode() == MEMORY
    with zipfile.ZipFile(io.BytesIO(workspace_zip(SECTIONS, None))) as z:
        assert "MEMORY.md" not in z.namelist()


# -- integration: the pages over a socket -----------------------------------------------


@pytest.fixture(scope="module")
async def web(runtime):
    server = ApiServer(build_api(runtime, build_query_service(runtime)), bind("127.0.0.1", 0))
    await server.start()
    yield server.url
    await server.stop()


async def _person_with_a_soulprint(rt, user: str) -> tuple[str, str]:
    """A person whose soulprint (sections and MEMORY) holds hostile markup: their job id and token."""
    job_id = f"web-{uuid.uuid4()}"
    await rt.db.jobs.create(job_id, user, "file:///nowhere/export.zip")
    await rt.db.view.apply_sections(SectionsPublished(job_id=job_id, user_id=user, version=2, sections=SECTIONS))
    await rt.db.view.apply_memory(MemoryWritten(job_id=job_id, user_id=user, memory_md=MEMORY))
    _, token = await rt.db.tokens.create(user, "test_web")
    return job_id, token


@pytest.fixture(scope="module")
async def people(runtime):
    """Alice has a soulprint (hostile text in it); Bob has only a token."""
    alice = f"alice-<b>{uuid.uuid4().hex[:6]}</b>"  # markup in the user id itself, shown on every page
    job, alice_token = await _person_with_a_soulprint(runtime, alice)
    _, bob_token = await runtime.db.tokens.create(f"bob-{uuid.uuid4().hex[:6]}", "test_web")
    return {"alice": (alice, alice_token, job), "bob": bob_token}


def signed_in(url: str, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, cookies={SESSION_COOKIE: token}, timeout=60)


async def test_sign_in_sets_an_http_only_strict_cookie_and_sign_out_clears_it(web, people):
    _, token, _ = people["alice"]
    async with httpx.AsyncClient(base_url=web, timeout=60) as client:
        page = await client.get("/")
        signed = await client.post("/session", data={"token": token, "next": "/app/settings"}, headers=SITE)
        assert page.status_code == 200 and 'name="token"' in page.text
        assert signed.status_code == 303 and signed.headers["location"] == "/app/settings"
        cookie = signed.headers["set-cookie"]
        assert cookie.startswith(f"{SESSION_COOKIE}={token};")
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
        assert "Secure" not in cookie  # plain http here; over https the cookie is Secure
        settings = await client.get("/app/settings")
        assert settings.status_code == 200 and token in settings.text and "/mcp" in settings.text
        assert "script-src 'self'" in settings.headers["content-security-policy"]
        csrf = csrf_token(token)
        refused = await client.post("/session/end", data={"csrf": "wrong"}, headers=SITE)
        ended = await client.post("/session/end", data={"csrf": csrf}, headers=SITE)
        assert refused.status_code == 403
        assert ended.status_code == 303 and f'{SESSION_COOKIE}=""' in ended.headers["set-cookie"]
        assert "Max-Age=0" in ended.headers["set-cookie"]


async def test_sign_in_refuses_unknown_operator_and_cross_site(web, people, runtime):
    _, token, _ = people["alice"]
    async with httpx.AsyncClient(base_url=web, timeout=60) as client:
        unknown = await client.post("/session", data={"token": "sp_nope_nope"}, headers=SITE)
        empty = await client.post("/session", data={"token": ""}, headers=SITE)
        cross = await client.post("/session", data={"token": token}, headers={"Sec-Fetch-Site": "cross-site"})
        replies = [unknown, empty, cross]
        if runtime.settings.service.admin_token:
            replies.append(await client.post("/session", data={"token": runtime.settings.service.admin_token},
                                             headers=SITE))
    assert [r.status_code for r in replies] == [401, 401, 403] + [403] * (len(replies) - 3)
    assert all("set-cookie" not in r.headers for r in replies)
    assert "unknown or was revoked" in unknown.text


async def test_pages_without_a_session_go_to_sign_in(web):
    async with httpx.AsyncClient(base_url=web, timeout=60) as client:
        for path in ("/app", "/app/soulprint", "/app/chat", "/app/settings", "/app/jobs/j1"):
            r = await client.get(path)
            assert r.status_code == 303 and r.headers["location"].startswith("/?next=%2Fapp"), path
    async with signed_in(web, "sp_revoked_or_made_up") as client:
        assert (await client.get("/app/soulprint")).status_code == 303


async def test_the_cookie_alone_does_not_authenticate_the_api(web, people):
    _, token, _ = people["alice"]
    async with signed_in(web, token) as client:
        bare = await client.get("/v1/soulprint")
        with_header = await client.get("/v1/soulprint", headers={"X-Soulprint-Web": "1"})
        with_csrf = await client.get("/v1/soulprint", params={"csrf": csrf_token(token)})
        cross = await client.get("/v1/soulprint", headers={"X-Soulprint-Web": "1", "Sec-Fetch-Site": "cross-site"})
    assert bare.status_code == 401 and cross.status_code == 401
    assert with_header.status_code == 200 and with_csrf.status_code == 200
    assert with_header.json()["user_id"] == people["alice"][0]


async def test_the_soulprint_page_escapes_a_persons_text(web, people):
    alice, token, _ = people["alice"]
    async with signed_in(web, token) as client:
        pages = {path: await client.get(path) for path in ("/app/soulprint", "/app/settings", "/app/upload",
                                                             "/app/chat", "/app/about")}
    for path, page in pages.items():
        assert page.status_code == 200, path
        assert "<script>alert" not in page.text and "<img src=x" not in page.text and "<b>" not in page.text, path
        assert "alice-&lt;b&gt;" in page.text, path
    soulprint = pages["/app/soulprint"].text
    assert soulprint.count("&lt;script&gt;alert(&#34;owned&#34;)&lt;/script&gt;") \
        + soulprint.count("&lt;script&gt;alert(&quot;owned&quot;)&lt;/script&gt;") == 6  # five sections + MEMORY
    assert 'href="javascript:' not in soulprint
    assert "v2 · full" in soulprint and "Likes" in soulprint


async def test_a_person_sees_only_their_own_job_and_soulprint(web, people, runtime):
    alice, alice_token, job = people["alice"]
    bob_token = people["bob"]
    async with signed_in(web, alice_token) as client:
        own_job = await client.get(f"/app/jobs/{job}")
        own = await client.get("/app/soulprint")
    async with signed_in(web, bob_token) as client:
        others_job = await client.get(f"/app/jobs/{job}")
        no_job = await client.get(f"/app/jobs/{uuid.uuid4()}")
        bad_id = await client.get("/app/jobs/x%27%3B%20drop")
        nothing = await client.get("/app/soulprint")
        download = await client.get("/app/soulprint/download", params={"format": "json"})
        home = await client.get("/app")
    assert own_job.status_code == 200 and f'data-job="{job}"' in own_job.text
    assert own.status_code == 200 and "IDENTITY of a person" in own.text
    for r in (others_job, no_job, bad_id):
        assert r.status_code == 404 and job not in r.text and "There is no such import" in r.text
    assert nothing.status_code == 200 and "No soulprint yet" in nothing.text and "of a person" not in nothing.text
    assert download.status_code == 404 and "of a person" not in download.text
    assert home.status_code == 303 and home.headers["location"] == "/app/upload"


async def test_the_soulprint_downloads_as_a_workspace_zip_and_as_json(web, people):
    alice, token, job = people["alice"]
    async with signed_in(web, token) as client:
        archive = await client.get("/app/soulprint/download", params={"format": "openclaw"})
        document = await client.get("/app/soulprint/download", params={"format": "json"})
    assert archive.headers["content-type"] == "application/zip"
    assert archive.headers["content-disposition"].startswith('attachment; filename="soulprint-alice-_b_')
    with zipfile.ZipFile(io.BytesIO(archive.content)) as z:
        assert z.read("USER.md").decode() == SECTIONS["USER"] and z.read("MEMORY.md").decode() == MEMORY
    body = document.json()
    assert (body["user_id"], body["job_id"], body["version"]) == (alice, job, 2)
    assert body["sections"] == SECTIONS and body["memory"] == MEMORY


async def test_static_assets_are_served_from_the_package(web):
    async with httpx.AsyncClient(base_url=web, timeout=60) as client:
        css, script, missing = (await client.get("/app/static/app.css"), await client.get("/app/static/upload.js"),
                                await client.get("/app/static/../pages.py"))
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert missing.status_code == 404


async def test_a_deleted_or_revoked_token_signs_the_session_out(web, runtime):
    user = f"carol-{uuid.uuid4().hex[:6]}"
    token_id, token = await runtime.db.tokens.create(user, "test_web")
    async with signed_in(web, token) as client:
        assert (await client.get("/app/upload")).status_code == 200
        await runtime.db.tokens.revoke(token_id)
        after = await wait_until(lambda: client.get("/app/upload"), lambda r: r.status_code != 200,
                                 what="the revoked token to stop working")
    assert after.status_code == 303
