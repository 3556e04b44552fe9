"""Workflow templates: admin edits (`TEMPLATES`) and the views of enabled, public templates."""

from __future__ import annotations

from kit.errors import NotFound
from services.catalog.changes import Entries
from services.catalog.repository import AuditEntity
from services.catalog.schemas import Catalog, Template

TEMPLATES = Entries(AuditEntity.TEMPLATE, Template, lambda catalog: catalog.templates)


def list_templates(catalog: Catalog, include_disabled: bool) -> list[Template]:
    return [t for t in catalog.templates if include_disabled or (t.enabled and t.public)]


def find_template(catalog: Catalog, code: str, include_disabled: bool) -> Template:
    template = catalog.template(code)
    if template is None or not (include_disabled or template.public):
        raise NotFound(f"no workflow template {code!r}", code="template_not_found")
    return template
