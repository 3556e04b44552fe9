"""Models: admin edits (`MODELS`, and the default capability set that inheriting models use), and
the views the public pages and the studios read."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from kit.errors import InvalidArgument, NotFound
from services.catalog.changes import Change, Edit, Entries, Subject, apply_change
from services.catalog.repository import AuditAction, AuditEntity
from services.catalog.schemas import Catalog, Kind, ModelSpec

KIND_ORDER: tuple[Kind, ...] = ("text", "image", "video")
MODELS = Entries(AuditEntity.MODEL, ModelSpec, lambda catalog: catalog.models)


async def _state_only(session: AsyncSession, catalog: Catalog) -> None:
    return None  # the state row, written with every version, holds the default set


DEFAULT_CAPABILITIES = Subject(
    AuditEntity.DEFAULT_CAPABILITIES, "", lambda catalog: catalog.default_capabilities, _state_only
)


async def set_default_capabilities(edit: Edit, capabilities: list[str]) -> Change:
    if len(set(capabilities)) != len(capabilities):
        raise InvalidArgument("capabilities must not repeat", code="invalid_default_capabilities")

    def mutate(catalog: Catalog) -> None:
        catalog.default_capabilities = list(capabilities)

    return await apply_change(edit, DEFAULT_CAPABILITIES, AuditAction.DEFAULT_CAPABILITIES_UPDATE, mutate)


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
