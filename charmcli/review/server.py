"""Run the desk: a socket bound to loopback, uvicorn in this process, a clean stop on Ctrl-C/SIGTERM.

The socket is bound and listening *before* the URL is printed, so a browser (or a script reading
the URL) never races the server's start, and ``--port 0`` means "any free port" with the real one
in the URL. It is bound to ``127.0.0.1`` only: there is no option to bind elsewhere, because the
token in the URL would travel in clear text over a network. uvicorn runs in this process
(no workers, no reloader), so stopping it leaves nothing behind; on SIGINT/SIGTERM it stops
accepting, lets requests in flight finish (a sidecar write is never cut half-way; the writes are
atomic anyway), and returns.
"""

from __future__ import annotations

import secrets
import signal
import socket
from collections.abc import Callable

LOOPBACK = "127.0.0.1"


def new_token() -> str:
    """A fresh random token for one run (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def bind_loopback(port: int = 0) -> socket.socket:
    """A listening TCP socket on 127.0.0.1:``port`` (0 = a free port). Raises OSError if taken."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart right after a stop
        sock.bind((LOOPBACK, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def desk_url(sock: socket.socket, token: str) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{host}:{port}/?token={token}"


class _Stop(Exception):
    """Raised by our SIGTERM handler once uvicorn has shut down and re-raises the signal."""


def serve(app, sock: socket.socket, *, on_started: Callable[[], None] | None = None) -> None:
    """Serve ``app`` on ``sock`` until SIGINT/SIGTERM (or ``server.should_exit``); then return."""
    import uvicorn

    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                            timeout_graceful_shutdown=5, server_header=False)  # fmt: skip
    server = uvicorn.Server(config)
    if on_started is not None:
        original_startup = server.startup

        async def startup(sockets=None):  # type: ignore[no-untyped-def]
            await original_startup(sockets=sockets)
            on_started()

        server.startup = startup  # type: ignore[method-assign]

    def on_term(signum, frame):  # type: ignore[no-untyped-def]
        raise _Stop

    previous = signal.signal(signal.SIGTERM, on_term) if _main_thread() else None
    try:
        server.run(sockets=[sock])  # uvicorn re-raises the signal it caught after its graceful stop
    except (KeyboardInterrupt, _Stop):
        pass
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        sock.close()


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
