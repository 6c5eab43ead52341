"""Confluent's error codes, so clients written for Confluent's registry handle ours the same way.

A client decides on ``error_code`` (e.g. 40403 "schema not found" vs 40401 "subject not found"), not on the text.
"""

from __future__ import annotations

from onceonly.errors import OnceonlyError

VALID_LEVELS_TEXT = "none, backward, forward, full, backward_transitive, forward_transitive, and full_transitive"


class RegistryHTTPError(Exception):
    """An answer with Confluent's body ``{"error_code": N, "message": "..."}``."""

    def __init__(self, status: int, error_code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message

    def body(self) -> dict[str, int | str]:
        return {"error_code": self.error_code, "message": self.message}


class StoreError(OnceonlyError):
    """The schemas topic could not be read or written; the registry must not answer from unsaved state."""


def subject_not_found(subject: str) -> RegistryHTTPError:
    return RegistryHTTPError(404, 40401, f"Subject '{subject}' not found.")


def version_not_found(subject: str, version: int) -> RegistryHTTPError:
    return RegistryHTTPError(404, 40402, f"Version {version} not found for subject '{subject}'.")


def schema_not_found(schema_id: int | str | None = None) -> RegistryHTTPError:
    return RegistryHTTPError(
        404, 40403, f"Schema {schema_id} not found" if schema_id is not None else "Schema not found"
    )


def subject_soft_deleted(subject: str) -> RegistryHTTPError:
    return RegistryHTTPError(
        404, 40404, f"Subject '{subject}' was soft deleted. Set permanent=true to delete permanently"
    )


def subject_not_soft_deleted(subject: str) -> RegistryHTTPError:
    return RegistryHTTPError(404, 40405, f"Subject '{subject}' was not deleted first before being permanently deleted")


def version_soft_deleted(subject: str, version: int) -> RegistryHTTPError:
    return RegistryHTTPError(
        404, 40406, f"Subject '{subject}' Version {version} was soft deleted. Set permanent=true to delete permanently"
    )


def version_not_soft_deleted(subject: str, version: int) -> RegistryHTTPError:
    return RegistryHTTPError(
        404, 40407, f"Subject '{subject}' Version {version} was not deleted first before being permanently deleted"
    )


def subject_config_not_found(subject: str) -> RegistryHTTPError:
    return RegistryHTTPError(404, 40408, f"Subject '{subject}' does not have subject-level compatibility configured")


def incompatible(subject: str, level: str, messages: list[str]) -> RegistryHTTPError:
    details = "; ".join(messages)
    return RegistryHTTPError(
        409,
        409,
        f'Schema being registered is incompatible with an earlier schema for subject "{subject}" '
        f"under {level}: {details}",
    )


def invalid_schema(reason: str) -> RegistryHTTPError:
    return RegistryHTTPError(422, 42201, f"Invalid schema: {reason}")


def invalid_version(version: str) -> RegistryHTTPError:
    return RegistryHTTPError(
        422,
        42202,
        f"The specified version '{version}' is not a valid version id. "
        'Allowed values are between [1, 2^31-1] and the string "latest"',
    )


def invalid_level(level: object) -> RegistryHTTPError:
    return RegistryHTTPError(422, 42203, f"Invalid compatibility level {level!r}. Valid values are {VALID_LEVELS_TEXT}")


def store_error(reason: str) -> RegistryHTTPError:
    return RegistryHTTPError(500, 50001, f"Error in the backend data store: {reason}")


def bad_request(reason: str) -> RegistryHTTPError:
    return RegistryHTTPError(400, 400, reason)
