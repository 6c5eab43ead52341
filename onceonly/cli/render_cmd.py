"""``onceonly acls render``: Kafka principals and ACLs from the departments and the sharing agreements.

Also the pieces ``topics render`` shares with it: loading the inputs, and writing text to stdout or a file.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from onceonly.catalog import Catalog, DepartmentRegistry, load_catalog, load_departments, schema_dir
from onceonly.errors import ConfigError
from onceonly.render.acls import Holders, kafka_acls_script, principals, render_acls
from onceonly.render.output import yaml_documents
from onceonly.render.strimzi import Authentication, kafka_users
from onceonly.settings import Settings, load_settings

app = typer.Typer(
    help="Kafka principals and ACLs, rendered from departments and agreements.\n\n"
    "Example:  onceonly acls render --format kafka-acls --agreements onceonly.yaml",
    no_args_is_help=True,
)


class AclFormat(StrEnum):
    kafka_acls = "kafka-acls"
    strimzi = "strimzi"


class Auth(StrEnum):
    scram = "scram-sha-512"
    tls = "tls"


AgreementsOption = Annotated[
    Path | None,
    typer.Option(
        "--agreements",
        help="file with an 'agreements' section (onceonly.yaml); default: schemas/agreements.yaml if present",
    ),
]
NoAgreements = Annotated[
    bool, typer.Option("--no-agreements", help="ignore agreements: every department may hold data")
]
ClusterOption = Annotated[str, typer.Option("--cluster", help="Strimzi Kafka cluster name (strimzi.io/cluster)")]
NamespaceOption = Annotated[str | None, typer.Option("--namespace", help="Kubernetes namespace of the resources")]
AuthOption = Annotated[Auth, typer.Option("--auth", help="how KafkaUsers authenticate")]
OutputOption = Annotated[Path | None, typer.Option("--output", "-o", help="write here instead of stdout")]


def load_holders(departments: DepartmentRegistry, path: Path | None, ignore: bool) -> Holders:
    """Holders from the agreements (the given file, else the reference file), else every department."""
    if ignore:
        return Holders.everyone(departments)
    if path is None:
        try:
            reference = schema_dir() / "agreements.yaml"
        except ConfigError:
            return Holders.everyone(departments)
        if not reference.is_file():
            return Holders.everyone(departments)
        path = reference
    from services.distributor.agreements import load_agreements

    agreements = load_agreements(path, departments=departments.codes())
    return Holders.from_agreements(agreements, str(path))


def inputs(agreements: Path | None, no_agreements: bool) -> tuple[Settings, Catalog, DepartmentRegistry, Holders]:
    departments = load_departments()
    return load_settings(), load_catalog(), departments, load_holders(departments, agreements, no_agreements)


def emit(text: str, output: Path | None) -> None:
    """Rendered text on stdout (no rich markup, no wrapping) or into a file."""
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")


def strimzi_users(
    settings: Settings,
    catalog: Catalog,
    departments: DepartmentRegistry,
    holders: Holders,
    *,
    cluster: str,
    namespace: str | None,
    auth: Authentication,
) -> list[dict[str, object]]:
    acls = render_acls(settings, catalog, departments, holders)
    return kafka_users(acls, cluster=cluster, namespace=namespace, authentication=auth, departments=departments.codes())


@app.command()
def render(
    format: Annotated[AclFormat, typer.Option("--format", "-f", help="kafka-acls (a shell script) or strimzi")] = (
        AclFormat.kafka_acls
    ),
    agreements: AgreementsOption = None,
    no_agreements: NoAgreements = False,
    with_users: Annotated[
        bool, typer.Option("--with-users", help="kafka-acls: also create each principal's SCRAM-SHA-512 user")
    ] = False,
    cluster: ClusterOption = "onceonly",
    namespace: NamespaceOption = None,
    auth: AuthOption = Auth.scram,
    output: OutputOption = None,
) -> None:
    """Render one principal per department and per platform service, with the ACLs each needs.

    A department writes the change topics of the entity types it is the authority for and reads only its own
    inbox (inbox rights only for departments holding an agreement). The kafka-acls script reads passwords from
    $SCRAM_PASSWORD_<USER> and the admin connection from $BOOTSTRAP and $COMMAND_CONFIG: it contains no secret.

    Example:  onceonly acls render --format strimzi --cluster onceonly | kubectl apply -f -
    """
    settings, catalog, departments, holders = inputs(agreements, no_agreements)
    if format is AclFormat.strimzi:
        resources = strimzi_users(
            settings, catalog, departments, holders, cluster=cluster, namespace=namespace, auth=auth.value
        )
        emit(f"# holders from {holders.source}\n" + yaml_documents(resources), output)
        return
    acls = render_acls(settings, catalog, departments, holders)
    users = principals(acls) if with_users else ()
    emit(kafka_acls_script(acls, users=users, note=f"holders from {holders.source}"), output)
