"""The ASGI app of `flowfence receive` (Starlette): checks a posted batch, reads its body
against the request's deadline and the byte budget, stores it in a worker thread, answers.

A batch is answered 200 only once `ingest_batch` has committed it; everything else is answered
with the reason and stores nothing. Request bodies are read on the event loop, so a client that
trickles costs a coroutine and the bytes it sent, never a worker thread or a storing slot.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import anyio
import anyio.to_thread
import duckdb
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from flowfence.core.errors import FlowfenceError
from flowfence.ingest import write
from flowfence.ingest.receive_batch import BatchResult, Refused, inflate, ingest_batch
from flowfence.ingest.receive_config import ReceiveConfig
from flowfence.ingest.receive_limits import ByteBudget, deadline
from flowfence.ingest.store import Store

PATHS = ("/", "/flows")
CONTENT_TYPES = frozenset(
    {"application/x-ndjson", "application/jsonl", "application/json", "text/plain", ""}
)


@dataclass(frozen=True)
class Batches:
    """What the app needs to store batches; `db` is shared, each batch takes a cursor."""

    config: ReceiveConfig
    store: Store
    parse: write.Parse
    db: duckdb.DuckDBPyConnection
    log: Callable[[str], None]


def build(batches: Batches) -> Starlette:
    config = batches.config
    budget = ByteBudget(config.max_buffered)
    # Inflating and storing run in worker threads, `max_concurrent` at a time; the store's lock
    # serialises the commits themselves.
    storing = anyio.CapacityLimiter(config.max_concurrent)

    async def health(_request: Request) -> Response:
        return _reply(HTTPStatus.OK, {"status": "ok"})

    async def post(request: Request) -> Response:
        peer = request.client.host if request.client else ""
        held = 0
        try:
            _check_request(request.headers, config)
            length = _content_length(request.headers, config.max_body)
            parts: list[bytes] = []
            try:
                with anyio.fail_after(_remaining(request, config)):
                    async for chunk in request.stream():
                        budget.take(len(chunk))
                        held += len(chunk)
                        parts.append(chunk)
            except TimeoutError:
                raise Refused(
                    HTTPStatus.REQUEST_TIMEOUT,
                    f"body not received within {config.request_timeout:g}s",
                ) from None
            if held != length:  # h11 holds the client to its Content-Length; be sure
                raise Refused(HTTPStatus.BAD_REQUEST, "body shorter than its Content-Length")
            body = b"".join(parts)
            del parts
            gzipped = request.headers.get("content-encoding", "").strip().lower() == "gzip"
            result = await anyio.to_thread.run_sync(
                _store, batches, body, gzipped, peer, limiter=storing
            )
        except Refused as refused:
            batches.log(f"receive: {peer} {refused.status.value}: {refused.reason}")
            # The body may be unread: this connection carries no further request.
            return _reply(refused.status, {"error": refused.reason}, refused.headers, close=True)
        except ClientDisconnect:
            batches.log(f"receive: {peer} closed the connection before its body was in")
            return Response(status_code=HTTPStatus.BAD_REQUEST)  # nobody reads it
        finally:
            budget.give_back(held)
        return _reply(HTTPStatus.OK, _payload(result))

    async def not_found(request: Request, exc: Exception) -> Response:
        if isinstance(exc, HTTPException) and exc.status_code == HTTPStatus.METHOD_NOT_ALLOWED:
            status, reason = HTTPStatus.METHOD_NOT_ALLOWED, "method not allowed"
        elif request.method == "POST":
            status, reason = HTTPStatus.NOT_FOUND, "not found: POST to / or /flows"
        else:
            status, reason = HTTPStatus.NOT_FOUND, "not found"
        return _reply(status, {"error": reason}, close=request.method != "GET")

    routes = [Route("/healthz", health, methods=["GET"])]
    routes += [Route(path, post, methods=["POST"]) for path in PATHS]
    app = Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found})
    app.router.redirect_slashes = False
    return app


def _remaining(request: Request, config: ReceiveConfig) -> float:
    now = anyio.current_time()
    return max(0.0, deadline(request.scope, now + config.request_timeout) - now)


def _check_request(headers: Headers, config: ReceiveConfig) -> None:
    if config.token is not None:
        scheme, _, credential = headers.get("authorization", "").partition(" ")
        expected = config.token.strip().encode()
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            credential.strip().encode(), expected
        ):
            raise Refused(
                HTTPStatus.UNAUTHORIZED,
                "missing or wrong bearer token",
                {"WWW-Authenticate": 'Bearer realm="flowfence"'},
            )
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in CONTENT_TYPES:
        raise Refused(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, f"content type {content_type!r}")
    encoding = headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", "gzip", ""):
        raise Refused(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, f"content encoding {encoding!r}")


def _content_length(headers: Headers, max_body: int) -> int:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raise Refused(HTTPStatus.LENGTH_REQUIRED, "chunked bodies are not accepted")
    raw = headers.get("content-length")
    if raw is None:
        raise Refused(HTTPStatus.LENGTH_REQUIRED, "Content-Length is required")
    if not raw.strip().isdigit():
        raise Refused(HTTPStatus.BAD_REQUEST, "bad Content-Length")
    length = int(raw)
    if length > max_body:
        raise Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body over the {max_body}-byte limit")
    return length


def _store(batches: Batches, body: bytes, gzipped: bool, peer: str) -> BatchResult:
    """In a worker thread: inflate, write and commit one batch."""
    if gzipped:
        body = inflate(body, batches.config.max_body)
    if not body.strip():
        raise Refused(HTTPStatus.BAD_REQUEST, "empty body")
    con = batches.db.cursor()
    try:
        result = ingest_batch(batches.store, con, body, batches.parse, f"receive:{peer}")
    except (OSError, duckdb.Error, FlowfenceError) as exc:
        # 500: nothing was acknowledged, the sender keeps the batch and retries.
        batches.log(f"receive: {peer} cannot store batch: {exc}")
        raise Refused(HTTPStatus.INTERNAL_SERVER_ERROR, "cannot store the batch") from None
    finally:
        con.close()
    if result.rows == 0 and not result.duplicate:
        first = result.samples[0] if result.samples else None
        why = f"line {first.line}: {first.reason}" if first else "no flow lines"
        raise Refused(HTTPStatus.BAD_REQUEST, f"no valid flow in the batch ({why})")
    for m in result.samples:
        batches.log(f"receive: {peer} batch {result.sha256[:12]} line {m.line}: {m.reason}")
    duplicate = " (duplicate, already stored)" if result.duplicate else ""
    batches.log(
        f"receive: {peer} batch {result.sha256[:12]}: {result.rows} rows, "
        f"{result.malformed} malformed{duplicate}"
    )
    return result


def _payload(result: BatchResult) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "rows": result.rows,
        "malformed": result.malformed,
        "duplicate": result.duplicate,
    }
    if result.samples:
        payload["malformed_samples"] = [f"line {m.line}: {m.reason}" for m in result.samples]
    return payload


def _reply(
    status: HTTPStatus,
    payload: dict[str, Any],
    headers: dict[str, str] | None = None,
    close: bool = False,
) -> Response:
    extra = {**(headers or {}), **({"Connection": "close"} if close else {})}
    # sort_keys: the same answer byte for byte as before the move to Starlette
    return _SortedJSON(payload, status_code=status, headers=extra)


class _SortedJSON(JSONResponse):
    def render(self, content: Any) -> bytes:
        return (json.dumps(content, sort_keys=True) + "\n").encode()
