"""The token gate alone, as ASGI: what it answers without the token for each kind of connection."""

from __future__ import annotations

import asyncio

from charmcli.review.app import TokenGate

TOKEN = "s3cret-token"


def _call(scope: dict) -> tuple[list[dict], list[dict]]:
    """(messages the gate sent, scopes that reached the app behind it)."""
    sent: list[dict] = []
    reached: list[dict] = []

    async def app(scope, receive, send):
        reached.append(scope)
        await send({"type": "app.reached"})

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    asyncio.run(TokenGate(app, TOKEN)(scope, receive, send))
    return sent, reached


def _http(query: bytes = b"", headers: list | None = None) -> dict:
    return {"type": "http", "method": "GET", "path": "/api/photos", "query_string": query, "headers": headers or []}


def test_without_the_token_the_answer_is_403_in_words_and_the_app_never_runs():
    sent, reached = _call(_http())
    assert reached == [] and sent[0]["status"] == 403
    assert sent[1]["body"] == b"403 Forbidden: this charm review URL needs its token"


def test_a_websocket_without_the_token_is_closed_as_a_policy_violation():
    sent, reached = _call({"type": "websocket", "path": "/ws", "query_string": b"", "headers": []})
    assert reached == [] and sent == [{"type": "websocket.close", "code": 1008}]
    sent, reached = _call({"type": "websocket", "path": "/ws", "query_string": b"token=" + TOKEN.encode(), "headers": []})
    assert len(reached) == 1 and sent == [{"type": "app.reached"}]


def test_the_token_opens_by_header_or_query_and_other_scopes_pass_untouched():
    for scope in (_http(b"token=" + TOKEN.encode()), _http(headers=[(b"x-charm-token", TOKEN.encode())]),
                  {"type": "lifespan"}):  # fmt: skip
        sent, reached = _call(scope)
        assert reached == [scope] and sent == [{"type": "app.reached"}]
