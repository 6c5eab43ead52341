"""``onceonly topics apply|render``: the catalog onto the cluster, or rendered for a production one."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer
from rich.table import Table

from onceonly.cli import render_cmd
from onceonly.cli.common import StateDir, cli_settings, console
from onceonly.render.output import yaml_documents
from onceonly.render.strimzi import kafka_topics
from onceonly.render.topics import kafka_topics_script, topics_listing, with_replicas
from onceonly.settings import DEFAULT_STATE_DIR
from onceonly.topics import apply_topics, desired_topics

app = typer.Typer(
    help="Create and check the topics of the catalog (schemas/topics.yaml).\n\n"
    "Example:  onceonly topics apply --dry-run",
    no_args_is_help=True,
)


@app.command()
def apply(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="show what would be created, change nothing")] = False,
    state_dir: StateDir = DEFAULT_STATE_DIR,
) -> None:
    """Create every catalog topic that does not exist yet.

    Topics that exist with a different partition count are reported and make the command exit 1;
    they are never changed silently.

    Example:  onceonly topics apply --dry-run
    """
    report = apply_topics(cli_settings(state_dir), dry_run=dry_run)
    table = Table("topic", "partitions", "action")
    verb = "would create" if dry_run else "created"
    for a in report.actions:
        action = {"create": f"[green]{verb}[/]", "exists": "exists", "mismatch": f"[red]MISMATCH: {a.detail}[/]"}
        table.add_row(a.name, str(a.partitions), action[a.action])
    console.print(table)
    created = sum(a.action == "create" for a in report.actions)
    console.print(
        f"{verb} {created}, unchanged {len(report.actions) - created - len(report.mismatches)}, "
        f"mismatched {len(report.mismatches)}"
    )
    if report.mismatches:
        raise typer.Exit(1)


class TopicsFormat(StrEnum):
    strimzi = "strimzi"
    yaml = "yaml"
    kafka_topics = "kafka-topics"


@app.command()
def render(
    format: Annotated[
        TopicsFormat, typer.Option("--format", "-f", help="strimzi (KafkaTopic + KafkaUser), yaml, or kafka-topics")
    ] = TopicsFormat.strimzi,
    replicas: Annotated[
        int | None, typer.Option("--replicas", min=1, help="replication factor for every topic (default: catalog's)")
    ] = None,
    min_insync_replicas: Annotated[
        int | None, typer.Option("--min-insync-replicas", min=1, help="set min.insync.replicas on every topic")
    ] = None,
    users: Annotated[bool, typer.Option("--users/--no-users", help="strimzi: also render the KafkaUsers")] = True,
    agreements: render_cmd.AgreementsOption = None,
    no_agreements: render_cmd.NoAgreements = False,
    cluster: render_cmd.ClusterOption = "onceonly",
    namespace: render_cmd.NamespaceOption = None,
    auth: render_cmd.AuthOption = render_cmd.Auth.scram,
    output: render_cmd.OutputOption = None,
) -> None:
    """Render the catalog's topics for a production cluster, without connecting to it.

    strimzi: a KafkaTopic per topic (partitions, replicas, retention.ms, cleanup.policy) and a KafkaUser per
    department and platform service with its ACLs (see `onceonly acls render`). yaml: the concrete topics for
    review. kafka-topics: a script of `kafka-topics.sh --create --if-not-exists` calls.

    Example:  onceonly topics render --format strimzi --replicas 3 --min-insync-replicas 2 | kubectl apply -f -
    """
    settings, catalog, departments, holders = render_cmd.inputs(agreements, no_agreements)
    topics = with_replicas(desired_topics(settings, catalog, departments.codes()), replicas)
    if format is TopicsFormat.yaml:
        render_cmd.emit(yaml_documents([{"topics": topics_listing(topics)}]), output)
    elif format is TopicsFormat.kafka_topics:
        render_cmd.emit(kafka_topics_script(topics, min_insync_replicas=min_insync_replicas), output)
    else:
        docs = kafka_topics(topics, cluster=cluster, namespace=namespace, min_insync_replicas=min_insync_replicas)
        if users:
            docs += render_cmd.strimzi_users(
                settings, catalog, departments, holders, cluster=cluster, namespace=namespace, auth=auth.value
            )
        render_cmd.emit(yaml_documents(docs), output)
