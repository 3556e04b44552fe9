"""The catalog snapshot the docs tests render: the catalog service's own seed configuration
(services/catalog/seed/catalog.yaml), mapped exactly as `GetCatalog` answers it."""

from __future__ import annotations

from atelier.catalog.v1 import catalog_pb2
from services.catalog import mapping
from services.catalog.seed import read_seed, seed_catalog
from services.catalog.settings import DEFAULT_SEED_FILE


def seed_snapshot() -> catalog_pb2.CatalogSnapshot:
    """A fresh snapshot of the seed configuration (callers may mutate it)."""
    return mapping.snapshot(seed_catalog(read_seed(DEFAULT_SEED_FILE)))


def model(snapshot: catalog_pb2.CatalogSnapshot, code: str) -> catalog_pb2.Model:
    return next(m for m in snapshot.models if m.code == code)
