"""The settings of `flowfence receive`: where it listens, who may post, and its limits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flowfence.core.errors import ConfigError
from flowfence.ingest import convert as ingest

DEFAULT_MAX_BODY = 16 << 20
DEFAULT_REQUEST_TIMEOUT = 30.0
DEFAULT_MAX_CONNECTIONS_PER_CLIENT = 8
DEFAULT_MAX_CONNECTIONS = 256
DEFAULT_SHUTDOWN_TIMEOUT = 10.0


@dataclass(frozen=True)
class ReceiveConfig:
    """`request_timeout`: a request must be in whole (headers and body) within this many
    seconds of its connection opening or of the previous answer on it (408, or the connection
    closed). `max_connections_per_client` open connections per peer address and
    `max_connections` in all; more are answered 429 / 503 and closed. `max_concurrent` batches
    are inflated and stored at once, and at most `max_concurrent * max_body` bytes of bodies are
    held in memory (503 past that). `shutdown_timeout`: SIGTERM exits within about this long,
    cutting requests still in flight (a batch already being stored is finished first)."""

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
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    max_connections_per_client: int = DEFAULT_MAX_CONNECTIONS_PER_CLIENT
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT

    @property
    def max_buffered(self) -> int:
        """Bytes of request bodies held at once, over all requests."""
        return self.max_concurrent * self.max_body

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
        if not self.request_timeout > 0:
            raise ConfigError("receive: --request-timeout must be positive")
        if not self.shutdown_timeout >= 0:
            raise ConfigError("receive: --shutdown-timeout may not be negative")
        if self.max_connections_per_client < 1 or self.max_connections < 1:
            raise ConfigError("receive: connection limits must be at least 1")
        if self.max_concurrent < 1:
            raise ConfigError("receive: at least one batch must be storable at once")
