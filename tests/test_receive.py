"""`flowfence receive`: Goldmane's push emitter posting NDJSON batches over loopback.

Servers listen on 127.0.0.1 with port 0, in a thread (most tests) or as a real `flowfence
receive` process (signals). What they stored is read back with `sources.bind_flows`.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import duckdb
import pytest
from ingest_export import goldmane_docs, raw_rows, stored_rows
from tools import need

from flowfence.core.errors import ConfigError
from flowfence.flows import sources
from flowfence.ingest.convert import ingest
from flowfence.ingest.receive import ReceiveConfig, Receiver

DATA = Path(__file__).resolve().parent / "ingest_data"
DEMO = Path(__file__).resolve().parents[1] / "fixtures" / "data" / "demo"
TOKEN = "s3cr3t-token"
NDJSON = {"Content-Type": "application/x-ndjson"}
AUTH = {"Authorization": f"Bearer {TOKEN}", **NDJSON}


class Running:
    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver
        self.logs: list[str] = []
        self.host, self.port = receiver.address
        self.thread = threading.Thread(target=receiver.serve_forever, daemon=True)
        self.thread.start()

    def post(
        self, body: bytes, headers: dict[str, str], path: str = "/"
    ) -> tuple[int, dict[str, Any]]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, json.loads(response.read() or b"{}")
        finally:
            conn.close()

    def raw(self, request: bytes) -> bytes:
        with socket.create_connection((self.host, self.port), timeout=30) as sock:
            sock.sendall(request)
            return sock.recv(65536)

    def stop(self) -> None:
        self.receiver.shutdown()
        self.receiver.close()
        self.thread.join(10)


def start(config: ReceiveConfig) -> Running:
    logs: list[str] = []
    running = Running(Receiver(config, log=logs.append))
    running.logs = logs
    return running


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Running]:
    running = start(ReceiveConfig(store=tmp_path / "store", port=0, token=TOKEN, max_body=1 << 20))
    yield running
    running.stop()


def stored(store: Path) -> list[dict[str, Any]]:
    con = duckdb.connect()
    try:
        sources.bind_flows(con, store)
        query = "SELECT * FROM flows ORDER BY ALL"
        return list(con.sql(query).pl().iter_rows(named=True))
    finally:
        con.close()


count = stored_rows


def test_a_batch_is_acknowledged_once_durably_stored(server: Running, tmp_path: Path) -> None:
    body = (DATA / "goldmane-batch.ndjson").read_bytes()
    status, reply = server.post(body, AUTH)
    assert status == 200
    assert (reply["rows"], reply["malformed"], reply["duplicate"]) == (3, 2, False)
    assert reply["malformed_samples"][0].startswith("line 4: Key.source_type")
    # the acknowledgement came after the manifest entry and the files
    manifest = json.loads((tmp_path / "store" / "_ingest" / "manifest.json").read_text())
    entry = manifest["entries"][hashlib.sha256(body).hexdigest()]
    assert (entry["format"], entry["rows"], entry["source"]) == ("batch", 3, "receive:127.0.0.1")
    rows = stored(tmp_path / "store")
    assert sorted(r["dest_port"] for r in rows) == [5432, 7070, 8080]
    # Goldmane retries a batch whose acknowledgement was lost: stored once
    status, reply = server.post(body, AUTH, path="/flows")
    assert status == 200 and reply["duplicate"] is True
    assert count(tmp_path / "store") == 3


def test_gzip_batches_are_inflated(server: Running, tmp_path: Path) -> None:
    body = gzip.compress((DATA / "goldmane-batch.ndjson").read_bytes())
    status, reply = server.post(body, {**AUTH, "Content-Encoding": "gzip"})
    assert status == 200 and reply["rows"] == 3


def test_every_member_of_a_gzip_body_is_stored(server: Running, tmp_path: Path) -> None:
    # a gzip writer that appends makes one member per write (`cat a.gz b.gz`)
    lines = (DATA / "goldmane-batch.ndjson").read_bytes().splitlines(keepends=True)
    body = gzip.compress(b"".join(lines[:2]), mtime=0) + gzip.compress(b"".join(lines[2:]))
    status, reply = server.post(body, {**AUTH, "Content-Encoding": "gzip"})
    assert status == 200
    assert (reply["rows"], reply["malformed"]) == (3, 2)
    assert count(tmp_path / "store") == 3
    assert sorted(r["dest_port"] for r in stored(tmp_path / "store")) == [5432, 7070, 8080]


@pytest.mark.parametrize("tail", [b"trailing garbage", b"\x1f\x8b" + b"\0" * 20])
def test_a_gzip_body_with_a_bad_tail_stores_nothing(
    server: Running, tmp_path: Path, tail: bytes
) -> None:
    body = gzip.compress((DATA / "goldmane-batch.ndjson").read_bytes(), mtime=0) + tail
    status, reply = server.post(body, {**AUTH, "Content-Encoding": "gzip"})
    assert status == 400 and "bad gzip body" in reply["error"]
    assert not list((tmp_path / "store").glob("date=*"))


@pytest.mark.parametrize(
    ("headers", "path", "status"),
    [
        (NDJSON, "/", 401),
        ({**NDJSON, "Authorization": "Bearer wrong"}, "/", 401),
        ({**NDJSON, "Authorization": TOKEN}, "/", 401),
        (AUTH, "/elsewhere", 404),
        ({**AUTH, "Content-Type": "text/html"}, "/", 415),
        ({**AUTH, "Content-Encoding": "br"}, "/", 415),
    ],
)
def test_refused_requests_store_nothing(
    server: Running, tmp_path: Path, headers: dict[str, str], path: str, status: int
) -> None:
    got, reply = server.post((DATA / "goldmane-batch.ndjson").read_bytes(), headers, path)
    assert got == status and reply["error"]
    assert not list((tmp_path / "store").glob("date=*"))


@pytest.mark.parametrize(
    ("body", "encoding", "status", "reason"),
    [
        (b"this is not json\n{]\n", "", 400, "no valid flow in the batch (line 1: not JSON"),
        (b"\n\n", "", 400, "empty body"),
        (gzip.compress(b'{"Key":{}}\n', mtime=0)[:-6], "gzip", 400, "truncated"),
        (b"not gzip at all", "gzip", 400, "bad gzip body"),
        (gzip.compress(b" " * (3 << 20), mtime=0), "gzip", 413, "inflates past"),
    ],
)
def test_bad_bodies_get_a_reason(
    server: Running, body: bytes, encoding: str, status: int, reason: str
) -> None:
    headers = {**AUTH, "Content-Encoding": encoding} if encoding else AUTH
    got, reply = server.post(body, headers)
    assert got == status and reason in reply["error"]


def test_request_size_is_bounded_before_the_body_is_read(server: Running) -> None:
    head = f"POST / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
    too_big = server.raw(f"{head}Content-Length: {2 << 20}\r\n\r\n".encode())
    assert too_big.startswith(b"HTTP/1.1 413")
    assert server.raw(f"{head}\r\n".encode()).startswith(b"HTTP/1.1 411")
    chunked = server.raw(f"{head}Transfer-Encoding: chunked\r\n\r\n".encode())
    assert chunked.startswith(b"HTTP/1.1 411")


def test_the_demo_day_posted_as_batches_equals_ingesting_it(tmp_path: Path) -> None:
    rows = raw_rows(DEMO)
    lines = [json.dumps(doc).encode() for doc in goldmane_docs(rows)]
    running = start(ReceiveConfig(store=tmp_path / "received", port=0, token=TOKEN))
    try:
        step = len(lines) // 12 + 1
        for i in range(0, len(lines), step):
            body = b"\n".join(lines[i : i + step])  # Goldmane: no trailing newline
            gz = (i // step) % 2 == 1
            headers = {**AUTH, "Content-Encoding": "gzip"} if gz else AUTH
            status, reply = running.post(gzip.compress(body) if gz else body, headers)
            assert status == 200 and reply["malformed"] == 0
    finally:
        running.stop()
    (tmp_path / "batch.ndjson").write_bytes(b"\n".join(lines))
    ingest([tmp_path / "batch.ndjson"], tmp_path / "ingested")
    assert count(tmp_path / "received") == len(rows)
    assert stored(tmp_path / "received") == stored(tmp_path / "ingested")


def test_configuration_needs_authentication_and_paired_tls_files(tmp_path: Path) -> None:
    base = ReceiveConfig(store=tmp_path / "s", port=0)
    with pytest.raises(ConfigError, match="no authentication"):
        base.check()
    with pytest.raises(ConfigError, match="empty"):
        replace(base, token=" ").check()
    with pytest.raises(ConfigError, match="go together"):
        replace(base, token="t", tls_cert=tmp_path / "c").check()
    with pytest.raises(ConfigError, match="--request-timeout must be positive"):
        replace(base, token="t", request_timeout=0).check()
    with pytest.raises(ConfigError, match="connection limits"):
        replace(base, token="t", max_connections_per_client=0).check()


# ---- TLS -------------------------------------------------------------------------------------


def _openssl(*args: str, cwd: Path) -> None:
    openssl = need("openssl", "TLS certificates for the receiver")
    subprocess.run([openssl, *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all from openssl."""
    d = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=ca",
             "-keyout", "ca.key", "-out", "ca.crt", cwd=d)  # fmt: skip
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for name in ("server", "client"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                 "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)  # fmt: skip
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "2", "-extfile", "san.ext",
                 "-out", f"{name}.crt", cwd=d)  # fmt: skip
    return d


