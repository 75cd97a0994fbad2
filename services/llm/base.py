"""The LLM layer's interface and the engine shared by remote providers.

The request, result and usage types live in soulprint.models.llm (re-exported
here).

Callers build an :class:`LLMRequest` and ``await client.complete(req)``. The
call never raises for API or validation failures: it returns an
:class:`LLMResult` with ``ok=False``, a one-line ``error`` and an
``error_kind`` so a pipeline stage can decide (fall back offline, mark the job
degraded, ...) without wrapping every call in ``try``.

:class:`RemoteLLMClient` holds everything the Anthropic API and Bedrock have in
common: the response cache, the adaptive concurrency limit, the one retry loop
(SDK/botocore retries are switched off so the two never multiply), forced tool
calls for structured output validated by the request's answer model (pydantic)
with one repair round built from the validation errors, and usage accounting. A
provider only implements :meth:`RemoteLLMClient._send` (one HTTP attempt,
errors normalised to :class:`TransportError`).
"""

from __future__ import annotations

import abc
import asyncio
import logging
import random
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Mapping, Protocol, runtime_checkable

from soulprint.models.llm import ERROR_KINDS, LLMRequest, LLMResult, PromptSpec, Usage  # noqa: F401 - re-exported
from soulprint.models.text import one_line
from soulprint.services.logs import redact

from .accounting import observe
from .cache import cache_key
from .config import LLMConfig, ModelPrice, default_prices  # noqa: F401 - re-exported
from .ratelimit import AdaptiveLimiter, shared_limiter

log = logging.getLogger(__name__)

# One error line: long enough for an API message or the first validation errors.
ERROR_CHARS = 300


class LLMClient(abc.ABC):
    provider: str = ""
    offline: bool = False

    @abc.abstractmethod
    async def complete(self, req: LLMRequest) -> LLMResult:
        """Never raises for API or validation failures: ok=False with error instead."""

    async def complete_many(self, requests: list[LLMRequest]) -> list[LLMResult]:
        """One result per request, in request order; same contract as complete().

        The default runs the requests concurrently (the limiter bounds them); a
        provider may instead send them as one asynchronous batch.
        """
        return list(await asyncio.gather(*(self.complete(r) for r in requests)))

    async def aclose(self) -> None:  # pragma: no cover - trivial default
        return None

    async def __aenter__(self) -> "LLMClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()


@runtime_checkable
class UsageSink(Protocol):
    async def record(self, job_id: str | None, stage: str, provider: str, model: str, usage: Usage) -> None: ...


@runtime_checkable
class ResponseCache(Protocol):
    """``user_id`` / ``job_id``: whose request reads or writes the entry (erasure deletes a person's)."""

    async def get(self, key: str, *, user_id: str | None = None, job_id: str | None = None
                  ) -> dict[str, Any] | None: ...

    async def put(self, key: str, provider: str, model: str, response: dict[str, Any], *,
                  user_id: str | None = None, job_id: str | None = None) -> None: ...


# --------------------------------------------------------------------------- shared remote engine


