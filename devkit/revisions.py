"""`atelier makemigration`: autogenerate a service's next Alembic revision against a scratch database."""

from __future__ import annotations

import asyncio
import importlib
import uuid
from pathlib import Path

from alembic import command

from kit.db import drop_database, ensure_database, with_database
from kit.migrations import alembic_config

ROOT = Path(__file__).resolve().parent.parent


def make_revision(service: str, message: str, server_url: str) -> None:
    """Autogenerate the next revision for `service` against a scratch database on `server_url`."""
    importlib.import_module(f"services.{service}.models")
    migrations_dir = ROOT / "services" / service / "migrations"
    scratch = with_database(server_url, f"scratch_{service}_{uuid.uuid4().hex[:8]}")
    url = scratch.render_as_string(hide_password=False)
    asyncio.run(ensure_database(url))
    try:
        cfg = alembic_config(migrations_dir, url)
        command.upgrade(cfg, "head")
        command.revision(cfg, message=message, autogenerate=True)
    finally:
        asyncio.run(drop_database(url))
