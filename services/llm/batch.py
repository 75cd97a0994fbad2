"""complete_many() through the Message Batches API: half price, answers in minutes.

1. Each request's custom_id is its response-cache key (a sha256 hex digest:
   exactly the API's 64-character limit), so the same request always gets the
   same id, on any worker. Identical requests share one entry. Results are
   matched to requests by custom_id only: the API promises no order.
2. Answers already in the response cache are served from it. Requests the
   batch store remembers as submitted (a worker died while waiting, and the
   reconciler re-drove the chunks) resume polling that batch. The rest are
   submitted as new batches, and remembered.
3. Each batch is polled every ``batch_poll_s`` (an asyncio sleep, so the
   worker goes on) until ``processing_status == "ended"``, at most
   ``batch_max_wait_s``. A batch still pending then is canceled and its
   requests fail with that reason.
4. A succeeded answer goes through what complete() does with an answer:
   an invalid structured answer gets its one repair round, as a normal
   full-price call, then the result is cached. errored, expired and canceled
   results, and ids missing from the results, are failed results: the
   caller's own retry path asks again (for facts: the reconciler).
5. Usage is recorded per request under provider ``anthropic-batch`` at
   ``batch_price_factor`` of the price (a repair call under ``anthropic``),
   by whichever worker claims the result from the store, so once.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Awaitable, Callable, TypeVar

import anthropic
import orjson

from soulprint.models.llm import LLMRequest, LLMResult, Usage
from soulprint.models.text import one_line
from soulprint.services.logs import redact

from .accounting import observe
from .anthropic_errors import transport_error
from .base import ERROR_CHARS, TransportError

if TYPE_CHECKING:  # annotations only: the client imports this module, not the other way round
    from .anthropic_provider import AnthropicClient

log = logging.getLogger(__name__)

BATCH_PROVIDER = "anthropic-batch"  # accounting rows of batch-priced answers
# The API's limits per batch: 100,000 requests or 256 MB (some room left for the envelope).
MAX_BATCH_REQUESTS = 100_000
MAX_BATCH_BYTES = 200 * 2**20

T = TypeVar("T")


@dataclass
class _Entry:
    """One distinct request: the first of any identical ones, and where its result goes."""

    custom_id: str
    model: str
    req: LLMRequest
    body: dict[str, Any]
    indices: list[int] = field(default_factory=list)


async def complete_as_batch(client: "AnthropicClient", requests: list[LLMRequest]) -> list[LLMResult]:
    entries: dict[str, _Entry] = {}
    for i, req in enumerate(requests):
        model = client._model_for(req.model_role)
        key = client.cache_key(model, req)
        entry = entries.get(key)
        if entry is None:
            entry = entries[key] = _Entry(key, model, req, client.build_body(req))
        entry.indices.append(i)

    results: dict[str, LLMResult] = {}
    hits = await asyncio.gather(*(client._cached(key, e.model, e.req) for key, e in entries.items()))
    for (key, entry), hit in zip(entries.items(), hits):
        if hit is not None:
            results[key] = hit
            await client._account(entry.req, hit)
    todo = [e for k, e in entries.items() if k not in results]
    if todo:
        try:
            results.update(await _through_batches(client, todo))
        except Exception as exc:  # the contract of complete(): a bug must not take the pipeline down
            log.exception("llm batch of %d requests failed unexpectedly", len(todo))
            for e in todo:
                if e.custom_id not in results:
                    results[e.custom_id] = _failed(client, e, "api", f"{type(exc).__name__}: {exc}")
                    await client._account(e.req, results[e.custom_id])

    out: list[LLMResult] = [None] * len(requests)  # type: ignore[list-item]
    for key, entry in entries.items():
        first, *copies = entry.indices
        out[first] = results[key]
        observe(entry.req.task, results[key])  # once per distinct request, as it was paid
        for i in copies:  # an identical request: same answer, paid once
            out[i] = replace(results[key], usage=Usage())
    return out


async def _through_batches(client: "AnthropicClient", todo: list[_Entry]) -> dict[str, LLMResult]:
    store, endpoint = client.batch_store, client.endpoint
    groups = await _resumable(client, todo)
    resumed = {e.custom_id for part in groups.values() for e in part}

    results: dict[str, LLMResult] = {}
    for part in _split([e for e in todo if e.custom_id not in resumed]):
        try:
            batch = await _call(client, lambda part=part: client.sdk.messages.batches.create(requests=[
                {"custom_id": e.custom_id, "params": {"model": e.model, **e.body}} for e in part]))
        except TransportError as err:
            for e in part:
                results[e.custom_id] = _failed(client, e, err.kind, f"message batch not created: {err}")
                await client._account(e.req, results[e.custom_id])
            continue
        groups[batch.id] = part
        log.info("llm batch %s submitted: %d requests", batch.id, len(part))
        if store is not None:
            try:
                await store.remember(endpoint, batch.id, [e.custom_id for e in part],
                                     [e.req.job_id or "" for e in part])
            except Exception:  # noqa: BLE001 - the batch is paid for either way; only a resume is lost
                log.exception("llm batch %s: not remembered", batch.id)

    for collected in await asyncio.gather(*(_collect(client, bid, part) for bid, part in groups.items())):
        results.update(collected)
    return results


async def _resumable(client: "AnthropicClient", todo: list[_Entry]) -> dict[str, list[_Entry]]:
    """batch id → the entries already submitted in it and not yet read (per the store)."""
    store, endpoint = client.batch_store, client.endpoint
    if store is None:
        return {}
    try:
        known = await store.pending(endpoint, [e.custom_id for e in todo])
    except Exception:  # noqa: BLE001 - without the store, submit anew
        log.exception("llm batch store unavailable")
        return {}
    groups: dict[str, list[_Entry]] = {}
    for e in todo:
        if e.custom_id in known:
            groups.setdefault(known[e.custom_id], []).append(e)
    for batch_id in list(groups):
        try:
            await _once(client, client.sdk.messages.batches.retrieve(batch_id))
        except TransportError as err:
            if err.status == 404:  # deleted, or another account's: those requests go into a new batch
                await _forget(client, batch_id, groups.pop(batch_id))
    if groups:
        log.info("llm batch: %d requests resume %d pending batches",
                 sum(len(p) for p in groups.values()), len(groups))
    return groups


async def _forget(client: "AnthropicClient", batch_id: str, entries: list[_Entry]) -> set[str]:
    """Drop the store's rows of these entries in this batch; the ids this caller removed."""
    ids = [e.custom_id for e in entries]
    if client.batch_store is None:
        return set(ids)
    try:
        return await client.batch_store.claim(client.endpoint, batch_id, ids)
    except Exception:  # noqa: BLE001 - then this worker accounts for them, as without a store
        log.exception("llm batch %s: store claim failed", batch_id)
        return set(ids)


