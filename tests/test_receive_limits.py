"""`flowfence receive` under slow and many clients: deadlines, connection caps, bounded SIGTERM.

Real servers on loopback, real sockets. Slow clients come from 127.0.0.2 (Linux routes all of
127.0.0.0/8 to loopback), fast ones from 127.0.0.1, so the per-client cap tells them apart.
Timings are generous: the assertions hold on a loaded two-core machine.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from http import HTTPStatus
from pathlib import Path

from ingest_export import goldmane_docs, raw_rows
from test_receive import AUTH, DATA, DEMO, TOKEN, count, start

from flowfence.ingest.receive import ReceiveConfig
from flowfence.ingest.receive_limits import ConnectionLimits

SLOW = "127.0.0.2"
SLOW_BODY = (DATA / "goldmane-batch.ndjson").read_bytes()


def head(length: int) -> bytes:
    return (
        f"POST / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
        f"Content-Type: application/x-ndjson\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


@dataclass
class Trickle:
    """A client that sends `data` a byte every `every` seconds, after `prefix` at once, until
    the server answers or closes, or `give_up` seconds pass (then `outcome` stays "open")."""

    port: int
    prefix: bytes
    data: bytes
    every: float = 1.0
    give_up: float = 20.0
    source: str = SLOW
    outcome: str = "open"
    reply: bytes = b""
    elapsed: float = 0.0

    def run(self, opened: threading.Event | None = None) -> None:
        began = time.monotonic()
        try:
            with socket.create_connection(
                ("127.0.0.1", self.port), timeout=30, source_address=(self.source, 0)
            ) as sock:
                if opened is not None:
                    opened.set()
                sock.sendall(self.prefix)
                for byte in self.data:
                    if self._answered(sock, began):
                        return
                    sock.sendall(bytes([byte]))
                while time.monotonic() - began < self.give_up:
                    if self._answered(sock, began):
                        return
        except OSError:  # reset or broken pipe: the server closed on us
            self.outcome = "closed"
            self.elapsed = time.monotonic() - began

    def _answered(self, sock: socket.socket, began: float) -> bool:
        if time.monotonic() - began >= self.give_up:
            return False
        readable, _, _ = select.select([sock], [], [], self.every)
        if not readable:
            return False
        self.reply = sock.recv(65536)
        self.outcome = "answered" if self.reply else "closed"
        self.elapsed = time.monotonic() - began
        return True


def trickling(clients: list[Trickle]) -> list[threading.Thread]:
    threads = [threading.Thread(target=c.run, daemon=True) for c in clients]
    for thread in threads:
        thread.start()
    return threads


def demo_batches(parts: int) -> list[bytes]:
    lines = [json.dumps(doc).encode() for doc in goldmane_docs(raw_rows(DEMO))]
    step = len(lines) // parts + 1
    return [b"\n".join(lines[i : i + step]) for i in range(0, len(lines), step)]


def test_slow_clients_are_cut_at_the_deadline_while_fast_ones_are_stored(tmp_path: Path) -> None:
    # The scenario scaled down: before, four clients trickling held the four body slots
    # and every other post got 503 until they stopped.
    store = tmp_path / "store"
    batches = demo_batches(60)[:8]  # small ones, one per posting thread: all in at once
    deadline = 8.0
    config = ReceiveConfig(
        store=store, port=0, token=TOKEN, request_timeout=deadline, max_connections_per_client=16
    )
    running = start(config)
    try:
        began = time.monotonic()
        slow = [Trickle(running.port, b"", head(len(SLOW_BODY))) for _ in range(4)]
        slow += [Trickle(running.port, head(len(SLOW_BODY)), SLOW_BODY) for _ in range(6)]
        threads = trickling(slow)
        time.sleep(0.5)  # the slow ones are connected and trickling

        def post(body: bytes) -> tuple[int, float]:
            status, _ = running.post(body, AUTH)
            return status, time.monotonic() - began

        with ThreadPoolExecutor(8) as pool:
            fast = list(pool.map(post, batches))
        for thread in threads:
            thread.join(30)
    finally:
        running.stop()
    assert [status for status, _ in fast] == [200] * len(batches)
    # all stored while every slow client was still trickling: nobody waited for them
    assert max(done for _, done in fast) < min(c.elapsed for c in slow)
    for client in slow:
        assert client.outcome != "open", "a slow client outlived the deadline"
        assert deadline - 0.5 < client.elapsed < deadline + 6  # cut at the deadline
        if client.outcome == "answered":
            assert client.reply.startswith(b"HTTP/1.1 408"), client.reply
    assert sum(c.outcome == "answered" for c in slow) >= 1  # a 408, not only closed sockets
    # every fast batch and nothing of the slow ones
    assert count(store) == sum(len(b.split(b"\n")) for b in batches)
    manifest = json.loads((store / "_ingest" / "manifest.json").read_text())
    assert len(manifest["entries"]) == len(batches)
    assert any("408" in line or "no whole request" in line for line in running.logs)


def connect(port: int, source: str) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(source, 0))


def read_answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (an answer may come in several segments)."""
    parts = []
    while part := sock.recv(65536):
        parts.append(part)
    return b"".join(parts)


