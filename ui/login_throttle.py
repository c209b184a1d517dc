"""Failed logins slow down per client: after each failed ``/login`` the client waits twice as long as
before (0.5 s, 1 s, 2 s, ... up to a minute) before another attempt is even checked; a success clears it.

An ASGI middleware, so Gradio's own login route stays as it is: an attempt during the wait is answered
429 with ``Retry-After`` and never reaches the password check, so guessing is bounded to a handful of
tries a minute whatever the request rate."""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

FIRST_DELAY_S = 0.5
MAX_DELAY_S = 60.0
FORGET_AFTER_S = 3600.0
"""A client's failures are forgotten after this long without an attempt."""

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass
class Failures:
    count: int = 0
    until: float = 0.0
    """monotonic time before which the client's next attempt is refused"""
    last: float = 0.0


class LoginThrottle:
    """Counts failed logins per client address and refuses attempts during the client's wait."""

    def __init__(self, app: ASGIApp, clock: Callable[[], float] = time.monotonic) -> None:
        self.app = app
        self.clock = clock
        self.failures: dict[str, Failures] = {}
        self.lock = threading.Lock()

    def wait_left(self, client: str) -> float:
        """Seconds ``client`` must still wait before its next attempt is checked (0: none)."""
        with self.lock:
            entry = self.failures.get(client)
            return max(0.0, entry.until - self.clock()) if entry else 0.0

    def record(self, client: str, success: bool) -> None:
        now = self.clock()
        with self.lock:
            for key in [k for k, v in self.failures.items() if now - v.last > FORGET_AFTER_S]:
                del self.failures[key]
            if success:
                self.failures.pop(client, None)
                return
            entry = self.failures.setdefault(client, Failures())
            entry.count += 1
            entry.last = now
            entry.until = now + min(MAX_DELAY_S, FIRST_DELAY_S * 2 ** (entry.count - 1))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        if (
            scope.get("type") != "http"
            or scope.get("method") != "POST"
            or not path.rstrip("/").endswith("/login")
        ):
            await self.app(scope, receive, send)
            return
        client = (scope.get("client") or ("?", 0))[0]
        wait = self.wait_left(client)
        if wait > 0:
            await refuse(send, wait)
            return
        status: list[int] = []

        async def watch(message: Message) -> None:
            if message.get("type") == "http.response.start":
                status.append(int(message.get("status", 0)))
            await send(message)

        await self.app(scope, receive, watch)
        if status and status[0] < 500:
            self.record(client, success=status[0] < 400)


async def refuse(send: Send, wait: float) -> None:
    """A 429 saying how long to wait."""
    seconds = math.ceil(wait)
    body = json.dumps({"detail": f"Too many failed logins: try again in {seconds} s."}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"retry-after", str(seconds).encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": 429, "headers": headers})
    await send({"type": "http.response.body", "body": body})
