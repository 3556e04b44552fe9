"""Workflow templates: the views of enabled, public templates (admins edit them as
`changes.TEMPLATES`)."""

from __future__ import annotations

from kit.errors import NotFound
from services.catalog.schemas import Catalog, Template


def list_templates(catalog: Catalog, include_disabled: bool) -> list[Template]:
    return [t for t in catalog.templates if include_disabled or (t.enabled and t.public)]


def find_template(catalog: Catalog, code: str, include_disabled: bool) -> Template:
    template = catalog.template(code)
    if template is None or not (include_disabled or template.public):
        raise NotFound(f"no workflow template {code!r}", code="template_not_found")
    return template
