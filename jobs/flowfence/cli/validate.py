"""`flowfence validate DIR`: check a policy tree against the Calico and Kubernetes schemas.

Thin: `calico.schema_tree.check_tree` does the work; the listing (errors, then skipped
documents, then a summary line) goes to stdout as text or JSON, a one-line verdict to stderr,
and the exit code is 2 (bad input) when any document is invalid.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from flowfence.calico import schema_tree
from flowfence.core.errors import ExitCode


class Flavor(StrEnum):
    CALICO = "calico"
    CALICO_ENTERPRISE = "calico-enterprise"


class Output(StrEnum):
    TEXT = "text"
    JSON = "json"


HELP = """Check every YAML document under DIR against the schema of its kind.

Every *.yaml and *.yml file under DIR (or DIR itself, a file), in every folder but hidden
ones, and every document of a multi-document file is checked by its apiVersion and kind:
Calico's projectcalico.org/v3 kinds against the CRDs of --flavor (made strict: a field the
CRD does not know is an error), networking.k8s.io/v1 NetworkPolicy against Kubernetes' schema,
plus the rules Calico's and Kubernetes' API servers check beyond the schemas (selectors parse,
ports only with TCP/UDP/SCTP, CIDRs, services and domains combinations, names and labels).

Kustomization files and kinds without a schema (Deployment, ConfigMap, ...) are listed as
skipped, not as errors. A tree of kustomize patches is not a policy tree: render it first
(kubectl kustomize DIR > all.yaml) and validate the result.

Each error is one line, FILE: document N (KIND/NAME): FIELD: MESSAGE. Exit code 0 when every
document is valid, 2 when any is invalid or a file cannot be read or parsed.
"""


def validate_command(
    directory: Annotated[
        Path, typer.Argument(metavar="DIR", help="Folder of policy YAML (or one file).")
    ],
    flavor: Annotated[
        Flavor,
        typer.Option(
            "--flavor",
            help="Which Calico CRDs: calico (open source 3.32.1) or calico-enterprise (3.24). "
            "The Enterprise CRDs have every open-source field plus their own (domains, "
            "PolicyRecommendationScope, ...); use calico for a tree meant for open-source "
            "Calico.",
        ),
    ] = Flavor.CALICO_ENTERPRISE,
    output: Annotated[Output, typer.Option("--output", help="text or json.")] = Output.TEXT,
) -> None:
    report = schema_tree.check_tree(directory, flavor.value)
    render = schema_tree.to_json if output is Output.JSON else schema_tree.to_text
    typer.echo(render(report), nl=False)
    if report.errors:
        files = len({e.file for e in report.errors})
        typer.echo(
            f"flowfence: {len(report.errors)} errors in {files} of {report.files} files", err=True
        )
        raise typer.Exit(int(ExitCode.BAD_INPUT))


def register(app: typer.Typer) -> None:
    app.command("validate", help=HELP)(validate_command)
