"""Signs every reply to a device request, so a node can tell the server's word from anyone's.

A pure ASGI middleware on /device/v1: each reply gets `X-Server-Time` and, once the request
was authenticated (fleet.auth.sign_replies_with put the key in the request's state),
`X-Reply-Signature` (fleet.core.crypto.sign_reply) over the request's nonce, the status, the
server time and the body's digest. Small replies are buffered to digest them; a bundle
download streams, and its signature covers the `X-Bundle-SHA256` it announces (the bundle is
checked against it, and is itself signed). A reply to a request that proved nothing (unknown
device, bad signature) goes unsigned, and the node refuses it.
"""

from __future__ import annotations

import hashlib
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fleet.auth import REPLY_KEY_STATE
from fleet.core.crypto import sign_reply

PREFIX = "/device/v1/"


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


class SignedReplies:
    """Adds X-Server-Time and X-Reply-Signature to the replies of /device/v1."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        nonce = _header(scope["headers"], b"x-nonce") or ""
        start: Message | None = None
        chunks: list[bytes] = []
        streaming = False

        def signed(message: Message, digest: str) -> Message:
            headers = [(k, v) for k, v in message.get("headers", [])
                       if k.lower() != b"x-server-time"]
            server_time = str(int(time.time()))
            headers.append((b"x-server-time", server_time.encode()))
            key = scope.get("state", {}).get(REPLY_KEY_STATE)
            if key is not None and nonce:
                mac = sign_reply(key, nonce, message["status"], server_time, digest)
                headers.append((b"x-reply-signature", mac.encode()))
            return {**message, "headers": headers}

        async def send_signed(message: Message) -> None:
            nonlocal start, streaming
            if message["type"] == "http.response.start":
                bundle = _header(message.get("headers", []), b"x-bundle-sha256")
                if bundle is not None:
                    streaming = True
                    await send(signed(message, bundle))
                else:
                    start = message
                return
            if message["type"] != "http.response.body" or streaming or start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = b"".join(chunks)
            await send(signed(start, hashlib.sha256(body).hexdigest()))
            await send({"type": "http.response.body", "body": body, "more_body": False})

        await self.app(scope, receive, send_signed)
