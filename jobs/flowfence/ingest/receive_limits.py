"""What one client, or all of them, may hold of `flowfence receive`: connections, time, memory.

uvicorn's HTTP/1.1 protocol bounds neither the time a request may take to arrive (its
keep-alive timer starts after a first answer and any byte restarts it) nor the connections one
peer holds, so slow clients could occupy the server. `protocol_class` returns its h11 protocol
with three additions, all on the event loop's thread:

- at most `per_client` open connections per peer address and `total` in all: one more is
  answered 429 (that peer) or 503 (everyone) with Retry-After, then closed;
- a deadline per request: it must arrive whole within `request_timeout` of its connection
  opening or of the previous answer on it. Until the headers are in, the protocol enforces it
  (408 and close); from then on the app does (it reads the body until `deadline(scope)`);
- nothing else: a request being stored is never cut by these timers.

`ByteBudget` bounds the request bodies held in memory over all requests; bytes are counted as
they arrive, so a client that trickles holds next to nothing of it.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.utils import get_remote_addr
from uvicorn.server import ServerState

from flowfence.ingest.receive_batch import Refused

RETRY_AFTER = "5"
# A refused connection is read and discarded this long after its answer, so the client gets
# the answer rather than a reset for the request bytes it already sent.
LINGER = 1.0
_DEADLINE = "flowfence.deadline"


def raw_reply(status: HTTPStatus, reason: str, headers: dict[str, str] | None = None) -> bytes:
    """A whole HTTP/1.1 answer closing the connection, for when h11 has no request to answer."""
    body = (json.dumps({"error": reason}, sort_keys=True) + "\n").encode()
    lines = [
        f"HTTP/1.1 {status.value} {status.phrase}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in (headers or {}).items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclass
class ConnectionLimits:
    """Open connections by peer address. Used only on the event loop's thread: no lock."""

    per_client: int
    total: int
    request_timeout: float
    log: Callable[[str], None]
    open: Counter[str] = field(default_factory=Counter)

    def admit(self, peer: str) -> Refused | None:
        """None and the connection counted, or why it is refused."""
        if sum(self.open.values()) >= self.total:
            return Refused(
                HTTPStatus.SERVICE_UNAVAILABLE,
                f"the receiver holds its {self.total} connections",
                {"Retry-After": RETRY_AFTER},
            )
        if self.open[peer] >= self.per_client:
            return Refused(
                HTTPStatus.TOO_MANY_REQUESTS,
                f"more than {self.per_client} connections from {peer}",
                {"Retry-After": RETRY_AFTER},
            )
        self.open[peer] += 1
        return None

    def release(self, peer: str) -> None:
        self.open[peer] -= 1
        if self.open[peer] <= 0:
            del self.open[peer]


def deadline(scope: Mapping[str, Any], default: float) -> float:
    """The event-loop time by which this request's body must be in."""
    value = scope.get("state", {}).get(_DEADLINE)
    return float(value) if value is not None else default


class ByteBudget:
    """Bytes of request bodies held at once, over all requests (event loop's thread only)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def take(self, size: int) -> None:
        if self.held + size > self.limit:
            raise Refused(
                HTTPStatus.SERVICE_UNAVAILABLE,
                "too many batches in flight",
                {"Retry-After": RETRY_AFTER},
            )
        self.held += size

    def give_back(self, size: int) -> None:
        self.held -= size


def protocol_class(limits: ConnectionLimits) -> type[H11Protocol]:
    """uvicorn's h11 protocol held to `limits` (pass it as `uvicorn.Config(http=...)`)."""
    return type("LimitedH11Protocol", (_LimitedProtocol,), {"limits": limits})


class _LimitedProtocol(H11Protocol):
    limits: ConnectionLimits

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.peer = ""
        self.admitted = False
        self.deadline = 0.0
        self.timer: asyncio.TimerHandle | None = None
        app = self.app

        async def with_deadline(scope: Any, receive: Any, send: Any) -> None:
            # scope["state"] is a copy per request: tell the app when this request runs out.
            scope["state"][_DEADLINE] = self.deadline
            await app(scope, receive, send)

        self.app = with_deadline

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        address = get_remote_addr(transport)
        self.peer = address[0] if address else ""
        refused = self.limits.admit(self.peer)
        if refused is not None:
            self.transport = transport
            self.limits.log(f"receive: {self.peer} refused: {refused.reason}")
            transport.write(raw_reply(refused.status, refused.reason, refused.headers))
            if transport.can_write_eof():
                transport.write_eof()
            self.timer = self.loop.call_later(LINGER, transport.close)
            return
        self.admitted = True
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self.admitted:
            super().data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if not self.admitted:
            return
        self.admitted = False
        self.limits.release(self.peer)
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        self._arm()  # before the next (maybe pipelined) request is handled
        super().on_response_complete()

    def _arm(self) -> None:
        self._disarm()
        timeout = self.limits.request_timeout
        self.deadline = self.loop.time() + timeout
        self.timer = self.loop.call_later(timeout, self._expire)

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _expire(self) -> None:
        self.timer = None
        if self.cycle is not None and not self.cycle.response_complete:
            return  # its headers are in: the app holds the request to the same deadline
        if self.transport.is_closing():
            return
        timeout = self.limits.request_timeout
        reason = f"no whole request within {timeout:g}s"
        self.limits.log(f"receive: {self.peer} {reason}, closing the connection")
        self.transport.write(raw_reply(HTTPStatus.REQUEST_TIMEOUT, reason))
        self.transport.close()
