"""`flowfence receive`: accept Goldmane's pushed flow batches over HTTP(S) into the store."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from flowfence.cli import options
from flowfence.cli.options import parse_size
from flowfence.core.errors import ConfigError
from flowfence.ingest import convert as ingest
from flowfence.ingest.receive import Receiver
from flowfence.ingest.receive_config import (
    DEFAULT_MAX_BODY,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
    DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_SHUTDOWN_TIMEOUT,
    ReceiveConfig,
)

TOKEN_ENV = "FLOWFENCE_RECEIVE_TOKEN"


def _token(token_file: Path | None) -> str | None:
    if token_file is not None:
        try:
            return token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"--token-file: {exc}") from None
    value = os.environ.get(TOKEN_ENV)
    return value.strip() if value is not None else None


def register(app: typer.Typer) -> None:
    @app.command("receive")
    def receive(
        store: Annotated[Path, typer.Option("--store", help="The store to write into.")],
        listen: Annotated[
            str, typer.Option("--listen", help="HOST:PORT to listen on (port 0: any free port).")
        ] = "127.0.0.1:8080",
        token_file: Annotated[
            Path | None,
            typer.Option(
                "--token-file",
                help=f"File holding the shared bearer token (default: ${TOKEN_ENV}).",
            ),
        ] = None,
        tls_cert: Annotated[
            Path | None, typer.Option("--tls-cert", help="Server certificate (PEM).")
        ] = None,
        tls_key: Annotated[
            Path | None, typer.Option("--tls-key", help="Server private key (PEM).")
        ] = None,
        tls_client_ca: Annotated[
            Path | None,
            typer.Option(
                "--tls-client-ca",
                help="Require client certificates signed by this CA (Goldmane's emitter mTLS).",
            ),
        ] = None,
        max_body: Annotated[
            str,
            typer.Option("--max-body", help="Largest request body, also after gzip inflation."),
        ] = "16MiB",
        fmt: Annotated[
            str, typer.Option("--format", help="auto, goldmane or enterprise lines.")
        ] = "auto",
        request_timeout: Annotated[
            float,
            typer.Option(
                "--request-timeout",
                help="Seconds a request has to arrive in whole (headers and body), from its "
                "connection opening or the previous answer on it; slower ones get 408.",
            ),
        ] = DEFAULT_REQUEST_TIMEOUT,
        max_connections_per_client: Annotated[
            int,
            typer.Option(
                "--max-connections-per-client",
                help="Open connections one peer address may hold; more are answered 429.",
            ),
        ] = DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
        max_connections: Annotated[
            int,
            typer.Option(
                "--max-connections", help="Open connections in all; more are answered 503."
            ),
        ] = DEFAULT_MAX_CONNECTIONS,
        shutdown_timeout: Annotated[
            float,
            typer.Option(
                "--shutdown-timeout",
                help="On SIGTERM, seconds requests in flight have to finish before they are "
                "cut (a batch already being stored is finished).",
            ),
        ] = DEFAULT_SHUTDOWN_TIMEOUT,
    ) -> None:
        """Serve an HTTP endpoint for Goldmane's push emitter (PUSH_URL) that writes each
        NDJSON batch into the store and answers 200 once it is on disk. Stops on SIGTERM once
        the batches in flight are stored, within --shutdown-timeout. Logs go to stderr."""
        host, port = options.parse_listen(listen, "[::1]:8080", any_host="0.0.0.0")
        config = ReceiveConfig(
            store=store,
            host=host,
            port=port,
            token=_token(token_file),
            max_body=parse_size(max_body, "--max-body") if max_body else DEFAULT_MAX_BODY,
            tls_cert=tls_cert,
            tls_key=tls_key,
            tls_client_ca=tls_client_ca,
            format=ingest.parse_format(fmt),
            request_timeout=request_timeout,
            max_connections_per_client=max_connections_per_client,
            max_connections=max_connections,
            shutdown_timeout=shutdown_timeout,
        )
        receiver = Receiver(config)

        def stop(signum: int, _frame: FrameType | None) -> None:
            receiver.log(f"receive: {signal.Signals(signum).name}, finishing batches in flight")
            receiver.shutdown(wait=0)

        # The server runs in a thread of its own so that the signals stay ours: uvicorn, in
        # the main thread, would re-raise SIGTERM once stopped and the exit code would be -15.
        serving = threading.Thread(target=receiver.serve_forever, name="receive")
        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            receiver.log(f"receive: listening on {receiver.url}, writing to {store}")
            serving.start()
            while serving.is_alive():
                serving.join(0.5)  # a timed join lets the signal handlers run
        finally:
            if serving.is_alive():
                receiver.shutdown()
            receiver.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        receiver.log("receive: stopped")
