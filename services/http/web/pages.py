"""The person's web app: server-rendered pages over the query service, with small scripts for what must be live.

Who is signed in is the session cookie (``inputs.SESSION_COOKIE``): the
person's own token, HTTP-only and SameSite=Strict, so no script can read it
and no other site can make a browser send it. The pages themselves only read
(a GET changes nothing), and every state-changing call the scripts make goes
to the API with the web header, which ``inputs.authenticate`` requires before
it lets the cookie count. Sign-in and sign-out are forms that check the
request's origin; sign-out also carries the session's CSRF token.

Everything a person wrote is escaped: Jinja's autoescape for text, and
``markdown.render`` (raw HTML off) for the sections and MEMORY. The pages
forbid inline script and any other origin (Content-Security-Policy).
"""

from __future__ import annotations

import io
import re
import zipfile
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote

import orjson
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from soulprint.models.access import Principal
from soulprint.models.query import NoSoulprint, SearchRequest
from soulprint.services.http.chat import MODEL_ID
from soulprint.services.http.errors import BodyTooLarge
from soulprint.services.http.inputs import SESSION_COOKIE, csrf_token, read_body, same_origin
from soulprint.services.http.web.markdown import render

if TYPE_CHECKING:
    from soulprint.services.http.context import ApiContext

HERE = Path(__file__).resolve().parent
SECTIONS = ("SOUL", "IDENTITY", "USER", "AGENTS", "TOOLS")
SECTION_NOTES = {
    "SOUL": "How your assistant should be with you",
    "IDENTITY": "Who your assistant is",
    "USER": "Who you are",
    "AGENTS": "How your assistant works",
    "TOOLS": "What you work with",
    "MEMORY": "What it remembers about you",
}
JOB_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")
FORM_LIMIT = 4096  # a sign-in form holds one token
MAX_FACTS = 100  # the query service's bound on /v1/facts
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",  # a person's history is never kept by a shared cache or the back button
}


def _when(value: Any) -> str:
    """A date for people: '15 Feb 2026' (from a datetime or an ISO string; '' for none)."""
    if not value:
        return ""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    return f"{value.day} {value:%b %Y}"


def _templates() -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["when"] = _when
    env.filters["markdown"] = render
    return env


