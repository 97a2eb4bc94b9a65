"""`flowfence receive`: an HTTP endpoint for Goldmane's push emitter, writing into the store.

Goldmane (Calico open source) keeps about an hour of flows in memory; with `PUSH_URL` set it
POSTs each 5-minute aggregation window as NDJSON (`Content-Type: application/x-ndjson`) and
retries, with back-off, until it gets `200 OK`. This server answers 200 only after the batch is
durably in the store (fsync'd Parquet, then the manifest: see ingest_store.py), so a crash
loses nothing that was acknowledged, and a batch sent again after a lost acknowledgement is
recognised by its sha256 and not stored twice.

Requests: `POST /` or `POST /flows`; `GET /healthz` for probes. Checks, in order:

- authentication: `Authorization: Bearer <token>` when a token is configured (401), and/or a
  client certificate signed by `tls_client_ca` (checked in the TLS handshake). Goldmane's
  emitter cannot send a bearer token; it presents a client certificate when its
  `CLIENT_CERT_PATH`/`CLIENT_KEY_PATH` are set (and checks ours against `CA_CERT_PATH` and
  `SERVER_NAME`);
- size: a Content-Length is required (411) and at most `max_body` bytes (413), and a gzip
  body (`Content-Encoding: gzip`, every member of it) may not inflate past `max_body` either
  (413), nor carry bytes after a member that are not another member (400);
- body: NDJSON flows; malformed lines are counted and logged and the rest stored, a body
  with no valid flow is refused (400, with the reason).

At most `max_concurrent` bodies are held at once; more get 503 with Retry-After. The core has
no signal handling: the command calls `shutdown()` on SIGTERM, which lets requests in flight
finish (`server_close` joins their threads).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import io
import json
import shutil
import socket
import ssl
import sys
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import duckdb

from flowfence.core.errors import ConfigError, FlowfenceError
from flowfence.ingest import convert as ingest
from flowfence.ingest import write
from flowfence.ingest.store import Entry, Store

PATHS = frozenset({"/", "/flows"})
CONTENT_TYPES = frozenset(
    {"application/x-ndjson", "application/jsonl", "application/json", "text/plain", ""}
)
DEFAULT_MAX_BODY = 16 << 20
SOCKET_TIMEOUT = 30.0


@dataclass(frozen=True)
class ReceiveConfig:
    store: Path
    host: str = "127.0.0.1"
    port: int = 8080
    token: str | None = None
    max_body: int = DEFAULT_MAX_BODY
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    format: ingest.Format = "auto"
    max_concurrent: int = 4

    def check(self) -> None:
        if self.token is not None and not self.token.strip():
            raise ConfigError("receive: the token is empty")
        if self.token is None and self.tls_client_ca is None:
            raise ConfigError(
                "receive: no authentication configured: give a token (--token-file or "
                "FLOWFENCE_RECEIVE_TOKEN) or --tls-client-ca for client certificates"
            )
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("receive: --tls-cert and --tls-key go together")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ConfigError("receive: --tls-client-ca needs --tls-cert and --tls-key")
        if self.max_body < 1:
            raise ConfigError("receive: --max-body must be positive")


@dataclass(frozen=True)
class BatchResult:
    """One request body: `stored` False when it was a duplicate or held no valid flow."""

    sha256: str
    stored: bool
    duplicate: bool
    lines: int
    rows: int
    malformed: int
    samples: tuple[write.Malformed, ...]


def ingest_batch(
    store: Store,
    con: duckdb.DuckDBPyConnection,
    body: bytes,
    parse: write.Parse,
    source: str,
) -> BatchResult:
    """Write one NDJSON body (already decompressed) into the store, durably, or recognise it
    as one already stored (a sender retrying after a lost acknowledgement)."""
    sha = hashlib.sha256(body).hexdigest()
    if sha in store.entries():
        return BatchResult(sha, False, True, 0, 0, 0, ())
    staging = store.new_staging()
    try:
        lines = enumerate(io.BytesIO(body), start=1)
        tally = write.write_lines(store, con, staging, sha, lines, parse, source)
        if tally.rows == 0:
            shutil.rmtree(staging, ignore_errors=True)
            samples = tuple(tally.samples)
            return BatchResult(sha, False, False, tally.lines, 0, tally.malformed, samples)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    entry = Entry(
        sha256=sha,
        source=source,
        format="batch",
        size=len(body),
        lines=tally.lines,
        rows=tally.rows,
        malformed=tally.malformed,
        ingested_at=ingest.now_text(),
    )
    stored = store.commit(staging, entry)
    return BatchResult(
        sha, stored, not stored, tally.lines, tally.rows, tally.malformed, tuple(tally.samples)
    )


# ---- files --------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() waits for requests in flight
    block_on_close = True
    receiver: Receiver


class Receiver:
    """The HTTP server bound to `config.host:config.port` (port 0 picks a free one)."""

    def __init__(self, config: ReceiveConfig, log: Callable[[str], None] | None = None) -> None:
        config.check()
        self.config = config
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self.store = Store(config.store)
        self.parse = ingest.row_parser(config.format)
        self.slots = threading.BoundedSemaphore(config.max_concurrent)
        self._db = ingest.connect(self.store)
        with self.store.locked():
            pass  # recover what an interrupted writer left, before the first request
        family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
        server_class = type("_BoundServer", (_Server,), {"address_family": family})
        try:
            self.server = server_class((config.host, config.port), _Handler)
        except OSError as exc:
            where = f"{config.host}:{config.port}"
            raise ConfigError(f"receive: cannot listen on {where}: {exc}") from None
        self.server.receiver = self
        if config.tls_cert is not None and config.tls_key is not None:
            context = _tls_context(config.tls_cert, config.tls_key, config.tls_client_ca)
            # The handshake runs in the request's thread (setup()), not in the accept loop.
            self.server.socket = context.wrap_socket(
                self.server.socket, server_side=True, do_handshake_on_connect=False
            )

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        scheme = "https" if self.config.tls_cert else "http"
        shown = f"[{host}]" if ":" in str(host) else str(host)
        return f"{scheme}://{shown}:{port}"

    def serve_forever(self) -> None:
        self.server.serve_forever(poll_interval=0.2)

    def shutdown(self) -> None:
        """Stop accepting; returns once serve_forever has returned (call from another thread)."""
        self.server.shutdown()

    def close(self) -> None:
        self.server.server_close()
        self._db.close()

    def cursor(self) -> duckdb.DuckDBPyConnection:
        return self._db.cursor()


def _tls_context(cert: Path, key: Path, client_ca: Path | None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
        if client_ca is not None:
            context.load_verify_locations(client_ca)
            context.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"receive: TLS files: {exc}") from None
    return context


class _Refused(Exception):
    def __init__(self, status: HTTPStatus, reason: str, headers: dict[str, str] | None = None):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or {}


def _inflate(body: bytes, limit: int) -> bytes:
    """A gzip body inflated, every member of it: a writer that appends makes several (`cat
    a.gz b.gz`), and acknowledging only the first would drop the rest. Anything after a member
    that is not another member (bar the NUL padding `gzip` itself skips) refuses the batch;
    the total may not inflate past `limit` (413)."""
    parts: list[bytes] = []
    total = 0
    rest = body
    while True:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            data = inflater.decompress(rest, limit + 1 - total)
        except zlib.error as exc:
            raise _Refused(HTTPStatus.BAD_REQUEST, f"bad gzip body: {exc}") from None
        total += len(data)
        parts.append(data)
        if total > limit or inflater.unconsumed_tail:
            raise _Refused(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"gzip body inflates past {limit} bytes"
            )
        if not inflater.eof:
            raise _Refused(HTTPStatus.BAD_REQUEST, "gzip body is truncated")
        rest = inflater.unused_data
        if not rest.strip(b"\0"):
            return b"".join(parts)
        if not rest.startswith(b"\x1f\x8b"):
            raise _Refused(
                HTTPStatus.BAD_REQUEST, "bad gzip body: data after a member is not a gzip member"
            )


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "flowfence-receive"
    sys_version = ""
    timeout = SOCKET_TIMEOUT

    def handle(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            try:
                self.request.do_handshake()
            except (OSError, ssl.SSLError) as exc:  # no or a wrong client certificate, ...
                self.log_message("TLS handshake failed: %s", exc)
                return
        with contextlib.suppress(ConnectionError, TimeoutError):
            super().handle()

    def log_message(self, format: str, *args: Any) -> None:
        self.server.receiver.log(f"receive: {self.client_address[0]} " + format % args)

    def do_GET(self) -> None:
        if self.path.split("?")[0] == "/healthz":
            self._reply(HTTPStatus.OK, {"status": "ok"})
        else:
            self._reply(HTTPStatus.NOT_FOUND, {"error": "not found"})

    def do_POST(self) -> None:
        receiver = self.server.receiver
        try:
            self._check_request(receiver.config)
            length = self._content_length(receiver.config.max_body)
            if not receiver.slots.acquire(blocking=False):
                raise _Refused(
                    HTTPStatus.SERVICE_UNAVAILABLE,
                    "too many batches in flight",
                    {"Retry-After": "5"},
                )
            try:
                body = self._read(length, receiver.config.max_body)
                result = self._store(receiver, body)
            finally:
                receiver.slots.release()
        except _Refused as refused:
            self.close_connection = True  # the body may be unread
            self._reply(refused.status, {"error": refused.reason}, refused.headers)
            return
        payload: dict[str, Any] = {
            "rows": result.rows,
            "malformed": result.malformed,
            "duplicate": result.duplicate,
        }
        if result.samples:
            payload["malformed_samples"] = [f"line {m.line}: {m.reason}" for m in result.samples]
            for m in result.samples:
                self.log_message("batch %s line %d: %s", result.sha256[:12], m.line, m.reason)
        self._reply(HTTPStatus.OK, payload)

    def _check_request(self, config: ReceiveConfig) -> None:
        if self.path.split("?")[0] not in PATHS:
            raise _Refused(HTTPStatus.NOT_FOUND, "not found: POST to / or /flows")
        if config.token is not None:
            given = self.headers.get("Authorization", "")
            scheme, _, credential = given.partition(" ")
            expected = config.token.strip().encode()
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                credential.strip().encode(), expected
            ):
                raise _Refused(
                    HTTPStatus.UNAUTHORIZED,
                    "missing or wrong bearer token",
                    {"WWW-Authenticate": 'Bearer realm="flowfence"'},
                )
        content_type = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type not in CONTENT_TYPES:
            raise _Refused(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, f"content type {content_type!r}")
        encoding = self.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("identity", "gzip", ""):
            raise _Refused(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, f"content encoding {encoding!r}")

    def _content_length(self, max_body: int) -> int:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise _Refused(HTTPStatus.LENGTH_REQUIRED, "chunked bodies are not accepted")
        raw = self.headers.get("Content-Length")
        if raw is None:
            raise _Refused(HTTPStatus.LENGTH_REQUIRED, "Content-Length is required")
        if not raw.strip().isdigit():
            raise _Refused(HTTPStatus.BAD_REQUEST, "bad Content-Length")
        length = int(raw)
        if length > max_body:
            raise _Refused(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body over the {max_body}-byte limit"
            )
        return length

    def _read(self, length: int, max_body: int) -> bytes:
        body = self.rfile.read(length)
        if len(body) != length:
            raise _Refused(HTTPStatus.BAD_REQUEST, "body shorter than its Content-Length")
        if self.headers.get("Content-Encoding", "").strip().lower() != "gzip":
            return body
        return _inflate(body, max_body)

    def _store(self, receiver: Receiver, body: bytes) -> BatchResult:
        if not body.strip():
            raise _Refused(HTTPStatus.BAD_REQUEST, "empty body")
        con = receiver.cursor()
        try:
            result = ingest_batch(
                receiver.store, con, body, receiver.parse, f"receive:{self.client_address[0]}"
            )
        except (OSError, duckdb.Error, FlowfenceError) as exc:
            # 500: nothing was acknowledged, the sender keeps the batch and retries.
            self.log_message("cannot store batch: %s", exc)
            raise _Refused(HTTPStatus.INTERNAL_SERVER_ERROR, "cannot store the batch") from None
        finally:
            con.close()
        if result.rows == 0 and not result.duplicate:
            first = result.samples[0] if result.samples else None
            why = f"line {first.line}: {first.reason}" if first else "no flow lines"
            raise _Refused(HTTPStatus.BAD_REQUEST, f"no valid flow in the batch ({why})")
        self.log_message(
            "batch %s: %d rows, %d malformed%s",
            result.sha256[:12],
            result.rows,
            result.malformed,
            " (duplicate, already stored)" if result.duplicate else "",
        )
        return result

    def _reply(
        self, status: HTTPStatus, payload: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        data = (json.dumps(payload, sort_keys=True) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
