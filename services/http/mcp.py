"""The MCP server: one person's memory as tools, over streamable HTTP (/mcp) and over stdio.

Four tools (search_memory, get_soulprint, list_memory_facts, ask) answer
exactly what the REST routes answer, through the same QueryService and the
same request models, as structured content with its JSON (or the answer)
as text.

Who is asked about is never a tool argument: an assistant that an injected
prompt talks into naming someone else must have nothing to name. Over HTTP
the person comes from the request's bearer token, checked by an ASGI wrapper
before the MCP transport sees the request (no or an unknown token: 401, a
token that may not act for the person named: 403, both as JSON); the operator
token names the person in the ``X-Soulprint-User`` header. Over stdio the
person is the one ``soulprint mcp`` was started for, and its token is checked
again on every call, so revoking it ends a long-lived stdio server's access too.

Streamable HTTP runs stateless, with JSON responses: every POST is
authenticated on its own, and no session outlives a revoked token.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import Field, ValidationError
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from soulprint.models.access import AccessDenied
from soulprint.models.query import NoSoulprint, QueryRequest, SearchRequest, Tier, Unavailable
from soulprint.models.text import one_line
from soulprint.services.http.errors import error_response, message_of
from soulprint.services.http.inputs import bearer_token

if TYPE_CHECKING:
    from soulprint.services.auth import Authenticator
    from soulprint.services.query import QueryService

USER_HEADER = "x-soulprint-user"  # with the operator token: the person to act for
_PERSON = "soulprint.user_id"  # where the wrapper leaves the person in the ASGI scope

INSTRUCTIONS = (
    "The memory of one person, built from their ChatGPT and claude.ai history: their soulprint "
    "(SOUL, IDENTITY, USER, AGENTS, TOOLS and MEMORY), the facts MEMORY holds, and the conversations "
    "themselves. Search to find what they said and when; every hit names its conversation and messages."
)
READ_ONLY = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)

# Who the tools act for, from the context of one tool call (ToolError if nobody may be).
Person = Callable[[Context], Awaitable[str]]


class McpMount:
    """The MCP server as the HTTP app mounts it: ``asgi`` at /mcp, ``lifespan()`` run by the app.

    ``asgi`` is an ASGI app (not a function) that ignores the path, so the app may route it as
    ``Route("/mcp", mount.asgi)`` or ``Mount``.
    """

    def __init__(self, query: QueryService, auth: Authenticator) -> None:
        server = build_server(query, _person_from_request)
        # The bearer token is what keeps another origin out (a rebinding page has none), so the
        # Host check the SDK adds for localhost would only refuse the addresses we serve on.
        server.streamable_http_app(stateless_http=True, json_response=True,
                                   transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False))
        self._sessions = server.session_manager
        self.asgi = _BearerGate(auth, self._sessions.handle_request)

    def lifespan(self) -> AbstractAsyncContextManager[None]:
        """The transport's task group: entered once, for as long as the app serves."""
        return self._sessions.run()


class _BearerGate:
    """Refuses a request without a valid token before any MCP processing; else passes it on
    with the person it acts for in the scope."""

    def __init__(self, auth: Authenticator, app: ASGIApp) -> None:
        self.auth = auth
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            request = Request(scope)
            principal = await self.auth.authenticate(bearer_token(request))
            if principal is None:
                refusal = error_response(401, "a valid bearer token is required", {"WWW-Authenticate": "Bearer"})
                await refusal(scope, receive, send)
                return
            try:
                person = principal.acting_for(request.headers.get(USER_HEADER))
            except AccessDenied as exc:
                where = f" (on /mcp, in the {USER_HEADER} header)" if principal.admin else ""
                await error_response(403, message_of(exc) + where)(scope, receive, send)
                return
            scope = {**scope, _PERSON: person}
        await self.app(scope, receive, send)


def build_mcp(query: QueryService, auth: Authenticator) -> McpMount:
    return McpMount(query, auth)


class TokenHolder:
    """The person a token acts for (``requested``: the one an operator token names), asked anew each time."""

    def __init__(self, auth: Authenticator, token: str, requested: str | None) -> None:
        self.auth = auth
        self.token = token
        self.requested = requested

    async def person(self) -> str:
        """AccessDenied when the token is unknown or revoked, or may not act for the person named."""
        principal = await self.auth.authenticate(self.token)
        if principal is None:
            raise AccessDenied("the token is not valid (unknown or revoked)")
        return principal.acting_for(self.requested)


