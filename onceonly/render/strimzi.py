"""Strimzi custom resources: a ``KafkaTopic`` per catalog topic, a ``KafkaUser`` (with its ACLs) per principal.

Kubernetes names allow only lowercase letters, digits, ``-`` and ``.``, while topic and department names use ``_``
(``inbox.housing_fund``, ``_schemas``). A topic keeps its real name in ``spec.topicName`` under a sanitised resource
name. A user's resource name *is* its SCRAM user name and TLS common name under Strimzi, so Strimzi principals are
the sanitised names (``User:housing-fund``); ``user_name`` is the one mapping both sides use.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import Any, Literal

from onceonly.catalog import ConcreteTopic
from onceonly.render.acls import Acl

API_VERSION = "kafka.strimzi.io/v1beta2"
CLUSTER_LABEL = "strimzi.io/cluster"
PART_OF = {"app.kubernetes.io/part-of": "onceonly", "app.kubernetes.io/managed-by": "onceonly-render"}
Authentication = Literal["scram-sha-512", "tls"]

_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def is_resource_name(name: str) -> bool:
    """A valid Kubernetes resource name (DNS-1123 subdomain)."""
    return len(name) <= 253 and bool(_DNS1123.match(name))


def resource_name(name: str) -> str:
    """``name`` when it is a valid resource name, else a sanitised form plus a short hash (unique, stable)."""
    if is_resource_name(name):
        return name
    clean = re.sub(r"[^a-z0-9.-]", "-", name.lower()).strip("-.")
    clean = re.sub(r"\.(?=[-.])|-(?=\.)", "", clean) or "topic"
    return f"{clean[:200]}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"


def user_name(principal: str) -> str:
    """The Strimzi user (and principal) name of a department code or service: ``housing_fund`` -> ``housing-fund``."""
    return principal.replace("_", "-")


def _metadata(name: str, cluster: str, namespace: str | None, **labels: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {CLUSTER_LABEL: cluster, **PART_OF, **labels}}
    if namespace:
        meta["namespace"] = namespace
    return meta


def kafka_topics(
    topics: Iterable[ConcreteTopic],
    *,
    cluster: str,
    namespace: str | None = None,
    min_insync_replicas: int | None = None,
) -> list[dict[str, Any]]:
    """One ``KafkaTopic`` per topic, with partitions, replicas and the catalog's config (retention, cleanup)."""
    out = []
    for t in topics:
        config: dict[str, Any] = dict(t.config)
        if min_insync_replicas is not None:
            config["min.insync.replicas"] = str(min_insync_replicas)
        spec: dict[str, Any] = {"partitions": t.partitions, "replicas": t.replication_factor, "config": config}
        name = resource_name(t.name)
        if name != t.name:
            spec = {"topicName": t.name, **spec}
        out.append(
            {
                "apiVersion": API_VERSION,
                "kind": "KafkaTopic",
                "metadata": _metadata(name, cluster, namespace, **{"onceonly.io/owner": t.owner}),
                "spec": spec,
            }
        )
    return out


def _strimzi_acl(acl: Acl) -> dict[str, Any]:
    resource: dict[str, Any] = {"type": acl.resource_type}
    if acl.resource_type != "cluster":
        resource["name"] = acl.resource
        resource["patternType"] = "prefix" if acl.pattern == "prefixed" else "literal"
    return {"resource": resource, "operations": list(acl.operations), "host": "*"}


def kafka_users(
    acls: Iterable[Acl],
    *,
    cluster: str,
    namespace: str | None = None,
    authentication: Authentication = "scram-sha-512",
    departments: Iterable[str] = (),
) -> list[dict[str, Any]]:
    """One ``KafkaUser`` per principal, its ACLs under ``spec.authorization`` (Strimzi's simple authorizer)."""
    by_principal: dict[str, list[Acl]] = {}
    for acl in sorted(acls):
        by_principal.setdefault(acl.principal, []).append(acl)
    dept_codes = set(departments)
    out = []
    for principal, rules in by_principal.items():
        role = {"onceonly.io/department": principal} if principal in dept_codes else {"onceonly.io/service": principal}
        out.append(
            {
                "apiVersion": API_VERSION,
                "kind": "KafkaUser",
                "metadata": _metadata(user_name(principal), cluster, namespace, **role),
                "spec": {
                    "authentication": {"type": authentication},
                    "authorization": {"type": "simple", "acls": [_strimzi_acl(a) for a in rules]},
                },
            }
        )
    return out