def _split(entries: list[_Entry]) -> list[list[_Entry]]:
    parts: list[list[_Entry]] = []
    size = 0
    for e in entries:
        n = len(orjson.dumps(e.body)) + 200
        if not parts or len(parts[-1]) >= MAX_BATCH_REQUESTS or size + n > MAX_BATCH_BYTES:
            parts.append([])
            size = 0
        parts[-1].append(e)
        size += n
    return parts


async def _collect(client: "AnthropicClient", batch_id: str, entries: list[_Entry]) -> dict[str, LLMResult]:
    """Wait for one batch to end, then turn its results for ``entries`` into LLMResults."""
    ids = [e.custom_id for e in entries]
    problem, kind, gone = await _wait(client, batch_id, {e.req.job_id or "" for e in entries})
    found: dict[str, Any] = {}
    if problem is None:
        try:
            # No overall timeout: a large results file may take a while; the SDK's read timeout applies.
            found = await _call(client, lambda: _read_results(client, batch_id, set(ids)), timeout=None)
        except (TransportError, anthropic.AnthropicError) as err:
            # The batch ended and its results stay downloadable: the store's
            # rows stay, so the next attempt reads them instead of paying again.
            problem, kind = f"results of message batch {batch_id} unavailable: {one_line(err, ERROR_CHARS)}", "api"
    elif gone:
        await _forget(client, batch_id, entries)  # canceled or unknown: the next attempt submits anew

    results: dict[str, LLMResult] = {}
    batch_usage: dict[str, Usage] = {}  # what each answer cost, at the batch price
    for e in entries:
        item = found.get(e.custom_id)
        if problem is not None:
            results[e.custom_id] = _failed(client, e, kind, problem)
        elif item is None:
            results[e.custom_id] = _failed(client, e, "api", f"no result for this request in message batch {batch_id}")
        elif item.result.type == "succeeded":
            message = item.result.message.to_dict(mode="json")
            usage = Usage.from_api(message.get("usage"), client.config.price_for(e.model))
            usage.cost_usd *= client.config.batch_price_factor
            batch_usage[e.custom_id] = usage
            # Validation, repair and caching as in complete(). Usage() in: the
            # result's usage comes back as the repair call's alone.
            results[e.custom_id] = await client._settle(e.model, e.req, e.custom_id, e.body, message, Usage(), 1,
                                                         client._rng(e.custom_id))
        else:
            results[e.custom_id] = _failed(client, e, *_unanswered(item.result, batch_id))

    # Only the worker that claims a result pays for it in the accounting.
    claimed = await _forget(client, batch_id, entries) if problem is None else set()
    for e in entries:
        result = results[e.custom_id]
        if e.custom_id in batch_usage:
            paid = batch_usage[e.custom_id] if e.custom_id in claimed else Usage()
            if result.usage != Usage():
                await client._account(e.req, result)  # the repair call, at full price
            result.usage = paid + result.usage
            await _record(client, e.req, e.model, paid)
        else:
            await client._account(e.req, result)
    return results