class WebApp:
    def __init__(self, ctx: "ApiContext") -> None:
        self.ctx = ctx
        self.env = _templates()

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/", self.sign_in_page, methods=["GET"]),
            Route("/session", self.sign_in, methods=["POST"]),
            Route("/session/end", self.sign_out, methods=["POST"]),
            Route("/app", self.home, methods=["GET"]),
            Route("/app/upload", self.upload, methods=["GET"]),
            Route("/app/jobs/{job_id}", self.job, methods=["GET"]),
            Route("/app/soulprint", self.soulprint, methods=["GET"]),
            Route("/app/soulprint/download", self.download, methods=["GET"]),
            Route("/app/conversations/{conversation_id}", self.conversation, methods=["GET"]),
            Route("/app/chat", self.chat, methods=["GET"]),
            Route("/app/about", self.about, methods=["GET"]),
            Route("/app/settings", self.settings, methods=["GET"]),
            Mount("/app/static", StaticFiles(directory=HERE / "static"), name="static"),
        ]

    # -- the session ----------------------------------------------------------------

    async def _signed_in(self, request: Request) -> tuple[Principal, str] | None:
        """The person of the session cookie and its token; None when there is none or it no longer works
        (revoked, or the person was deleted)."""
        token = request.cookies.get(SESSION_COOKIE)
        if not token:
            return None
        principal = await self.ctx.auth.authenticate(token)
        if principal is None or principal.admin or principal.user_id is None:
            return None
        return principal, token

    def page(self, request: Request, template: str, *, status: int = 200, session: tuple | None = None,
             **values: Any) -> Response:
        user, csrf = (session[0].user_id, csrf_token(session[1])) if session else (None, None)
        html = self.env.get_template(template).render(request=request, user=user, csrf=csrf, **values)
        return Response(html, status_code=status, media_type="text/html; charset=utf-8", headers=HEADERS)

    def _to_sign_in(self, request: Request) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/?next={quote(target, safe='')}", status_code=303, headers=HEADERS)

    def _not_found(self, request: Request, session, what: str) -> Response:
        return self.page(request, "missing.html", status=404, session=session, what=what)

    async def sign_in_page(self, request: Request) -> Response:
        if await self._signed_in(request) is not None:
            return RedirectResponse("/app", status_code=303)
        return self.page(request, "signin.html", next=_next(request.query_params.get("next")))

    async def sign_in(self, request: Request) -> Response:
        try:
            form = parse_qs((await read_body(request, FORM_LIMIT)).decode("utf-8", "replace"))
        except BodyTooLarge:
            return self.page(request, "signin.html", status=413, error="That is too long to be a token.")
        token = (form.get("token") or [""])[0].strip()
        target = _next((form.get("next") or [""])[0])
        if not same_origin(request):
            return self.page(request, "signin.html", status=403, next=target,
                             error="Sign in from this page itself, not from another site.")
        principal = await self.ctx.auth.authenticate(token) if token else None
        if principal is None:
            error = "That token is unknown or was revoked." if token else "Paste your token to sign in."
            return self.page(request, "signin.html", status=401, next=target, error=error)
        if principal.admin or principal.user_id is None:
            return self.page(request, "signin.html", status=403, next=target,
                             error="That is the operator's token: sign in with a person's own token.")
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="strict", path="/",
                            secure=request.url.scheme == "https")
        return response

    async def sign_out(self, request: Request) -> Response:
        form = parse_qs((await read_body(request, FORM_LIMIT)).decode("utf-8", "replace"))
        session = request.cookies.get(SESSION_COOKIE)
        proof = (form.get("csrf") or [""])[0]
        if session and not (same_origin(request) and proof == csrf_token(session)):
            return self.page(request, "signin.html", status=403, error="Sign out from the app's own page.")
        response = RedirectResponse("/", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict",
                               secure=request.url.scheme == "https")
        return response

    # -- the pages ------------------------------------------------------------------

    async def home(self, request: Request) -> Response:
        session = await self._signed_in(request)
        if session is None:
            return self._to_sign_in(request)
        try:
            await self.ctx.query.soulprint(session[0].user_id)
        except NoSoulprint:
            return RedirectResponse("/app/upload", status_code=303)
        return RedirectResponse("/app/soulprint", status_code=303)

    async def upload(self, request: Request) -> Response:
        session = await self._signed_in(request)
        if session is None:
            return self._to_sign_in(request)
        return self.page(request, "upload.html", session=session, active="upload")

    async def job(self, request: Request) -> Response:
        session = await self._signed_in(request)
        if session is None:
            return self._to_sign_in(request)
        job_id = request.path_params["job_id"]
        job = await self.ctx.db.jobs.get(job_id) if JOB_ID.match(job_id) else None
        if job is None or job.user_id != session[0].user_id:  # another person's job is not found, never forbidden
            return self._not_found(request, session, "import")
        return self.page(request, "job.html", session=session, active="upload", job=job)

    async def soulprint(self, request: Request) -> Response:
        session = await self._signed_in(request)
        if session is None:
            return self._to_sign_in(request)
        user = session[0].user_id
        try:
            view = await self.ctx.query.soulprint(user)
        except NoSoulprint:
            return self.page(request, "empty.html", session=session, active="soulprint")
        facts = [_one_link_per_conversation(f) for f in await self.ctx.query.facts(user, None, MAX_FACTS)]
        sections = [(name, SECTION_NOTES[name], _untitled(view.sections.get(name), name)) for name in SECTIONS]
        return self.page(request, "soulprint.html", session=session, active="soulprint", view=view,
                         sections=sections, memory=_untitled(view.memory_md, "MEMORY"),
                         memory_note=SECTION_NOTES["MEMORY"], facts=facts)

    async def download(self, request: Request) -> Response:
        session = await self._signed_in(request)
        if session is None:
            return self._to_sign_in(request)
        try:
            view = await self.ctx.query.soulprint(session[0].user_id)
        except NoSoulprint:
            return self.page(request, "empty.html", status=404, session=session, active="soulprint")
        name = _file_name(view.user_id)
        if request.query_params.get("format") == "json":
            body, kind, file = orjson.dumps(view.to_json(), option=orjson.OPT_INDENT_2), "application/json", \
                f"soulprint-{name}.json"
        else:
            body, kind, file = workspace_zip(view.sections, view.memory_md), "application/zip", \
                f"soulprint-{name}-workspace.zip"
        headers = {**HEADERS, "Content-Disposition": f'attachment; filename="{file}"'}
        return Response(body, media_type=kind, headers=headers)

    async def conversation(self, request: Request) -> Response:
        """The passages of one conversation behind a fact: what the person said there about it."""
        session = await self._signed_in(request)
        if session is None:
            return self._to_sign_in(request)
        conversation_id = request.path_params["conversation_id"][:200]
        about = " ".join(request.query_params.get("q", "").split())[:500] or "the conversation"
        marked = set(filter(None, request.query_params.get("m", "").split(",")))
        found = await self.ctx.query.search(session[0].user_id, SearchRequest(
            query=about, conversation_ids=[conversation_id], k=10, tiers=["micro"]))
        hits = found["hits"]
        if not hits:
            return self._not_found(request, session, "conversation")
        for hit in hits:
            hit["marked"] = bool(marked & set(hit.get("message_ids") or ()))
        hits.sort(key=lambda h: str(h.get("message_at") or ""))
        return self.page(request, "conversation.html", session=session, active="soulprint", about=about,
                         title=hits[0].get("title") or "Untitled conversation", hits=hits)

    async def chat(self, request: Request) -> Response:
        session = await self._signed_in(request)
        if session is None:
            return self._to_sign_in(request)
        return self.page(request, "chat.html", session=session, active="chat", model=MODEL_ID)

    async def about(self, request: Request) -> Response:
        """'What do you know about me?': MEMORY's facts with their dates, by category."""
        session = await self._signed_in(request)
        if session is None:
            return self._to_sign_in(request)
        found = await self.ctx.query.facts(session[0].user_id, None, MAX_FACTS)
        facts = [_one_link_per_conversation(f) for f in found]
        groups: dict[str, list] = {}
        for fact in facts:
            groups.setdefault(fact.get("category") or "other", []).append(fact)
        return self.page(request, "about.html", session=session, active="chat", groups=groups)

    async def settings(self, request: Request) -> Response:
        session = await self._signed_in(request)
        if session is None:
            return self._to_sign_in(request)
        base = str(request.base_url).rstrip("/")
        return self.page(request, "settings.html", session=session, active="settings", token=session[1],
                         base=base, model=MODEL_ID)


