"""The `flowfence serve` web application: Starlette routes over one output directory.

    GET  /                      overview (sort, filter: ?sort=&desc=1&q=&status=)
    GET  /namespaces/NAME       a namespace: rules, changes, what it would deny, YAML, actions
    POST /namespaces/NAME       an action (accept, enforce, dismiss, reactivate); not with
                                --read-only, where the route answers 405
    GET  /map                   the traffic map

Pages are rendered server-side from Jinja2 templates with autoescaping (serve/templates/, with
report.html's macros and style sheet); nothing is loaded from elsewhere, and every response
forbids it (Content-Security-Policy). Writes are guarded by csrf.py.
"""

from __future__ import annotations

import secrets
from typing import Any

from markupsafe import Markup
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from flowfence.calico import names
from flowfence.core.errors import ConfigError, FlowfenceError
from flowfence.report import html
from flowfence.review import recording
from flowfence.serve import actions, csrf, pages

MAX_FORM_BYTES = 16 * 1024
MAX_FLASHES = 100
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "img-src data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
_ENV = html.environment("flowfence.serve")


class HostCheck:
    """Refuses a request whose Host is not a name of this server (DNS rebinding)."""

    def __init__(self, app: ASGIApp, guard: csrf.Guard) -> None:
        self.app, self.guard = app, guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = Request(scope).headers.get("host")
            if not self.guard.host_ok(host):
                response = PlainTextResponse("flowfence serve: unknown Host\n", status_code=403)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(site: pages.Site, guard: csrf.Guard) -> ASGIApp:
    flashes: dict[str, str] = {}  # Post/Redirect/Get: the message of an action, by a nonce
    try:
        author = recording.default_author(site.out)
    except ConfigError:
        author = "git user.name, else $USER"

    def render(request: Request, template: str, status: int = 200, **context: Any) -> Response:
        body = _ENV.get_template(template).render(
            site=site, token=guard.token, csrf_field=csrf.FIELD, author=author, **context
        )
        response = HTMLResponse(body, status_code=status, headers=HEADERS)
        if not site.read_only:
            response.set_cookie(
                csrf.COOKIE, guard.token, httponly=True, samesite="strict", path="/"
            )
        return response

    async def overview(request: Request) -> Response:
        loaded = pages.load(site)
        view = pages.overview(site, loaded, request.query_params) if loaded else None
        return render(request, "overview.html.j2", view=view)

    async def traffic(request: Request) -> Response:
        loaded = pages.load(site)
        map_svg = Markup(loaded.map_svg) if loaded and loaded.map_svg else None
        return render(request, "map.html.j2", loaded=loaded, map_svg=map_svg)

    def namespace_page(
        request: Request, namespace: str, *, status: int = 200, error: str | None = None
    ) -> Response:
        loaded = pages.load(site)
        detail = pages.detail(site, loaded, namespace) if loaded is not None else None
        if detail is None:
            return PlainTextResponse("no such namespace in the last run\n", status_code=404)
        flash = flashes.pop(request.query_params.get("done", ""), None)
        return render(request, "namespace.html.j2", status, detail=detail, flash=flash, error=error)

    def _name(request: Request) -> str | None:
        namespace = str(request.path_params["namespace"])
        return namespace if names.is_dns1123_label(namespace) else None

    async def namespace_get(request: Request) -> Response:
        namespace = _name(request)
        if namespace is None:
            return PlainTextResponse("not a namespace name\n", status_code=404)
        return namespace_page(request, namespace)

    async def namespace_post(request: Request) -> Response:
        namespace = _name(request)
        if namespace is None:
            return PlainTextResponse("not a namespace name\n", status_code=404)
        length = request.headers.get("content-length")
        if length is None or not length.isdigit() or int(length) > MAX_FORM_BYTES:
            return PlainTextResponse("form too large\n", status_code=413)
        form = await request.form(max_files=0, max_fields=10)
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        refusal = guard.refusal(
            host=request.headers.get("host"),
            origin=request.headers.get("origin"),
            referer=request.headers.get("referer"),
            cookie=request.cookies.get(csrf.COOKIE),
            form_token=fields.get(csrf.FIELD),
        )
        if refusal is not None:
            return PlainTextResponse(f"flowfence serve: refused: {refusal}\n", status_code=403)
        try:
            done = actions.act(site, namespace, fields)
        except FlowfenceError as exc:
            return namespace_page(request, namespace, status=400, error=str(exc))
        nonce = secrets.token_urlsafe(8)
        while len(flashes) >= MAX_FLASHES:  # messages nobody came back for
            flashes.pop(next(iter(flashes)))
        committed = f" (committed {done.committed[:12]})" if done.committed else ""
        flashes[nonce] = done.message + committed
        return RedirectResponse(f"/namespaces/{namespace}?done={nonce}", status_code=303)

    routes = [
        Route("/", overview, methods=["GET"]),
        Route("/map", traffic, methods=["GET"]),
        Route("/namespaces/{namespace}", namespace_get, methods=["GET"]),
    ]
    if not site.read_only:
        routes.append(Route("/namespaces/{namespace}", namespace_post, methods=["POST"]))

    async def failed(request: Request, exc: Exception) -> Response:
        # A report.json flowfence cannot read (another version's, a hand edit): say so.
        return PlainTextResponse(f"flowfence serve: {exc}\n", status_code=500)

    return HostCheck(Starlette(routes=routes, exception_handlers={FlowfenceError: failed}), guard)
