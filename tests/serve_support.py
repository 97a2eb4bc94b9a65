"""Helpers for the `flowfence serve` tests (no tests here): start the real command (uvicorn on
127.0.0.1, a free port) in a subprocess, and speak HTTP to it with the standard library, so
every request goes through the same stack a browser's does."""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: str


@dataclass
class Server:
    port: int
    process: subprocess.Popen[bytes]
    cookies: dict[str, str] = field(default_factory=dict)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def request(
        self,
        method: str,
        path: str,
        *,
        form: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        cookies: bool = True,
    ) -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        sent = dict(headers or {})
        if cookies and self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urlencode(form)
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            conn.request(method, path, body=body, headers=sent)
            response = conn.getresponse()
            text = response.read().decode("utf-8")
            got = {k.lower(): v for k, v in response.getheaders()}
            for value in response.headers.get_all("set-cookie") or ():
                name, _, rest = value.partition("=")
                self.cookies[name] = rest.split(";", 1)[0]
            return Reply(response.status, got, text)
        finally:
            conn.close()

    def get(self, path: str, **kwargs: object) -> Reply:
        return self.request("GET", path, **kwargs)  # type: ignore[arg-type]

    def token(self, path: str) -> str:
        """The form token of the page at `path` (and its cookie, kept for the next request)."""
        page = self.get(path).body
        found = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert found, "the page has no action form"
        return found.group(1)

    def post(self, path: str, form: dict[str, str], **kwargs: object) -> Reply:
        headers = {"Origin": self.origin, **kwargs.pop("headers", {})}  # type: ignore[dict-item]
        return self.request("POST", path, form=form, headers=headers, **kwargs)  # type: ignore[arg-type]


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO / "jobs"), str(REPO), *filter(None, [env.get("PYTHONPATH")])]
    )
    return env


@contextlib.contextmanager
def serving(
    out: Path, *args: str, env: dict[str, str] | None = None, host: str = "127.0.0.1"
) -> Iterator[Server]:
    """`flowfence serve OUT ARGS...` on a free port of `host` (reached on loopback), stopped
    on exit; `env` is added to the environment."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "flowfence.cli", "serve", str(out),
         "--listen", f"{host}:{port}", *args],
        env={**environment(), **(env or {})},
        stderr=subprocess.PIPE,
    )  # fmt: skip
    server = Server(port, process)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                err = process.stderr.read().decode() if process.stderr else ""
                raise AssertionError(f"serve exited with {process.returncode}: {err}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr:
            process.stderr.close()
