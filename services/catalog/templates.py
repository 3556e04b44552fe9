"""Workflow templates: admin edits and the views of enabled, public templates."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from kit.errors import NotFound
from kit.outbox import Outbox
from services.catalog import repository
from services.catalog.changes import Change, apply_change, check_fields, merge, replace, required
from services.catalog.repository import AuditAction, AuditEntity
from services.catalog.schemas import Catalog, Template


async def upsert_template(
    session: AsyncSession,
    outbox: Outbox,
    *,
    actor_id: str,
    data: dict[str, Any],
    fields: list[str] | None = None,
    expected_version: int = 0,
) -> Change:
    code = str(data.get("code", ""))
    check_fields(fields, Template, {"code", "updated_at"})

    def mutate(catalog: Catalog) -> None:
        existing = catalog.template(code)
        if existing is None and fields is not None:
            raise NotFound(f"no template {code!r} to update", code="template_not_found")
        merged = merge(existing, data, fields)
        merged["updated_at"] = existing.updated_at if existing else None
        replace(catalog.templates, Template.model_validate(merged))

    return await apply_change(
        session,
        outbox,
        actor_id=actor_id,
        expected_version=expected_version,
        action=AuditAction.TEMPLATE_UPSERT,
        entity_type=AuditEntity.TEMPLATE,
        entity_code=code,
        get=lambda c: c.template(code),
        mutate=mutate,
        save=lambda s, c: repository.save_template(s, required(c.template(code))),
    )


async def set_template_enabled(
    session: AsyncSession,
    outbox: Outbox,
    *,
    actor_id: str,
    code: str,
    enabled: bool,
    expected_version: int = 0,
) -> Change:
    def mutate(catalog: Catalog) -> None:
        required(catalog.template(code), f"no template {code!r}", "template_not_found").enabled = enabled

    return await apply_change(
        session,
        outbox,
        actor_id=actor_id,
        expected_version=expected_version,
        action=AuditAction.TEMPLATE_ENABLE if enabled else AuditAction.TEMPLATE_DISABLE,
        entity_type=AuditEntity.TEMPLATE,
        entity_code=code,
        get=lambda c: c.template(code),
        mutate=mutate,
        save=lambda s, c: repository.save_template(s, required(c.template(code))),
    )


def list_templates(catalog: Catalog, include_disabled: bool) -> list[Template]:
    return [t for t in catalog.templates if include_disabled or (t.enabled and t.public)]


def find_template(catalog: Catalog, code: str, include_disabled: bool) -> Template:
    template = catalog.template(code)
    if template is None or not (include_disabled or template.public):
        raise NotFound(f"no workflow template {code!r}", code="template_not_found")
    return template
