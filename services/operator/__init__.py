"""Operators' tools: dead letters (inspect, edit, re-drive), the service scorecard, the live page, replay and lag.

Each concern is its own module; import from the module that names it (``services.operator.dead_letters``, ...).
"""
