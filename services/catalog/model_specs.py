"""Models: admin edits (a whole model, some fields, enabled or not), the default capability set
that inheriting models use, and the views the public pages and the studios read."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from kit.errors import InvalidArgument, NotFound
from kit.outbox import Outbox
from services.catalog import repository
from services.catalog.changes import Change, apply_change, check_fields, merge, replace, required
from services.catalog.repository import AuditAction, AuditEntity
from services.catalog.schemas import Catalog, Kind, ModelSpec

KIND_ORDER: tuple[Kind, ...] = ("text", "image", "video")


async def upsert_model(
    session: AsyncSession,
    outbox: Outbox,
    *,
    actor_id: str,
    data: dict[str, Any],
    fields: list[str] | None = None,
    expected_version: int = 0,
) -> Change:
    """Creates or replaces a model (fields: only those, onto the existing model)."""
    code = str(data.get("code", ""))
    check_fields(fields, ModelSpec, {"code", "updated_at"})

    def mutate(catalog: Catalog) -> None:
        existing = catalog.model(code)
        if existing is None and fields is not None:
            raise NotFound(f"no model {code!r} to update", code="model_not_found")
        merged = merge(existing, data, fields)
        merged["updated_at"] = existing.updated_at if existing else None
        replace(catalog.models, ModelSpec.model_validate(merged))

    return await apply_change(
        session,
        outbox,
        actor_id=actor_id,
        expected_version=expected_version,
        action=AuditAction.MODEL_UPSERT,
        entity_type=AuditEntity.MODEL,
        entity_code=code,
        get=lambda c: c.model(code),
        mutate=mutate,
        save=lambda s, c: repository.save_model(s, required(c.model(code))),
    )


async def set_model_enabled(
    session: AsyncSession,
    outbox: Outbox,
    *,
    actor_id: str,
    code: str,
    enabled: bool,
    expected_version: int = 0,
) -> Change:
    def mutate(catalog: Catalog) -> None:
        required(catalog.model(code), f"no model {code!r}", "model_not_found").enabled = enabled

    return await apply_change(
        session,
        outbox,
        actor_id=actor_id,
        expected_version=expected_version,
        action=AuditAction.MODEL_ENABLE if enabled else AuditAction.MODEL_DISABLE,
        entity_type=AuditEntity.MODEL,
        entity_code=code,
        get=lambda c: c.model(code),
        mutate=mutate,
        save=lambda s, c: repository.save_model(s, required(c.model(code))),
    )


async def set_default_capabilities(
    session: AsyncSession,
    outbox: Outbox,
    *,
    actor_id: str,
    capabilities: list[str],
    expected_version: int = 0,
) -> Change:
    if len(set(capabilities)) != len(capabilities):
        raise InvalidArgument("capabilities must not repeat", code="invalid_default_capabilities")

    def mutate(catalog: Catalog) -> None:
        catalog.default_capabilities = list(capabilities)

    async def save(session: AsyncSession, catalog: Catalog) -> None:
        return None  # the state row, written by every change, holds the default set

    return await apply_change(
        session,
        outbox,
        actor_id=actor_id,
        expected_version=expected_version,
        action=AuditAction.DEFAULT_CAPABILITIES_UPDATE,
        entity_type=AuditEntity.DEFAULT_CAPABILITIES,
        entity_code="",
        get=lambda c: c.default_capabilities,
        mutate=mutate,
        save=save,
    )


def visible(model: ModelSpec) -> bool:
    return model.enabled and model.public


def list_models(catalog: Catalog, kind: Kind | None, include_disabled: bool) -> list[ModelSpec]:
    return [
        m for m in catalog.models if (kind is None or m.kind == kind) and (include_disabled or visible(m))
    ]


def admin_must_enable_models(catalog: Catalog, kind: Kind | None) -> bool:
    """True when no public model (of `kind`) is enabled: the studios have nothing to offer."""
    return not any(visible(m) for m in catalog.models if kind is None or m.kind == kind)


def pricing(catalog: Catalog) -> list[tuple[Kind, list[ModelSpec]]]:
    """Enabled public models grouped by kind (kinds without any are left out)."""
    groups = [(kind, list_models(catalog, kind, include_disabled=False)) for kind in KIND_ORDER]
    return [(kind, group) for kind, group in groups if group]


def find_model(catalog: Catalog, code: str, include_internal: bool) -> ModelSpec:
    model = catalog.model(code)
    if model is None or not (include_internal or model.public):
        raise NotFound(f"no model {code!r}", code="model_not_found")
    return model
