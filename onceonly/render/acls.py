"""Who may do what on the cluster: one principal per department and per platform service, least privilege.

A department writes only the change topics of the entity types it is the authority for, and reads only its own
inbox: the distributor is the one party that reads every change topic, and it writes each holder only what that
holder's agreement grants. So a stolen department credential can neither forge another authority's facts nor read
another department's data.
"""

from __future__ import annotations

import shlex
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Literal, Protocol

from onceonly.catalog import Catalog, DepartmentRegistry
from onceonly.settings import Settings

Operation = Literal["Read", "Write", "Create", "Describe", "DescribeConfigs"]
ResourceType = Literal["topic", "group", "cluster"]
Pattern = Literal["literal", "prefixed"]

# Platform principals; each also names its consumer group (under the deployment's topic prefix).
DISTRIBUTOR, REGISTRY, GATEWAY, OPERATOR, TRACKER = "distributor", "registry", "gateway", "operator", "tracker"
READER_GROUP = "onceonly-reader-"  # throwaway group ids of assign-only readers (services/distributor/reading.py)
PLATFORM_PRINCIPALS = (DISTRIBUTOR, REGISTRY, GATEWAY, OPERATOR, TRACKER)

READ: tuple[Operation, ...] = ("Read", "Describe")
WRITE: tuple[Operation, ...] = ("Write", "Describe")
READ_WRITE: tuple[Operation, ...] = ("Read", "Write", "Describe")


@dataclass(frozen=True, order=True)
class Acl:
    """Allow ``principal`` (a user name, without ``User:``) ``operations`` on one resource or resource prefix."""

    principal: str
    resource_type: ResourceType
    resource: str
    pattern: Pattern
    operations: tuple[Operation, ...]

    @property
    def kafka_principal(self) -> str:
        return f"User:{self.principal}"


class AgreementLike(Protocol):
    """What the ACLs need of a sharing agreement (``services.distributor.agreements.Agreement`` fits)."""

    @property
    def holder(self) -> str: ...

    @property
    def interest(self) -> str: ...


@dataclass(frozen=True)
class Holders:
    """Departments that receive data, from the agreements; without agreements, every department (say so)."""

    departments: frozenset[str]
    registers_interest: frozenset[str] = frozenset()
    source: str = "departments.yaml (no agreements given: every department may hold data)"

    @classmethod
    def everyone(cls, departments: DepartmentRegistry) -> Holders:
        return cls(frozenset(departments.codes()))

    @classmethod
    def from_agreements(cls, agreements: Iterable[AgreementLike], source: str) -> Holders:
        """Holders are the departments with at least one agreement; interest-mode ones also register interest."""
        items = list(agreements)
        holders = frozenset(a.holder for a in items)
        return cls(holders, frozenset(a.holder for a in items if a.interest == "interest"), source)


def _topic(p: str, s: Settings, name: str, ops: tuple[Operation, ...], pattern: Pattern = "literal") -> Acl:
    return Acl(p, "topic", s.topic(name), pattern, ops)


def _group(p: str, s: Settings, name: str, pattern: Pattern = "literal") -> Acl:
    return Acl(p, "group", f"{s.topic_prefix}{name}", pattern, ("Read",))


def department_acls(
    s: Settings, catalog: Catalog, departments: DepartmentRegistry, code: str, holders: Holders
) -> list[Acl]:
    """An authority writes its change topics (and source heartbeats); a holder reads its inbox and reports back."""
    dept = departments.get(code)
    out = [_topic(code, s, catalog.change_topic(e), WRITE) for e in dept.authority_for]
    if dept.authority_for:
        out.append(_topic(code, s, "source.heartbeats", WRITE))
    if code in holders.departments:
        out += [
            _topic(code, s, f"inbox.{code}", READ),
            _group(code, s, f"subscriber.{code}"),
            _topic(code, s, "receipts", WRITE),
            _topic(code, s, f"dlq.{code}", WRITE),
        ]
    if code in holders.registers_interest:
        out.append(_topic(code, s, "interest", WRITE))
    return out


