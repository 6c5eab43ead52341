"""Rendered resources as text: YAML documents that ``kubectl apply -f -`` and reviewers read alike."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml


def yaml_documents(docs: Iterable[Any]) -> str:
    """A multi-document YAML stream, keys in the order they were built (apiVersion, kind, metadata, spec)."""
    return yaml.safe_dump_all(list(docs), sort_keys=False, explicit_start=True, allow_unicode=True, width=120)
