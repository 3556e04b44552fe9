from __future__ import annotations

from pathlib import Path

from kit.settings import ServiceSettings

DEFAULT_SEED_FILE = Path(__file__).parent / "seed" / "catalog.yaml"


class CatalogSettings(ServiceSettings):
    database_url: str = "postgresql://postgres@127.0.0.1:5432/atelier_catalog"
    grpc_port: int = 50052
    # ATELIER_CATALOG_SEED_FILE: loaded into an empty catalog at startup (never over an existing one).
    catalog_seed_file: Path = DEFAULT_SEED_FILE
