"""Every request body has a size limit: 413 naming it, before more than the limit is read.

A pure ASGI middleware. A declared Content-Length over the limit is refused at once; a body
without one (chunked) is counted as it arrives and cut off at the limit. Release uploads may
be as large as LAMPLIGHTER_MAX_BUNDLE_BYTES; every other request LAMPLIGHTER_MAX_BODY_BYTES.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fleet.errors import error_body

UPLOAD_PATHS = ("/api/v1/releases",)  # bodies that are release bundles


def _declared_length(scope: Scope) -> int | None:
    for key, value in scope["headers"]:
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class BodyLimit:
    """Refuses request bodies larger than their endpoint's limit with 413 and the limit."""

    def __init__(self, app: ASGIApp, max_body: int, max_upload: int) -> None:
        self.app = app
        self.max_body = max_body
        self.max_upload = max_upload

    def limit_for(self, scope: Scope) -> int:
        return self.max_upload if scope["path"] in UPLOAD_PATHS else self.max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope)
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            await _refuse(send, limit)
            return
        seen = 0
        over = False  # the body passed the limit: whatever the app answers becomes the 413
        answered = False

        async def counted() -> Message:
            nonlocal seen, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    over = True  # read no further: the app sees the client go away
                    return {"type": "http.disconnect"}
            return message

        async def replaced(message: Message) -> None:
            nonlocal answered
            if not over:
                answered = answered or message["type"] == "http.response.start"
                await send(message)
            elif message["type"] == "http.response.start" and not answered:
                answered = True
                await _refuse(send, limit)

        try:
            await self.app(scope, counted, replaced)
        except Exception:
            if not over:
                raise
        if over and not answered:
            await _refuse(send, limit)


async def _refuse(send: Send, limit: int) -> None:
    body = json.dumps(error_body(413, f"request body larger than {limit} bytes, the limit for "
                                      "this endpoint")).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
