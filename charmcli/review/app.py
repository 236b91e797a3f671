"""The desk's HTTP face: a Starlette app whose every request must carry the run's token.

Why Starlette (with uvicorn, see :mod:`.server`): typed path convertors (``{photo_id:int}``: a
request that does not name a photo by a number never reaches a handler), ASGI middleware that
sees every request before routing (the token and host gates below), sync handlers run in a thread
pool (decoding a photo does not stall the page), and a maintained production server instead of
``http.server``, whose own documentation calls it unfit for anything but trivial use.

The gates, outermost first:

1. **Host**: only ``127.0.0.1``/``localhost`` (plus the port) — a DNS-rebinding page served from
   another name gets 400 even before the token is checked.
2. **Token**: ``?token=`` or the ``X-Charm-Token`` header must equal the run's random token
   (constant-time compare), else 403 before routing: nothing is read, decoded or written.

Routes take photo ids only; the page's own three files are fixed names held in memory, so no
part of any URL is ever joined to a file-system path. Responses carry a Content-Security-Policy
that allows only the desk's own script, style and images, ``Referrer-Policy: no-referrer`` (the
token is in image URLs) and ``nosniff``.
"""

from __future__ import annotations

import hmac
import json
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from charmcli.review.desk import Desk, DeskError, DeskFilter
from charmcli.review.images import ImageCache, ImageError

TOKEN_HEADER = "X-Charm-Token"
ALLOWED_HOSTS = ("127.0.0.1", "localhost")
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Resource-Policy": "same-origin",
}
STATIC = {  # URL path → (file in charmcli/review/static, media type)
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/desk.js": ("desk.js", "text/javascript; charset=utf-8"),
    "/static/desk.css": ("desk.css", "text/css; charset=utf-8"),
}


class AsciiJSON(JSONResponse):
    """JSON with ``\\uXXXX`` escapes: a path that is not valid UTF-8 still serialises."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


def _error(message: str, status: int) -> Response:
    return AsciiJSON({"error": message}, status_code=status, headers={"Cache-Control": "no-store"})


class TokenGate:
    """403 for any request without the run's token, before routing (pure ASGI, nothing read)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()

    def _given(self, scope: Scope) -> str | None:
        header = Headers(scope=scope).get(TOKEN_HEADER)
        if header:
            return header
        values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
        return values[0] if values else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        given = self._given(scope)
        if given is None or not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), self.token):
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            response = PlainTextResponse("403 Forbidden: this charm review URL needs its token", status_code=403)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


class SecurityHeaders:
    """Adds :data:`SECURITY_HEADERS` to every response (errors and 403s included)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for key, value in SECURITY_HEADERS.items():
                    headers.setdefault(key, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _static_files() -> dict[str, tuple[bytes, str]]:
    folder = resources.files("charmcli.review") / "static"
    return {url: ((folder / name).read_bytes(), media) for url, (name, media) in STATIC.items()}


def create_app(desk: Desk, cache: ImageCache, token: str, *, allowed_hosts: tuple[str, ...] = ALLOWED_HOSTS) -> Starlette:
    """The ASGI app for one desk and one token."""
    files = _static_files()
    page, media = files["/"]  # the page links its script and style with the token (they are gated too)
    files["/"] = (page.replace(b"__TOKEN__", token.encode("ascii")), media)

    def static(request: Request) -> Response:
        body, media = files[request.url.path]
        return Response(body, media_type=media, headers={"Cache-Control": "no-store"})

    def info(request: Request) -> Response:
        return AsciiJSON(desk.facets(), headers={"Cache-Control": "no-store"})

    def photos(request: Request) -> Response:
        try:
            flt = DeskFilter.from_query(dict(request.query_params))
            return AsciiJSON(desk.photos(flt), headers={"Cache-Control": "no-store"})
        except DeskError as exc:
            return _error(str(exc), exc.status)

    def photo(request: Request) -> Response:
        try:
            entry = desk.entry(request.path_params["photo_id"])
        except DeskError as exc:
            return _error(str(exc), exc.status)
        return AsciiJSON(desk.public(entry), headers={"Cache-Control": "no-store"})

    def picture(kind: str):
        def handler(request: Request) -> Response:
            try:
                entry = desk.entry(request.path_params["photo_id"])
                if kind == "full":
                    body = cache.full(entry)
                elif kind == "explain":
                    score = desk.store.score_for(entry["_sha256"], desk.model, entry["_checkpoint_id"],
                                                 entry["_preprocess"], entry["_precision"]) or {}  # ranked by it
                    body = cache.explain(entry, score)
                else:
                    body = cache.get(entry, kind)
            except (DeskError, ImageError) as exc:
                return _error(str(exc), exc.status)
            # The URL holds this run's token, so a browser cache entry dies with the run.
            return Response(body, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

        return handler

    def decider(field: str):
        method = desk.set_rating if field == "rating" else desk.set_label

        async def handler(request: Request) -> Response:
            try:
                payload = await request.json()
            except (ValueError, UnicodeDecodeError):
                return _error(f'the body must be JSON, e.g. {{"{field}": ...}}', 400)
            if not isinstance(payload, dict) or field not in payload:
                return _error(f"the body must be a JSON object with {field!r}", 400)
            try:  # the sidecar write runs in the thread pool: the event loop keeps serving
                result = await run_in_threadpool(method, request.path_params["photo_id"], payload[field])
            except DeskError as exc:
                return _error(str(exc), exc.status)
            return AsciiJSON(result, headers={"Cache-Control": "no-store"})

        return handler

    routes = [Route(url, static, methods=["GET"]) for url in STATIC]
    routes += [
        Route("/api/info", info, methods=["GET"]),
        Route("/api/photos", photos, methods=["GET"]),
        Route("/api/photos/{photo_id:int}", photo, methods=["GET"]),
        Route("/api/photos/{photo_id:int}/rating", decider("rating"), methods=["POST"]),
        Route("/api/photos/{photo_id:int}/label", decider("label"), methods=["POST"]),
    ]
    routes += [Route(f"/api/photos/{{photo_id:int}}/{k}", picture(k), methods=["GET"])
               for k in ("thumb", "preview", "full", "explain")]  # fmt: skip
    middleware = [
        Middleware(SecurityHeaders),
        Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts), www_redirect=False),
        Middleware(TokenGate, token=token),
    ]
    return Starlette(routes=routes, middleware=middleware)
