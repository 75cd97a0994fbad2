"""Decompress a zip member on a second core while the parser works on the first.

zlib releases the GIL while it inflates, so a background thread that reads the
member ahead keeps decompression (about a fifth of the work for a deflated
export) off the parser's path. The queue is short, so memory stays a few MiB.
"""

from __future__ import annotations

import queue
import threading

BLOCK = 1 << 20  # per read from the zip member: few GIL round trips per MiB
DEPTH = 4  # blocks queued ahead: at most ~4 MiB in flight
CHUNK = 1 << 16  # handed to the parser per read(), the size ijson asks for


class PrefetchReader:
    """``read(n)`` over a binary stream that a daemon thread reads ahead."""

    def __init__(self, raw) -> None:
        self._raw = raw
        self._queue: queue.Queue = queue.Queue(maxsize=DEPTH)
        self._stop = threading.Event()
        self._block = b""
        self._pos = 0
        self._done = False
        self._thread = threading.Thread(target=self._produce, name="soulprint-unzip", daemon=True)
        self._thread.start()

    def _produce(self) -> None:
        try:
            while not self._stop.is_set():
                data = self._raw.read(BLOCK)
                self._put(data)
                if not data:
                    return
        except BaseException as e:  # handed to the reading thread, raised there
            self._put(e)

    def _put(self, item) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def read(self, n: int = -1) -> bytes:
        if n == 0 or self._done:
            return b""
        if self._pos >= len(self._block):
            item = self._queue.get()
            if isinstance(item, BaseException):
                self._done = True
                raise item
            if not item:
                self._done = True
                return b""
            self._block, self._pos = item, 0
        size = CHUNK if n is None or n < 0 or n > CHUNK else n
        start = self._pos
        self._pos = start + size
        if start == 0 and self._pos >= len(self._block):
            return self._block
        return self._block[start:self._pos]

    def close(self) -> None:
        self._stop.set()
        while self._thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                self._queue.get_nowait()
            except queue.Empty:
                self._thread.join(0.05)
        self._raw.close()
