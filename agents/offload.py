"""Run a blocking iterator (the streaming parser) in a thread, consumed from the event loop.

Items cross over in batches through a small bounded queue: the parser can run
at most a few batches ahead of the producer, so memory stays constant however
large the export, and the event loop stays free for Kafka and Postgres I/O.
With ``weigh``, what is ahead is also bounded by weight: a batch ends once it
weighs ``batch_weight``, and the thread waits while ``ahead`` batches' worth
is handed over and not finished (so one large conversation at a time, not a
queue of them).
"""

from __future__ import annotations

import asyncio
import queue
import threading
from typing import AsyncIterator, Callable, Iterable, TypeVar

T = TypeVar("T")

_DONE = object()


async def iterate_in_thread(iterable: Iterable[T], *, batch_size: int = 64, ahead: int = 4,
                            weigh: Callable[[T], int] | None = None,
                            batch_weight: int = 1) -> AsyncIterator[list[T]]:
    loop = asyncio.get_running_loop()
    handoff: queue.Queue = queue.Queue(maxsize=ahead)
    cancelled = threading.Event()
    budget = ahead * batch_weight
    in_flight = [0]  # weight handed over and not yet finished by the consumer
    lighter = threading.Condition()

    def wait_lighter() -> None:
        with lighter:
            while in_flight[0] >= budget and not cancelled.is_set():
                lighter.wait(0.2)

    def release(weight: int) -> None:
        with lighter:
            in_flight[0] -= weight
            lighter.notify()

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
            weight = 0
            for item in iterable:
                batch.append(item)
                if weigh is not None:
                    weight += weigh(item)
                if len(batch) >= batch_size or (weigh is not None and weight >= batch_weight):
                    with lighter:
                        in_flight[0] += weight
                    if not put((batch, weight)):
                        return
                    batch, weight, item = [], 0, None
                    if weigh is not None:
                        wait_lighter()
            if batch:
                with lighter:
                    in_flight[0] += weight
                if not put((batch, weight)):
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
            batch, weight = item
            del item
            yield batch
            del batch  # finished with: the thread may go on
            release(weight)
    finally:
        cancelled.set()
        while True:  # unblock a producer waiting on a full queue
            try:
                handoff.get_nowait()
            except queue.Empty:
                break
        await worker