def platform_acls(s: Settings) -> list[Acl]:
    """The services that run the platform; each gets the topics its job needs and no more."""
    d, r, g, o, t = PLATFORM_PRINCIPALS
    return [
        _topic(d, s, "change.", READ, "prefixed"),
        _topic(d, s, "inbox.", WRITE, "prefixed"),
        _topic(d, s, "state.", READ_WRITE, "prefixed"),
        _topic(d, s, "interest", READ),
        _topic(d, s, "audit.deliveries", READ_WRITE),  # reads the last entry to continue the hash chain
        _topic(d, s, "dlq.distributor", WRITE),
        _group(d, s, DISTRIBUTOR, "prefixed"),
        _group(d, s, READER_GROUP, "prefixed"),  # assign-only readers (state, interest, ledger tail)
        _topic(r, s, "_schemas", ("Read", "Write", "Describe", "DescribeConfigs")),
        Acl(r, "group", "schema-registry", "prefixed", ("Read",)),  # the Confluent registry's group
        Acl(r, "group", "onceonly-registry-", "prefixed", ("Read",)),  # the embedded registry's readers
        _topic(g, s, "change.", WRITE, "prefixed"),  # publishes for authorities after checking their API key
        _topic(o, s, "change.", READ, "prefixed"),  # replay reads the facts ...
        _topic(o, s, "inbox.", WRITE, "prefixed"),  # ... and redelivers them to one holder
        _topic(o, s, "dlq.", READ_WRITE, "prefixed"),
        _topic(o, s, "state.", READ, "prefixed"),
        _topic(o, s, "receipts", READ),
        _topic(o, s, "interest", READ_WRITE),
        _topic(o, s, "audit.deliveries", READ_WRITE),
        _topic(o, s, "change.", WRITE, "prefixed"),  # re-drives a distributor dead letter to the topic it came from
        _topic(o, s, "audit.operations", READ_WRITE),  # the operators' ledger of re-drives and edits
        _topic(o, s, "audit.replays", READ_WRITE),  # the ledger of replays and bootstraps
        _group(o, s, OPERATOR, "prefixed"),
        _group(o, s, READER_GROUP, "prefixed"),
        Acl(o, "group", "*", "literal", ("Describe",)),  # lag of every holder's group
        _topic(t, s, "receipts", READ),
        _group(t, s, TRACKER, "prefixed"),
    ]


def render_acls(
    settings: Settings, catalog: Catalog, departments: DepartmentRegistry, holders: Holders | None = None
) -> list[Acl]:
    """Every ACL of the deployment, sorted by principal then resource."""
    holders = holders or Holders.everyone(departments)
    out = platform_acls(settings)
    for code in departments.codes():
        out += department_acls(settings, catalog, departments, code, holders)
    return sorted(out)


def principals(acls: Iterable[Acl]) -> list[str]:
    return sorted({a.principal for a in acls})


# --- the stock Kafka tools ------------------------------------------------------------------------------------------


def password_variable(principal: str) -> str:
    """The environment variable that holds a principal's SCRAM password in the setup script (never a literal)."""
    return "SCRAM_PASSWORD_" + principal.upper().replace("-", "_").replace(".", "_")


def kafka_acls_script(
    acls: Iterable[Acl], *, users: Collection[str] = (), mechanism: str = "SCRAM-SHA-512", note: str = ""
) -> str:
    """A shell script of ``kafka-configs.sh`` (SCRAM users) and ``kafka-acls.sh --add`` calls.

    It reads ``$BOOTSTRAP`` and ``$COMMAND_CONFIG`` (an admin client properties file) and each user's password from
    ``$SCRAM_PASSWORD_<USER>``, so the script itself holds no secret and can be reviewed and stored.
    """
    lines = [
        "#!/bin/sh",
        "# Rendered by `onceonly acls render --format kafka-acls`; do not edit, render again.",
        *([f"# {note}"] if note else []),
        'set -eu\n: "${BOOTSTRAP:?}" "${COMMAND_CONFIG:?}"',
        'KAFKA_BIN="${KAFKA_BIN:-/opt/kafka/bin}"',
    ]
    base = '"$KAFKA_BIN"/{tool} --bootstrap-server "$BOOTSTRAP" --command-config "$COMMAND_CONFIG"'
    for user in sorted(users):
        var = password_variable(user)
        config = f'"{mechanism}=[password=${{{var}:?}}]"'
        lines.append(
            base.format(tool="kafka-configs.sh")
            + f" --alter --entity-type users --entity-name {shlex.quote(user)} --add-config {config}"
        )
    for acl in sorted(acls):
        resource = f"--{acl.resource_type} {shlex.quote(acl.resource)}"
        if acl.resource_type == "cluster":
            resource = "--cluster"
        ops = " ".join(f"--operation {op}" for op in acl.operations)
        lines.append(
            base.format(tool="kafka-acls.sh")
            + f" --add --allow-principal {shlex.quote(acl.kafka_principal)} {ops} {resource}"
            + f" --resource-pattern-type {acl.pattern}"
        )
    return "\n".join(lines) + "\n"
