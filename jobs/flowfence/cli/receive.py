"""`flowfence receive`: accept Goldmane's pushed flow batches over HTTP(S) into the store."""

from __future__ import annotations

import os
import re
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from flowfence.cli.options import parse_size
from flowfence.core.errors import ConfigError
from flowfence.ingest import convert as ingest
from flowfence.ingest.receive import DEFAULT_MAX_BODY, ReceiveConfig, Receiver

TOKEN_ENV = "FLOWFENCE_RECEIVE_TOKEN"
_LISTEN = re.compile(r"\[?([^\[\]]*?)\]?:(\d{1,5})")


def parse_listen(text: str) -> tuple[str, int]:
    match = _LISTEN.fullmatch(text.strip())
    if match is None or int(match.group(2)) > 65535:
        raise ConfigError(f"--listen: {text!r} is not HOST:PORT (IPv6 as [::1]:8080)")
    return match.group(1) or "0.0.0.0", int(match.group(2))


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
    ) -> None:
        """Serve an HTTP endpoint for Goldmane's push emitter (PUSH_URL) that writes each
        NDJSON batch into the store and answers 200 once it is on disk. Stops on SIGTERM after
        the batches in flight are stored. Logs go to stderr."""
        host, port = parse_listen(listen)
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
        )
        receiver = Receiver(config)

        def stop(signum: int, _frame: FrameType | None) -> None:
            receiver.log(f"receive: {signal.Signals(signum).name}, finishing batches in flight")
            # shutdown() waits for serve_forever, which runs in this (the main) thread.
            threading.Thread(target=receiver.shutdown, daemon=True).start()

        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            receiver.log(f"receive: listening on {receiver.url}, writing to {store}")
            receiver.serve_forever()
        finally:
            receiver.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        receiver.log("receive: stopped")