def test_connections_past_the_per_client_cap_are_refused_others_served(tmp_path: Path) -> None:
    config = ReceiveConfig(store=tmp_path / "store", port=0, token=TOKEN, request_timeout=20.0)
    running = start(replace(config, max_connections_per_client=2))
    try:
        held = [connect(running.port, SLOW), connect(running.port, SLOW)]
        time.sleep(0.3)  # both accepted by the server
        with connect(running.port, SLOW) as third:
            third.sendall(head(len(SLOW_BODY)) + SLOW_BODY)
            reply = read_answer(third)
        assert reply.startswith(b"HTTP/1.1 429"), reply
        assert b"Retry-After: 5" in reply and b"more than 2 connections" in reply
        # another address is not held back by that client
        status, answer = running.post(SLOW_BODY, AUTH)
        assert status == 200 and answer["rows"] == 3
        # one of the two closes: the client gets its turn again
        held.pop().close()
        time.sleep(0.3)
        with connect(running.port, SLOW) as again:
            again.sendall(head(len(SLOW_BODY)) + SLOW_BODY)
            assert again.recv(65536).startswith(b"HTTP/1.1 200")
        for sock in held:
            sock.close()
    finally:
        running.stop()
    assert count(tmp_path / "store") == 3  # the refused copy was not stored, the retry deduplicated
    assert any("refused: more than 2 connections from 127.0.0.2" in line for line in running.logs)


def test_the_connection_limits_count_per_peer_and_in_all() -> None:
    limits = ConnectionLimits(per_client=2, total=3, request_timeout=1.0, log=print)
    assert limits.admit("10.0.0.1") is None and limits.admit("10.0.0.1") is None
    refused = limits.admit("10.0.0.1")
    assert refused is not None and refused.status == HTTPStatus.TOO_MANY_REQUESTS
    assert limits.admit("10.0.0.2") is None
    everyone = limits.admit("10.0.0.3")
    assert everyone is not None and everyone.status == HTTPStatus.SERVICE_UNAVAILABLE
    assert everyone.headers == {"Retry-After": "5"}
    limits.release("10.0.0.1")
    assert limits.admit("10.0.0.3") is None  # a slot came back
    for peer in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
        limits.release(peer)
    assert not limits.open


