"""Atelier's shared runtime: settings, money, errors, database, bus, outbox, gRPC and telemetry plumbing.

Nothing here knows about a business domain; services build on it and never on each other.
"""