def workspace_zip(sections: dict[str, str], memory_md: str | None) -> bytes:
    """The OpenClaw agent workspace (SOUL.md ... TOOLS.md, and MEMORY.md once the full pass wrote one),
    the files `soulprint export --format openclaw` writes, as one zip."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in SECTIONS:
            archive.writestr(f"{name}.md", (sections.get(name) or "").rstrip() + "\n")
        if memory_md:
            archive.writestr("MEMORY.md", memory_md.rstrip() + "\n")
    return out.getvalue()


def _one_link_per_conversation(fact: dict) -> dict:
    """The fact with its sources merged by conversation (a fact read in several passages of one
    conversation links to it once, marking all of their messages), newest first."""
    merged: dict[str, dict] = {}
    for source in fact.get("sources") or ():
        cid = source.get("conversation_id")
        if not cid:
            continue
        into = merged.setdefault(cid, {**source, "message_ids": []})
        into["message_ids"] += [m for m in source.get("message_ids") or () if m not in into["message_ids"]]
        into["message_at"] = max(filter(None, (into.get("message_at"), source.get("message_at"))), default=None)
    ordered = sorted(merged.values(), key=lambda s: str(s.get("message_at") or ""), reverse=True)
    return {**fact, "sources": ordered}


def _untitled(text: str | None, name: str) -> str:
    """A section's markdown without its own first heading when that only repeats the section's name
    (the page already titles it)."""
    first, _, rest = (text or "").lstrip().partition("\n")
    return rest if first.lstrip("#").strip().upper() == name else (text or "")


def _next(target: str | None) -> str:
    """Where to go after signing in: a path of the app only (never another site: no open redirect)."""
    if target and target.startswith("/app") and not target.startswith("//") and "\\" not in target:
        return target
    return "/app"


def _file_name(user: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in user)[:80] or "person"
