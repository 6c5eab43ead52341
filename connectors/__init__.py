"""Connectors at the edges: sources turn department systems into change events, sinks apply them."""
