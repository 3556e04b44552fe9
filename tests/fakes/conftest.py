"""The real services' stacks the contract tests run against, reused from their own suites."""

from __future__ import annotations

from tests.catalog.conftest import catalog, catalog_template
from tests.generation.conftest import bucket, seaweed, stack

__all__ = ["bucket", "catalog", "catalog_template", "seaweed", "stack"]
