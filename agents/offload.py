"""Run a blocking iterator (the streaming parser) in a thread, consumed from the event loop.

Items cross over in batches through a small bounded queue: the parser can run
at most a few batches ahead of the producer, so memory stays constant however
large the export, and the event loop stays free for Kafka and Postgres I/O.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from typing import AsyncIterator, Iterable, TypeVar

T = TypeVar("T")

_DONE = object()


async def iterate_in_thread(iterable: Iterable[T], *, batch_size: int = 64, ahead: int = 4) -> AsyncIterator[list[T]]:
    loop = asyncio.get_running_loop()
    handoff: queue.Queue = queue.Queue(maxsize=ahead)
    cancelled = threading.Event()

    def put(item) -> bool:
        """Blocking put from the thread; False once the consumer has gone away."""
        while not cancelled.is_set():
            try:
                handoff.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            batch: list[T] = []
            for item in iterable:
                batch.append(item)
                if len(batch) >= batch_size:
                    if not put(batch):
                        return
                    batch = []
            if batch and not put(batch):
                return
            put(_DONE)
        except BaseException as exc:  # handed to the consumer, raised there
            put(exc)

    worker = loop.run_in_executor(None, produce)
    try:
        while True:
            item = await loop.run_in_executor(None, handoff.get)
            if item is _DONE:
                break
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        cancelled.set()
        while True:  # unblock a producer waiting on a full queue
            try:
                handoff.get_nowait()
            except queue.Empty:
                break
        await worker
