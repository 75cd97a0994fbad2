"""uvicorn inside our own event loop, beside the workers.

``ApiServer`` is a ``uvicorn.Server`` that installs no signal handlers: the
process that runs it (``soulprint serve``, a test) owns SIGINT and SIGTERM
and stops it with ``stop()`` (uvicorn's ``should_exit``). The listening socket
is bound first by ``bind``, so a port in use is one clear error before
anything starts, and port 0 gives a free port whose number is known at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

import uvicorn


class ServerError(RuntimeError):
    """The server could not listen or start; the message says why in one line."""


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port in TIME_WAIT, not one in use
    # Accepted connections inherit it: uvicorn writes a response's headers and body apart, and
    # with Nagle the body waited for the client's delayed ACK, ~45 ms on every request of a
    # kept-alive connection (bench/README.md, "Search at scale").
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ServerError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(2048)
    sock.set_inheritable(False)
    return sock


class ApiServer(uvicorn.Server):
    """Serves ``app`` on an already bound socket until ``stop()``."""

    def __init__(self, app, sock: socket.socket, *, graceful_s: float = 5.0) -> None:
        super().__init__(uvicorn.Config(app, lifespan="on", log_config=None, access_log=False,
                                        timeout_graceful_shutdown=graceful_s))
        self.sock = sock
        self._ready = asyncio.Event()
        self._task: asyncio.Task | None = None

    @property
    def url(self) -> str:
        host, port = self.sock.getsockname()[:2]
        return f"http://{f'[{host}]' if ':' in host else host}:{port}"

    @contextlib.contextmanager
    def capture_signals(self):
        """No signal handlers of uvicorn's own: the caller decides when to stop."""
        yield

    async def startup(self, sockets=None) -> None:
        try:
            await super().startup(sockets)
        except SystemExit:  # uvicorn's answer to a lifespan that failed (logged by uvicorn)
            self.should_exit = True
        finally:
            self._ready.set()

    async def start(self) -> str:
        """Start serving; returns the URL once connections are accepted (ServerError if it cannot start)."""
        self._task = asyncio.create_task(self.serve(sockets=[self.sock]), name="http")
        ready = asyncio.create_task(self._ready.wait())
        await asyncio.wait({self._task, ready}, return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        if not self.started:
            self.sock.close()
            await self._task  # its own exception, if it raised one
            raise ServerError("the HTTP app failed to start (see the log)")
        return self.url

    async def stop(self) -> None:
        """Stop accepting, let open requests finish (bounded), run the app's shutdown."""
        self.should_exit = True
        if self._task is not None:
            await self._task