def test_a_request_whose_headers_never_end_gets_408(tmp_path: Path) -> None:
    config = ReceiveConfig(store=tmp_path / "store", port=0, token=TOKEN, request_timeout=2.0)
    running = start(config)
    try:
        began = time.monotonic()
        with connect(running.port, SLOW) as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")  # and nothing more
            reply = read_answer(sock)  # then closed
        assert reply.startswith(b"HTTP/1.1 408") and b"no whole request within 2s" in reply
        assert time.monotonic() - began < 2.0 + 6
        # a connection that sends nothing at all is closed too
        with connect(running.port, SLOW) as idle:
            assert idle.recv(65536).startswith(b"HTTP/1.1 408")
        # one deadline for headers and body: time spent on the headers is not given back
        began = time.monotonic()
        with connect(running.port, SLOW) as sock:
            sock.sendall(head(len(SLOW_BODY))[:20])
            time.sleep(1.5)
            sock.sendall(head(len(SLOW_BODY))[20:] + SLOW_BODY[:50])  # then the body stalls
            reply = read_answer(sock)
            took = time.monotonic() - began
        assert reply.startswith(b"HTTP/1.1 408") and b"body not received within 2s" in reply
        assert took < 2.0 + 1.0  # not 1.5 s more, as a deadline from the headers would give
    finally:
        running.stop()


def test_bodies_held_in_memory_are_bounded_over_all_requests(tmp_path: Path) -> None:
    # max_concurrent * max_body bytes of bodies at once, counted as they arrive
    config = ReceiveConfig(
        store=tmp_path / "store", port=0, token=TOKEN, max_body=64 << 10, max_concurrent=1
    )
    running = start(config)
    try:
        with connect(running.port, SLOW) as big, connect(running.port, SLOW) as trickler:
            trickler.sendall(head(len(SLOW_BODY)) + SLOW_BODY[:10])  # holds 10 bytes
            big.sendall(head(64 << 10) + b"x" * (60 << 10))  # holds 60 KiB, then stalls
            time.sleep(0.5)
            ten_kib = SLOW_BODY + b"\n" * (8 << 10)
            status, reply = running.post(ten_kib, AUTH)  # 10 KiB more: too much
            assert status == 503 and reply["error"] == "too many batches in flight"
            status, reply = running.post(SLOW_BODY, AUTH)  # 2 KiB still fits
            assert status == 200 and reply["rows"] == 3
            big.close()  # its bytes are given back
            time.sleep(0.5)
            status, reply = running.post(ten_kib, AUTH)
            assert status == 200 and reply["rows"] == 3
    finally:
        running.stop()
    assert count(tmp_path / "store") == 6


# ---- the command, as a process ---------------------------------------------------------------


def test_sigterm_stops_within_the_shutdown_timeout_despite_trickling_clients(
    tmp_path: Path,
) -> None:
    env = {**os.environ, "FLOWFENCE_RECEIVE_TOKEN": TOKEN}
    store = tmp_path / "store"
    cmd = [sys.executable, "-m", "flowfence.cli.app", "receive", "--store", str(store),
           "--listen", "127.0.0.1:0", "--request-timeout", "60",
           "--shutdown-timeout", "2"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    slow: list[Trickle] = []
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "listening on http://127.0.0.1:" in line, line
        port = int(line.split("http://127.0.0.1:")[1].split(",")[0])
        slow = [Trickle(port, b"", head(len(SLOW_BODY)), every=0.5, give_up=60) for _ in range(3)]
        slow += [
            Trickle(port, head(len(SLOW_BODY)), SLOW_BODY, every=0.5, give_up=60) for _ in range(3)
        ]
        trickling(slow)
        # an acknowledged batch, while they trickle
        with connect(port, "127.0.0.1") as sock:
            sock.sendall(head(len(SLOW_BODY)) + SLOW_BODY)
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        time.sleep(1.0)
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        took = time.monotonic() - signalled
        rest = proc.stderr.read()
        assert "SIGTERM" in rest and "stopped" in rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert took < 2 + 6, f"SIGTERM took {took:.1f}s with trickling clients"
    assert count(store) == 3  # the acknowledged batch, and nothing of the trickling ones
    assert all(c.outcome != "answered" or not c.reply.startswith(b"HTTP/1.1 200") for c in slow)