class TransportError(Exception):
    """One failed HTTP attempt, normalised across SDKs.

    kind: "rate_limited" | "overloaded" | "timeout" | "api".
    retryable: whether another attempt may help (4xx other than 408/429 never do).
    retry_after: the server's hint in seconds (retry-after, ratelimit reset), if any.
    """

    def __init__(self, kind: str, message: str, *, retryable: bool, retry_after: float | None = None,
                 status: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.retryable = retryable
        self.retry_after = retry_after
        self.status = status


@dataclass
class SendResult:
    """One answered request: the Messages-shaped response body, plus rate-limit hints."""

    body: dict[str, Any]
    pause_s: float | None = None  # the server says a limit is exhausted until then


Sleep = Callable[[float], Awaitable[Any]]


class RemoteLLMClient(LLMClient):
    """Cache → limiter → retry loop → validate/repair → accounting.

    Subclasses set ``provider`` and implement :meth:`_send` and
    :meth:`_model_for`.
    """

    provider = "remote"

    def __init__(self, config: LLMConfig, *, sink: UsageSink | None = None, cache: ResponseCache | None = None,
                 limiter: Any = None, sleep: Sleep | None = None) -> None:
        self.config = config
        self.sink = sink
        self.cache = cache if config.cache_enabled else None
        self._sleep: Sleep = sleep or asyncio.sleep
        if limiter is None:
            limiter = shared_limiter(self._limiter_key(), config.initial_concurrency, config.max_concurrency)
        self.limiter: AdaptiveLimiter = limiter

    # -- provider hooks

    def _limiter_key(self) -> str:
        return self.provider

    @abc.abstractmethod
    def _model_for(self, role: str) -> str: ...

    @abc.abstractmethod
    async def _send(self, model: str, body: dict[str, Any]) -> SendResult:
        """One attempt. Return the response body or raise TransportError."""

    # -- request building

    def build_body(self, req: LLMRequest) -> dict[str, Any]:
        """The provider-neutral Messages body (no model: Bedrock puts it in the URL).

        No ``temperature``: the current models reject it.
        """
        system: Any = req.system
        if req.system and req.cache_system and len(req.system) >= self.config.prompt_cache_min_chars:
            # A static system prompt shared by every user of a task is the
            # cacheable prefix; the samples live in the user turn.
            system = [{"type": "text", "text": req.system, "cache_control": {"type": "ephemeral"}}]
        body: dict[str, Any] = {"max_tokens": req.max_tokens, "messages": list(req.messages)}
        if req.system:
            body["system"] = system
        if req.schema is not None:
            body["tools"] = [{
                "name": req.schema_name,
                "description": f"Record the {req.task} result. Call this tool exactly once with the complete answer.",
                "input_schema": req.schema,
            }]
            body["tool_choice"] = {"type": "tool", "name": req.schema_name}
        return body

    def cache_key(self, model: str, req: LLMRequest) -> str:
        return cache_key(self.provider, model, req)

    # -- the call

    async def complete(self, req: LLMRequest) -> LLMResult:
        model = self._model_for(req.model_role)
        try:
            result = await self._complete(model, req)
        except Exception as exc:  # contract: a bug in parsing must not take the pipeline down
            log.exception("llm %s/%s failed unexpectedly", self.provider, req.task)
            result = LLMResult(ok=False, error=one_line(redact(f"{type(exc).__name__}: {exc}"), ERROR_CHARS),
                               error_kind="api", provider=self.provider, model=model)
        await self._account(req, result)
        observe(req.task, result)
        return result

    async def _complete(self, model: str, req: LLMRequest) -> LLMResult:
        key = self.cache_key(model, req)
        hit = await self._cached(key, model, req)
        if hit is not None:
            return hit

        body = self.build_body(req)
        rng = self._rng(key)
        resp, err, attempts, usage = await self._send_with_retries(model, body, rng)
        if err is not None:
            return self._fail(model, err.kind, err, usage, attempts)
        assert resp is not None
        return await self._settle(model, req, key, body, resp, usage, attempts, rng)

    def _rng(self, key: str) -> random.Random:
        # Jitter is seeded from the request so a replayed test sees the same delays.
        return random.Random(int(key[:16], 16))

    async def _cached(self, key: str, model: str, req: LLMRequest) -> LLMResult | None:
        if self.cache is None:
            return None
        hit = await self._cache_get(key, req)
        if hit is None:
            return None
        answer, errors = req.check(hit.get("data"))
        if errors:  # an entry that no longer fits the answer model is a miss
            return None
        return LLMResult(ok=True, data=hit.get("data"), text=hit.get("text") or "", usage=Usage(cache_hits=1),
                         cached=True, provider=self.provider, model=model, answer=answer)

    async def _settle(self, model: str, req: LLMRequest, key: str, body: dict[str, Any], resp: dict[str, Any],
                      usage: Usage, attempts: int, rng: random.Random) -> LLMResult:
        """An answered request: validate the structured answer (one repair round), cache it.

        ``usage``/``attempts`` are what the answer cost so far; the repair's are added.
        """
        if req.schema is None:
            text = _text_of(resp)
            result = LLMResult(ok=True, text=text, usage=usage, provider=self.provider, model=model,
                               attempts=attempts)
            await self._cache_put(key, model, result, req)
            return result

        data, answer, problem = _extract_tool_input(resp, req)
        if problem is not None:
            # One repair round: show the model its own answer and what was wrong.
            log.info("llm %s/%s: invalid structured answer, repairing: %s", self.provider, req.task, problem)
            repair = dict(body)
            repair["messages"] = list(body["messages"]) + _repair_turns(resp, req.schema_name, problem)
            if resp.get("stop_reason") == "max_tokens":
                repair["max_tokens"] = min(req.max_tokens * 2, 64000)  # truncated: give it room
            resp2, err2, n2, u2 = await self._send_with_retries(model, repair, rng)
            attempts += n2
            usage = usage + u2
            if err2 is not None:
                return self._fail(model, err2.kind, err2, usage, attempts)
            assert resp2 is not None
            data, answer, problem2 = _extract_tool_input(resp2, req)
            if problem2 is not None:
                return LLMResult(ok=False, error=one_line(f"invalid structured answer after repair: {problem2}",
                                                          ERROR_CHARS),
                                 error_kind="schema", usage=usage, provider=self.provider, model=model,
                                 attempts=attempts)
            resp = resp2
        # result.model is the id we asked for (the API may answer with a dated
        # snapshot id): accounting rows and cache entries stay keyed alike.
        result = LLMResult(ok=True, data=data, text=_text_of(resp), usage=usage, provider=self.provider,
                           model=model, attempts=attempts, answer=answer)
        await self._cache_put(key, model, result, req)
        return result

    def _fail(self, model: str, kind: str, err: Exception, usage: Usage, attempts: int) -> LLMResult:
        # A provider's message may quote what it was sent (a key, a token): the line is stored and answered.
        return LLMResult(ok=False, error=one_line(redact(str(err)), ERROR_CHARS), error_kind=kind, usage=usage,
                         provider=self.provider, model=model, attempts=attempts)

    async def _send_with_retries(
        self, model: str, body: dict[str, Any], rng: random.Random
    ) -> tuple[dict[str, Any] | None, TransportError | None, int, Usage]:
        """The retry loop of every message request (batch.py's admin calls reuse its _delay policy).
        Returns (response, last error, attempts, usage)."""
        cfg = self.config
        price = cfg.price_for(model)
        waited = 0.0
        usage = Usage()
        last: TransportError | None = None
        attempt = 0
        for attempt in range(1, max(1, cfg.max_attempts) + 1):
            async with self.limiter.slot() as slot:
                try:
                    # Belt and braces over the SDK's own timeout: a server that
                    # trickles bytes resets httpx's read timer forever.
                    sent = await asyncio.wait_for(self._send(model, body), cfg.timeout_s * 2 + 5)
                except TransportError as exc:
                    last = exc
                except asyncio.TimeoutError:
                    last = TransportError("timeout", f"no answer within {cfg.timeout_s * 2 + 5:.0f}s", retryable=True)
                else:
                    slot.success()
                    if sent.pause_s:
                        self.limiter.pause_for(min(sent.pause_s, cfg.max_wait_s))
                    usage = usage + Usage.from_api(sent.body.get("usage"), price)
                    return sent.body, None, attempt, usage
                if last.kind in ("rate_limited", "overloaded"):
                    slot.throttled()  # AIMD: halve the concurrency limit
                    usage = usage + Usage(throttled=1)
            if not last.retryable or attempt >= cfg.max_attempts:
                break
            delay = self._delay(attempt, last, rng)
            if waited + delay > cfg.max_wait_s:
                log.warning("llm %s: giving up after %d attempts, next wait %.1fs exceeds max_wait_s",
                            self.provider, attempt, delay)
                break
            waited += delay
            if last.retry_after is not None:
                # The limit is the account's, not this request's: hold everyone.
                self.limiter.pause_for(delay)
            await self._sleep(delay)
        assert last is not None
        return None, last, attempt, usage

    def _delay(self, attempt: int, err: TransportError, rng: random.Random) -> float:
        if err.retry_after is not None:
            # Honour the server; a little jitter so a herd does not return at once.
            return max(0.0, err.retry_after) * (1.0 + 0.1 * rng.random())
        cap = min(self.config.backoff_max_s, self.config.backoff_base_s * (2 ** (attempt - 1)))
        return rng.uniform(cap / 2, cap)  # "equal jitter": never retry instantly

    # -- cache / accounting (failures here are logged, never raised)

    async def _cache_get(self, key: str, req: LLMRequest) -> dict[str, Any] | None:
        assert self.cache is not None
        try:
            return await self.cache.get(key, user_id=req.user_id, job_id=req.job_id)
        except Exception:
            log.exception("llm cache get failed")
            return None

    async def _cache_put(self, key: str, model: str, result: LLMResult, req: LLMRequest) -> None:
        if self.cache is None:
            return
        try:
            await self.cache.put(key, self.provider, model,
                                 {"data": result.data, "text": result.text, "model": result.model},
                                 user_id=req.user_id, job_id=req.job_id)
        except Exception:
            log.exception("llm cache put failed")

    async def _account(self, req: LLMRequest, result: LLMResult) -> None:
        if self.sink is None:
            return
        try:
            await self.sink.record(req.job_id, req.stage or req.task, result.provider, result.model, result.usage)
        except Exception:
            # Losing a row of accounting beats failing a paid-for answer.
            log.exception("llm usage accounting failed for job %s", req.job_id)


def _text_of(resp: Mapping[str, Any]) -> str:
    return "".join(b.get("text") or "" for b in resp.get("content") or () if b.get("type") == "text")


def _extract_tool_input(resp: Mapping[str, Any], req: LLMRequest) -> tuple[dict[str, Any] | None, Any, str | None]:
    """(tool input, the answer model validated from it, None) or (None, None, what was wrong)."""
    name = req.schema_name
    blocks = [b for b in resp.get("content") or () if b.get("type") == "tool_use"]
    truncated = " (the answer was cut off at max_tokens)" if resp.get("stop_reason") == "max_tokens" else ""
    if not blocks:
        return None, None, f"expected a call to the tool '{name}' but got text only{truncated}"
    block = next((b for b in blocks if b.get("name") == name), blocks[0])
    if block.get("name") != name:
        return None, None, f"called tool '{block.get('name')}' instead of '{name}'"
    data = block.get("input")
    if not isinstance(data, dict):
        return None, None, f"tool input is not a JSON object{truncated}"
    answer, errors = req.check(data)
    if errors:
        return None, None, "; ".join(errors) + truncated
    return data, answer, None


def _repair_turns(resp: Mapping[str, Any], name: str, problem: str) -> list[dict[str, Any]]:
    """The bad answer as an assistant turn plus a user turn explaining the fix."""
    content: list[dict[str, Any]] = []
    for b in resp.get("content") or ():
        if b.get("type") == "text" and b.get("text"):
            content.append({"type": "text", "text": b["text"]})
        elif b.get("type") == "tool_use":
            content.append({"type": "tool_use", "id": b.get("id"), "name": b.get("name"), "input": b.get("input") or {}})
    instruction = (f"That answer was invalid: {problem}. Call the tool '{name}' again with one complete input "
                   f"that satisfies its input_schema (all required properties, correct types).")
    turns: list[dict[str, Any]] = []
    if content:
        turns.append({"role": "assistant", "content": content})
    # Every tool_use must be answered by a tool_result in the next user turn.
    results = [{"type": "tool_result", "tool_use_id": b["id"], "is_error": True, "content": instruction}
               for b in content if b["type"] == "tool_use"]
    turns.append({"role": "user", "content": results or [{"type": "text", "text": instruction}]})
    return turns
