"""The admin API (`/v1/admin/...`): live catalog configuration, users and credit adjustments, the
catalog's audit log, the spend debugger and the ledger's reconciliation.

Every route needs the admin role (403 `admin_required` for users, 401 without credentials); the
services check the role again from the forwarded identity. Bodies are validated here with pydantic
(422 `invalid_request`, nothing sent on) and again by the service that owns the rule (400 with its
code). Catalog edits take an optional `expected_version`: when the catalog has moved on they fail
with 409 `catalog_version_conflict` and change nothing. Credits are decimal strings ("0.5") both
ways; answers are the services' messages through `gateway.convert.to_json`.

The rooms: `catalog` (models, templates, recharge rules, plans, channels, the audit log), `users`
(accounts, billing records, credit adjustments), `ledger` (payment callbacks, the spend debugger,
reconciliation); `bodies` holds every request body and `common` the service stubs and path types.
Each area has its own router; this one joins them under the prefix and holds the access check, so a
route added to any of them cannot forget it.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends

from gateway.auth import require_admin
from gateway.routes.admin import catalog, ledger, users

router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Depends(require_admin)])
for area in (catalog, users, ledger):
    router.include_router(area.router)

__all__ = ["router"]
