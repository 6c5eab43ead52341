"""The data standard: schemas, the Confluent wire format, the registry client and the rules beyond Avro types."""

from onceonly.standard.errors import (
    BadMagicByte,
    CorruptPayload,
    EmptyPayload,
    RecordInvalid,
    RegistryError,
    RegistryUnavailable,
    SerdeError,
    TruncatedPayload,
    UnknownSchemaId,
)
from onceonly.standard.identity import event_id, resident_id_problem, upgrade_id15, uscc_problem
from onceonly.standard.registry_client import RegistryClient
from onceonly.standard.schemas import (
    DeclaredSubject,
    change_schema,
    declared_subjects,
    entity_schema,
    entity_types,
    platform_schema,
    project_change_schema,
    subject_for,
)
from onceonly.standard.serde import Decoded, Serde, frame, unframe
from onceonly.standard.validation import change_problems, check_change

__all__ = [
    "BadMagicByte",
    "CorruptPayload",
    "DeclaredSubject",
    "Decoded",
    "EmptyPayload",
    "RecordInvalid",
    "RegistryClient",
    "RegistryError",
    "RegistryUnavailable",
    "Serde",
    "SerdeError",
    "TruncatedPayload",
    "UnknownSchemaId",
    "change_problems",
    "change_schema",
    "check_change",
    "declared_subjects",
    "entity_schema",
    "entity_types",
    "event_id",
    "frame",
    "platform_schema",
    "project_change_schema",
    "resident_id_problem",
    "subject_for",
    "unframe",
    "upgrade_id15",
    "uscc_problem",
]
