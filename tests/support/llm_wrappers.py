"""LLM clients that wrap a real one, for tests of how stages behave around it.

``SlowLLM`` adds latency to each call (the offline provider answers in
microseconds, too fast to stop a worker in the middle of a full pass);
``FailingLLM`` answers a chosen task with a contained failure, as the real
layer does after its retries and repair.
"""

from __future__ import annotations

import asyncio
from contextlib import contextmanager

from soulprint.models.llm import LLMRequest, LLMResult, Usage
from soulprint.services.llm.base import LLMClient


# LLMClient subclasses: complete_many() (fact extraction) then goes through complete() here.
class SlowLLM(LLMClient):
    def __init__(self, inner, delay_s: float) -> None:
        self.inner = inner
        self.delay_s = delay_s
        self.calls = 0

    async def complete(self, request: LLMRequest) -> LLMResult:
        self.calls += 1
        await asyncio.sleep(self.delay_s)  # simulated provider latency
        return await self.inner.complete(request)


class FailingLLM(LLMClient):
    def __init__(self, inner, failing_tasks: set[str], error: str = "schema: answer failed validation twice") -> None:
        self.inner = inner
        self.failing_tasks = failing_tasks
        self.error = error

    async def complete(self, request: LLMRequest) -> LLMResult:
        if request.task in self.failing_tasks:
            return LLMResult(ok=False, data=None, text="", error=self.error, error_kind="schema", usage=Usage(),
                             cached=False, provider="test", model="test", offline=False)
        return await self.inner.complete(request)


@contextmanager
def llm_swapped(runtime, client):
    """Route a running worker's LLM calls (bulk and quick lanes) through ``client`` for a while."""
    previous = runtime.llm, runtime.quick_llm
    runtime.llm = runtime.quick_llm = client
    try:
        yield client
    finally:
        runtime.llm, runtime.quick_llm = previous