async def run_stdio(query: QueryService, holder: TokenHolder) -> None:
    """Serve the tools on stdin/stdout, for the holder's person, until the client closes them."""

    async def person(ctx: Context) -> str:
        try:
            return await holder.person()
        except AccessDenied as exc:
            raise ToolError(message_of(exc)) from None

    await build_server(query, person).run_stdio_async()


def build_server(service: QueryService, person: Person) -> MCPServer:
    """The four tools, acting for whoever ``person`` says each call is for."""
    server = MCPServer("soulprint", instructions=INSTRUCTIONS, log_level="WARNING",
                       middleware=[_one_line_tool_errors])

    @server.tool(annotations=READ_ONLY)
    async def search_memory(
        ctx: Context,
        query: Annotated[str, Field(description="what to look for: words, a name, a question")],
        k: Annotated[int, Field(description="how many hits to return (1 to 100)")] = 10,
        tiers: Annotated[list[Tier] | None, Field(
            description="only chunks of these sizes: micro (a message or two), medium (an exchange), "
                        "macro (a whole conversation); default all")] = None,
        since: Annotated[datetime | None, Field(description="only moments at or after this time (ISO 8601)")] = None,
        until: Annotated[datetime | None, Field(description="only moments before this time (ISO 8601)")] = None,
        conversation_ids: Annotated[list[str] | None, Field(description="only these conversations")] = None,
        include_facts: Annotated[bool, Field(description="also return MEMORY facts matching the query")] = False,
    ) -> dict[str, Any]:
        """Search the person's conversation history (full text and meaning, fused).

        Each hit carries chunk_id, conversation_id, title, message_ids, tier, message_at, score,
        its rank in each retriever, tokens and text; stats say how many candidates each retriever
        found and whether fewer than k were found.
        """
        user = await person(ctx)
        request = _valid(lambda: SearchRequest(
            query=query, k=k, tiers=tiers, since=since, until=until, conversation_ids=conversation_ids,
            include_facts=include_facts))
        return await _refusals(service.search(user, request))

    @server.tool(annotations=READ_ONLY)
    async def get_soulprint(ctx: Context) -> dict[str, Any]:
        """The person's current soulprint: the SOUL, IDENTITY, USER, AGENTS and TOOLS sections
        (markdown), MEMORY, its version (1 quick pass, 2 with MEMORY) and when it was made."""
        view = await _refusals(service.soulprint(await person(ctx)))
        return view.to_json()

    @server.tool(annotations=READ_ONLY)
    async def list_memory_facts(
        ctx: Context,
        query: Annotated[str | None, Field(description="only facts about this; default all")] = None,
    ) -> dict[str, Any]:
        """The facts MEMORY holds about the person, each with its category, subject, dates
        (first and last seen, the event's own date), how often it was mentioned, and its sources:
        the conversations and messages it came from."""
        about = query.strip() if query else None
        return {"facts": await _refusals(service.facts(await person(ctx), about or None))}

    @server.tool(annotations=READ_ONLY)
    async def ask(
        ctx: Context,
        question: Annotated[str, Field(description="a question for the person's assistant")],
    ) -> CallToolResult:
        """Ask the person's assistant: it answers from their soulprint and the passages of their
        history it retrieves, and cites them. The text is the answer; the structured content adds
        its sources, the number of passages used, the method and the latency."""
        user = await person(ctx)
        request = _valid(lambda: QueryRequest(message=question))
        answer = (await _refusals(service.ask(user, request.message))).to_json()
        return CallToolResult(content=[TextContent(type="text", text=answer["response"])],
                              structured_content=answer)

    return server


async def _person_from_request(ctx: Context) -> str:
    request = ctx.request_context.request
    person = request.scope.get(_PERSON) if request is not None else None
    if person is None:  # only McpMount.asgi serves this server, and it always sets one
        raise ToolError("this request carries no authenticated person")
    return person


def _valid(build):
    """A request model built from the tool's arguments; its bounds refused in one line, as over REST."""
    try:
        return build()
    except ValidationError as exc:
        raise ToolError(message_of(exc)) from None


async def _refusals(awaitable):
    """The service's own refusals (no soulprint yet, a provider down) as tool errors, not crashes."""
    try:
        return await awaitable
    except (NoSoulprint, Unavailable) as exc:
        raise ToolError(message_of(exc)) from None


async def _one_line_tool_errors(ctx, call_next):
    """Every tool error in one line, the SDK's own argument checks included."""
    result = await call_next(ctx)
    if ctx.method == "tools/call" and isinstance(result, dict) and result.get("isError"):
        for block in result.get("content") or ():
            if block.get("type") == "text":
                block["text"] = one_line(block["text"])
    return result
