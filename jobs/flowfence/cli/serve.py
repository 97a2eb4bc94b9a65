"""`flowfence serve DIR`: review the output directory in a browser (serve/app.py on uvicorn).

It listens on the loopback interface by default. Any other address is refused unless
`--allow-remote` says so: the pages show the cluster's traffic and, without `--read-only`,
anyone who can reach them can record decisions (there is no login; put it behind an
authenticating proxy). Stops on Ctrl-C.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import uvicorn

from flowfence.cli import options
from flowfence.core import listening
from flowfence.core.errors import ConfigError
from flowfence.serve import app as serve_app
from flowfence.serve import csrf, pages


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve(
        out: Annotated[
            Path, typer.Argument(help="The output directory of `flowfence run` (its --out).")
        ],
        listen: Annotated[
            str, typer.Option("--listen", help="HOST:PORT to listen on.")
        ] = "127.0.0.1:8765",
        read_only: Annotated[
            bool, typer.Option("--read-only", help="Serve the pages without the actions.")
        ] = False,
        git_commit: Annotated[
            bool,
            typer.Option(
                "--git-commit",
                help="Commit decisions.yaml (with DIR's policies and report.md) after each "
                "action, as `run --git-commit` does.",
            ),
        ] = False,
        state: Annotated[
            Path | None,
            typer.Option(
                "--state",
                envvar="FLOWFENCE_STATE",
                help="The run's state directory (default DIR/state): the stored flows a "
                "policy is replayed over.",
            ),
        ] = None,
        existing_policies: Annotated[
            Path | None,
            typer.Option(
                "--existing-policies",
                help="The policies already in the cluster (as given to run): earlier tiers "
                "and network sets for the replay.",
                exists=True,
            ),
        ] = None,
        allow_remote: Annotated[
            bool,
            typer.Option(
                "--allow-remote",
                help="Allow a --listen address other than loopback (no login: anyone who "
                "reaches it can decide).",
            ),
        ] = False,
        now: options.Now = None,
    ) -> None:
        """Review DIR in a browser: overview, namespaces, traffic map, and the actions."""
        host, port = options.parse_listen(listen, "[::1]:8765")
        if not out.is_dir():
            raise ConfigError(f"{out}: not a directory (the --out of flowfence run)")
        if not csrf.is_loopback(host):
            if not allow_remote:
                raise ConfigError(
                    f"--listen {listen}: not a loopback address; the pages have no login. "
                    "Add --allow-remote to listen there anyway (behind an authenticating "
                    "proxy)"
                )
            typer.echo(
                f"flowfence: warning: listening on {host}, beyond this machine, without a "
                "login" + ("" if read_only else "; anyone who reaches it can record decisions"),
                err=True,
            )
        site = pages.Site(
            out=out.resolve(),
            state_dir=(state if state is not None else out / "state").resolve(),
            existing=existing_policies,
            read_only=read_only,
            git_commit=git_commit,
            now=options.time_option(now, "--now"),
        )
        guard = csrf.Guard(csrf.host_names(host, port))
        shown = f"[{host}]" if ":" in host else host
        # Bound here: a port in use is one line and exit 2 (core/listening.py).
        bound = listening.listen(host, port, "serve")
        typer.echo(f"flowfence: serving {out} on http://{shown}:{port}/ (Ctrl-C stops)", err=True)
        config = uvicorn.Config(
            serve_app.create_app(site, guard),
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            server_header=False,
            proxy_headers=False,
            lifespan="off",
        )
        with bound:
            uvicorn.Server(config).run(sockets=[bound])