def test_tls_with_client_certificates(pki: Path, tmp_path: Path) -> None:
    config = ReceiveConfig(
        store=tmp_path / "store",
        port=0,
        tls_cert=pki / "server.crt",
        tls_key=pki / "server.key",
        tls_client_ca=pki / "ca.crt",
    )
    running = start(config)
    body = (DATA / "goldmane-batch.ndjson").read_bytes()
    try:
        assert running.receiver.url.startswith("https://127.0.0.1:")
        context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        context.load_cert_chain(pki / "client.crt", pki / "client.key")
        conn = http.client.HTTPSConnection(running.host, running.port, context=context, timeout=30)
        conn.request("POST", "/", body=body, headers=NDJSON)
        response = conn.getresponse()
        assert response.status == 200 and json.loads(response.read())["rows"] == 3
        conn.close()
        # no client certificate: the handshake fails, nothing is stored
        anonymous = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        conn = http.client.HTTPSConnection(
            running.host, running.port, context=anonymous, timeout=30
        )
        with pytest.raises((ssl.SSLError, ConnectionError, http.client.RemoteDisconnected)):
            conn.request("POST", "/", body=body, headers=NDJSON)
            conn.getresponse()
        conn.close()
    finally:
        running.stop()
    assert count(tmp_path / "store") == 3


# ---- the command, as a process ---------------------------------------------------------------


def test_sigterm_lets_the_batch_in_flight_finish(tmp_path: Path) -> None:
    env = {**os.environ, "FLOWFENCE_RECEIVE_TOKEN": TOKEN}
    store = tmp_path / "store"
    cmd = [sys.executable, "-m", "flowfence.cli.app", "receive", "--store", str(store),
           "--listen", "127.0.0.1:0"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "listening on http://127.0.0.1:" in line, line
        port = int(line.split("http://127.0.0.1:")[1].split(",")[0])
        body = (DATA / "goldmane-batch.ndjson").read_bytes()
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            head = (
                f"POST / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                f"Content-Type: application/x-ndjson\r\nContent-Length: {len(body)}\r\n\r\n"
            )
            sock.sendall(head.encode() + body[:100])
            time.sleep(0.5)  # the server is now reading this request's body
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            sock.sendall(body[100:])
            reply = sock.recv(65536)
        assert reply.startswith(b"HTTP/1.1 200"), reply
        assert proc.wait(timeout=30) == 0
        rest = proc.stderr.read()
        assert "SIGTERM" in rest and "stopped" in rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert count(store) == 3
