"""The real services' stacks the contract tests run against, reused from their own suites."""

from __future__ import annotations

from tests.catalog.conftest import catalog, catalog_template
from tests.generation.conftest import stack

__all__ = ["catalog", "catalog_template", "stack"]
