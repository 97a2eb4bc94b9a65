"""`flowfence receive`: an HTTP endpoint for Goldmane's push emitter, writing into the store.

Goldmane (Calico open source) keeps about an hour of flows in memory; with `PUSH_URL` set it
POSTs each 5-minute aggregation window as NDJSON (`Content-Type: application/x-ndjson`) and
retries, with back-off, until it gets `200 OK`. This server answers 200 only after the batch is
durably in the store (fsync'd Parquet, then the manifest: see ingest_store.py), so a crash
loses nothing that was acknowledged, and a batch sent again after a lost acknowledgement is
recognised by its sha256 and not stored twice.

Requests: `POST /` or `POST /flows`; `GET /healthz` for probes. Checks, in order:

- connections: at most `max_connections_per_client` open per peer address (429) and
  `max_connections` in all (503), refused before anything is read (receive_limits.py);
- time: each request must be in whole within `request_timeout` of its connection opening or of
  the previous answer on it (408, or the connection closed while its headers trickle);
- authentication: `Authorization: Bearer <token>` when a token is configured (401), and/or a
  client certificate signed by `tls_client_ca` (checked in the TLS handshake). Goldmane's
  emitter cannot send a bearer token; it presents a client certificate when its
  `CLIENT_CERT_PATH`/`CLIENT_KEY_PATH` are set (and checks ours against `CA_CERT_PATH` and
  `SERVER_NAME`);
- size: a Content-Length is required (411) and at most `max_body` bytes (413), and a gzip
  body (`Content-Encoding: gzip`, every member of it) may not inflate past `max_body` either
  (413), nor carry bytes after a member that are not another member (400); bodies held at
  once may not pass `max_concurrent * max_body` bytes (503 with Retry-After);
- body: NDJSON flows; malformed lines are counted and logged and the rest stored, a body
  with no valid flow is refused (400, with the reason).

The server is uvicorn (h11) running the Starlette app of receive_app.py. The core has no signal
handling: the command calls `shutdown()` on SIGTERM; requests in flight then have until
`shutdown_timeout` to finish (a batch already being stored is always finished) and
`serve_forever` returns.
"""

from __future__ import annotations

import logging
import math
import ssl
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import uvicorn

from flowfence.core import listening
from flowfence.core.errors import ConfigError
from flowfence.ingest import convert as ingest
from flowfence.ingest.receive_app import Batches, build
from flowfence.ingest.receive_batch import BatchResult, ingest_batch
from flowfence.ingest.receive_config import DEFAULT_MAX_BODY, ReceiveConfig
from flowfence.ingest.receive_limits import ConnectionLimits, protocol_class
from flowfence.ingest.store import Store

__all__ = ["DEFAULT_MAX_BODY", "BatchResult", "ReceiveConfig", "Receiver", "ingest_batch"]

# An idle keep-alive connection is closed after this long (Goldmane posts every 5 minutes).
KEEP_ALIVE = 5
# The largest request line plus headers h11 buffers (its default); more is a 400.
MAX_HEADER_BYTES = 16 << 10


class Receiver:
    """The HTTP server bound to `config.host:config.port` (port 0 picks a free one)."""

    def __init__(self, config: ReceiveConfig, log: Callable[[str], None] | None = None) -> None:
        config.check()
        self.config = config
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self.store = Store(config.store)
        self._db = ingest.connect(self.store)
        with self.store.locked():
            pass  # recover what an interrupted writer left, before the first request
        self.socket = listening.listen(config.host, config.port, "receive")
        batches = Batches(config, self.store, ingest.row_parser(config.format), self._db, self.log)
        limits = ConnectionLimits(
            per_client=config.max_connections_per_client,
            total=config.max_connections,
            request_timeout=config.request_timeout,
            log=self.log,
        )
        server_config = uvicorn.Config(
            build(batches),
            http=protocol_class(limits),
            ws="none",
            lifespan="off",
            loop="asyncio",
            # The peer address is who the client is: never a header it sent.
            proxy_headers=False,
            server_header=False,
            access_log=False,
            log_config=None,
            timeout_keep_alive=max(1, min(KEEP_ALIVE, int(config.request_timeout))),
            timeout_graceful_shutdown=math.ceil(config.shutdown_timeout),
            h11_max_incomplete_event_size=MAX_HEADER_BYTES,
            ssl_certfile=str(config.tls_cert) if config.tls_cert else None,
            ssl_context_factory=_tls_factory(config),
        )
        self._errors = _LogHandler(self.log)
        logging.getLogger("uvicorn.error").addHandler(self._errors)
        try:
            server_config.load()  # builds the TLS context: bad files are a ConfigError here
        except BaseException:
            self.close()
            raise
        self.server = uvicorn.Server(server_config)
        self._stopped = threading.Event()

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.socket.getsockname()[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        scheme = "https" if self.config.tls_cert else "http"
        shown = f"[{host}]" if ":" in host else host
        return f"{scheme}://{shown}:{port}"

    def serve_forever(self) -> None:
        """Serve until `shutdown()`. Call it from a thread other than the main one: in the main
        thread uvicorn would take over SIGTERM and SIGINT."""
        try:
            self.server.run(sockets=[self.socket])
        finally:
            self._stopped.set()

    def shutdown(self, wait: float | None = None) -> None:
        """Stop accepting and let requests in flight finish (at most `shutdown_timeout`);
        returns once serve_forever has returned, or after `wait` seconds."""
        self.server.should_exit = True
        self._stopped.wait(wait)

    def close(self) -> None:
        logging.getLogger("uvicorn.error").removeHandler(self._errors)
        self.socket.close()
        self._db.close()

    def cursor(self) -> duckdb.DuckDBPyConnection:
        return self._db.cursor()


def _tls_factory(config: ReceiveConfig) -> Any:
    if config.tls_cert is None or config.tls_key is None:
        return None
    cert, key, client_ca = config.tls_cert, config.tls_key, config.tls_client_ca

    def factory(_config: uvicorn.Config, _default: Any) -> ssl.SSLContext:
        return _tls_context(cert, key, client_ca)

    return factory


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


class _LogHandler(logging.Handler):
    """uvicorn's own warnings and errors (a bad request line, tasks cut at shutdown) into our
    log, one line each."""

    def __init__(self, log: Callable[[str], None]) -> None:
        super().__init__(logging.WARNING)
        self.log = log

    def emit(self, record: logging.LogRecord) -> None:
        self.log(f"receive: {record.getMessage()}")