async def _wait(client: "AnthropicClient", batch_id: str, job_ids: set[str]) -> tuple[str | None, str, bool]:
    """Poll until the batch ends: (None, "", False) once it has, else (reason, error kind,
    whether the batch is gone for good: canceled by us or unknown to the API)."""
    cfg, store = client.config, client.batch_store
    loop = asyncio.get_running_loop()
    deadline = loop.time() + cfg.batch_max_wait_s
    failures = 0
    while True:
        try:
            batch = await _once(client, client.sdk.messages.batches.retrieve(batch_id))
        except TransportError as err:
            failures += 1
            if not err.retryable or failures >= max(1, cfg.max_attempts):
                return f"message batch {batch_id} status unavailable: {err}", err.kind, not err.retryable
        else:
            failures = 0
            if batch.processing_status == "ended":
                return None, "", False
        left = deadline - loop.time()
        if left <= 0:
            await _cancel(client, batch_id)
            return f"message batch {batch_id} did not end within {cfg.batch_max_wait_s:g}s (canceled)", "timeout", True
        if store is not None:
            try:
                await store.keepalive(job_ids)
            except Exception:  # noqa: BLE001 - a missed heartbeat costs a re-drive at worst
                log.exception("llm batch %s: keepalive failed", batch_id)
        await client._sleep(min(cfg.batch_poll_s, left))


async def _read_results(client: "AnthropicClient", batch_id: str, wanted: set[str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    async for item in await client.sdk.messages.batches.results(batch_id):
        if item.custom_id in wanted:  # a resumed batch may hold other workers' requests too
            found[item.custom_id] = item
    return found


async def _cancel(client: "AnthropicClient", batch_id: str) -> None:
    """Best effort: nobody will read what the batch still produces."""
    try:
        await _once(client, client.sdk.messages.batches.cancel(batch_id))
    except TransportError as err:
        log.warning("llm batch %s: cancel failed: %s", batch_id, err)


def _unanswered(result: Any, batch_id: str) -> tuple[str, str]:
    if result.type == "errored":
        error = getattr(result.error, "error", None)
        etype = getattr(error, "type", "") or "error"
        kind = {"rate_limit_error": "rate_limited", "overloaded_error": "overloaded"}.get(etype, "api")
        return kind, f"batch request errored: {etype}: {getattr(error, 'message', '')}"
    if result.type == "expired":
        return "timeout", f"batch request expired before it was processed (message batch {batch_id})"
    return "api", f"batch request {result.type} (message batch {batch_id})"


def _failed(client: "AnthropicClient", e: _Entry, kind: str, error: str) -> LLMResult:
    return LLMResult(ok=False, error=one_line(redact(error), ERROR_CHARS), error_kind=kind, provider=client.provider,
                     model=e.model, attempts=1)


async def _record(client: "AnthropicClient", req: LLMRequest, model: str, usage: Usage) -> None:
    if client.sink is None:
        return
    try:
        await client.sink.record(req.job_id, req.stage or req.task, BATCH_PROVIDER, model, usage)
    except Exception:  # noqa: BLE001 - losing a row of accounting beats failing a paid-for answer
        log.exception("llm usage accounting failed for job %s", req.job_id)


async def _once(client: "AnthropicClient", call: Awaitable[T], timeout: float | None = -1.0) -> T:
    """One SDK call, its errors as TransportError. timeout: -1 = the client's (as complete()), None = none."""
    if timeout is not None and timeout < 0:
        # Belt and braces over the SDK's own timeout, as in complete().
        timeout = client.config.timeout_s * 2 + 5
    try:
        return await asyncio.wait_for(call, timeout)
    except anthropic.APIError as exc:
        raise transport_error(exc, client.config.timeout_s) from exc
    except asyncio.TimeoutError:
        raise TransportError("timeout", f"no answer within {timeout:.0f}s", retryable=True) from None


async def _call(client: "AnthropicClient", make: Callable[[], Awaitable[T]], timeout: float | None = -1.0) -> T:
    """An SDK call with the client's retry policy (attempts, backoff, max wait)."""
    cfg = client.config
    rng = client._rng("0" * 16)
    waited = 0.0
    for attempt in range(1, max(1, cfg.max_attempts) + 1):
        try:
            return await _once(client, make(), timeout)
        except TransportError as err:
            if not err.retryable or attempt >= cfg.max_attempts:
                raise
            delay = client._delay(attempt, err, rng)
            if waited + delay > cfg.max_wait_s:
                raise
            waited += delay
            await client._sleep(delay)
    raise AssertionError("unreachable")
