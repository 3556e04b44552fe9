"""Who may call which RPC: one table, default deny, enforced on every call by `kit.grpc_server`.

A call is let through only if its workload (its certificate, `kit.tls`) has a `Grant` for the method in
`ACCESS`, and the grant's user rule holds:

- `SELF`: on the workload's own authority. A user token that comes along is still verified.
- `USER`: for a signed-in user; the gateway's user token (`kit.user_tokens`) must come with the call.
- `ADMIN`: for an admin user's request through the gateway.
- `..._OWN` variants: the request's `user_id` must be the token's user (an admin's token excepted).
- `FOR_OWNER`: work an event started (a workflow step) acts for the user who owns the record it holds,
  named in `x-atelier-on-behalf-of`; only the workloads granted it may say so, and only as a plain user.

A refusal is PERMISSION_DENIED (no grant) or UNAUTHENTICATED (a token missing, forged, expired or for
another audience), logged and counted in `atelier_rpc_refusals_total`; the handler never runs, so a
refused call changes nothing. Health checks are open to every workload; reflection to `operator`.

Without TLS (development and in-process tests, never production: `kit.settings`) the workload is the
`x-atelier-workload` header's claim; the table and the user token still apply.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import grpc

from kit import metrics, tls
from kit.errors import PermissionDenied, Unauthenticated
from kit.identity import Caller, Identity
from kit.user_tokens import HEADER, UserTokenVerifier

log = logging.getLogger(__name__)

ON_BEHALF_OF = "x-atelier-on-behalf-of"

GATEWAY, ACCOUNTS, CATALOG, LEDGER = "gateway", "accounts", "catalog", "ledger"
GENERATION, WORKER, WORKFLOW, OPERATOR = "generation", "generation-worker", "workflow", "operator"
# Every workload that holds a certificate: the table's callers, the servers that answer them, and the
# worker (it serves only health and calls nobody).
WORKLOADS = (GATEWAY, ACCOUNTS, CATALOG, LEDGER, GENERATION, WORKER, WORKFLOW, OPERATOR)


@dataclass(frozen=True, slots=True)
class Grant:
    user: Literal["optional", "required", "admin"]
    owner: str = ""
    for_owner: bool = False


SELF = Grant("optional")
SELF_OWN = Grant("optional", owner="user_id")
USER = Grant("required")
USER_OWN = Grant("required", owner="user_id")
ADMIN = Grant("admin")
FOR_OWNER = Grant("optional", for_owner=True)

Table = Mapping[str, Mapping[str, Mapping[str, Grant]]]


def _each(methods: Iterable[str], grants: Mapping[str, Grant]) -> dict[str, Mapping[str, Grant]]:
    return dict.fromkeys(methods, grants)


ACCESS: Table = {
    "accounts": {
        # Signing in and its mails: before there is a user, so on the gateway's own authority.
        **_each(
            (
                "Register",
                "VerifyEmail",
                "ResendVerification",
                "Login",
                "RefreshSession",
                "Logout",
                "RequestPasswordReset",
                "ConfirmPasswordReset",
                "AuthenticateApiKey",
            ),
            {GATEWAY: SELF},
        ),
        **_each(("GetUser", "CheckSession", "CreateApiKey", "ListApiKeys", "RevokeApiKey"), {GATEWAY: USER}),
        **_each(("ListUsers", "SetUserStatus", "SetUserRole"), {GATEWAY: ADMIN}),
        # The first admin is made at startup; over the network only an admin makes another.
        "EnsureAdmin": {GATEWAY: ADMIN},
    },
    "catalog": {
        # What is on sale is public; the admin-only views inside them check the user themselves.
        **_each(
            (
                "GetCatalog",
                "ListModels",
                "GetModel",
                "GetPricing",
                "ListTemplates",
                "GetTemplate",
                "GetRechargeOptions",
            ),
            {GATEWAY: SELF, GENERATION: SELF, WORKFLOW: SELF},
        ),
        "Quote": {GATEWAY: SELF, GENERATION: SELF},
        "QuoteRecharge": {GATEWAY: SELF},
        **_each(
            (
                "UpsertModel",
                "SetModelEnabled",
                "SetDefaultCapabilities",
                "UpsertTemplate",
                "SetTemplateEnabled",
                "UpdateRechargeRules",
                "UpsertPlan",
                "UpsertChannel",
                "ListChannels",
                "ListAuditLog",
            ),
            {GATEWAY: ADMIN},
        ),
    },
    "ledger": {
        # Spending. A hold is placed only while the user's submission is being served, so it needs their
        # token. A run's debit may be finished by the resume loop after a crash (no user at hand), on the
        # run row the user's request wrote; refunds go back to the run's owner. Captures and expiries run
        # inside the ledger, on events.
        "Hold": {GENERATION: USER_OWN},
        "Release": {GENERATION: SELF},
        "Debit": {WORKFLOW: SELF_OWN},
        "Refund": {WORKFLOW: SELF},
        # Reading one's own money.
        **_each(("GetBalance", "ListRecords", "GetUsage"), {GATEWAY: USER_OWN}),
        # Recharges: the user's order; its checkout, the provider's callback and the reconciler act on
        # the order alone (no user: a callback has none), within the gateway's payment path.
        "CreateRechargeOrder": {GATEWAY: USER_OWN},
        "GetRechargeOrder": {GATEWAY: SELF_OWN},
        **_each(
            (
                "AttachRechargeCheckout",
                "CompleteRechargeOrder",
                "ListPendingRechargeOrders",
                "RecordCallback",
            ),
            {GATEWAY: SELF},
        ),
        # Administration.
        "Adjust": {GATEWAY: ADMIN},
        **_each(("ListCallbacks", "GetSpendChain", "Reconcile"), {GATEWAY: ADMIN, OPERATOR: SELF}),
        # Operators' tools only: money from nowhere, and the low-level views.
        **_each(("Credit", "Capture", "GetTransfer"), {OPERATOR: SELF}),
    },
    "generation": {
        "SubmitTask": {GATEWAY: USER, WORKFLOW: FOR_OWNER},
        **_each(("GetTask", "CancelTask", "GetUpload"), {GATEWAY: USER, WORKFLOW: FOR_OWNER}),
        **_each(
            (
                "ListTasks",
                "CreateUpload",
                "CreateConversation",
                "ListConversations",
                "GetConversation",
                "SendMessage",
            ),
            {GATEWAY: USER},
        ),
        # Files are served to whoever holds the gateway's signed URL.
        **_each(("ReadFile", "ReadFileRange"), {GATEWAY: SELF}),
    },
    "workflow": _each(("StartRun", "GetRun", "ListRuns", "CancelRun"), {GATEWAY: USER}),
}

# Open to every workload, whatever the table: the standard health service; reflection for operators.
HEALTH = "grpc.health.v1.Health"
REFLECTION = ("grpc.reflection.v1alpha.ServerReflection", "grpc.reflection.v1.ServerReflection")

_ATELIER_METHOD = re.compile(r"^/atelier\.(\w+)\.v\d+\.\w+/(\w+)$")


def split(full_method: str) -> tuple[str, str]:
    """`/atelier.ledger.v1.LedgerService/Hold` → ("ledger", "Hold"); other services keep their full name."""
    matched = _ATELIER_METHOD.match(full_method)
    if matched:
        return matched.group(1), matched.group(2)
    service, _, method = full_method.lstrip("/").rpartition("/")
    return service, method


@dataclass(frozen=True)
class Authorizer:
    """Decides one call. `tls` says whether the connection's certificate names the workload."""

    table: Table
    verifier: UserTokenVerifier | None
    tls: bool

    def workload(self, context: grpc.aio.ServicerContext, metadata: Mapping[str, str]) -> str:
        if self.tls:
            return tls.peer_workload(context) or ""
        return metadata.get(tls.WORKLOAD_HEADER, "")

    def authorize(self, full_method: str, request: Any, context: grpc.aio.ServicerContext) -> Caller:
        metadata = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
        workload = self.workload(context, metadata)
        service, method = split(full_method)
        try:
            return self._decide(service, method, workload, request, metadata)
        except (PermissionDenied, Unauthenticated) as refusal:
            metrics.RPC_REFUSALS.labels(service, method, workload or "unknown", refusal.code).inc()
            log.warning(
                "call refused",
                extra={"rpc": f"{service}/{method}", "workload": workload or "unknown", "code": refusal.code},
            )
            raise

    def _decide(
        self, service: str, method: str, workload: str, request: Any, metadata: Mapping[str, str]
    ) -> Caller:
        if service == HEALTH or (service in REFLECTION and workload == OPERATOR):
            return Caller(workload)
        grant = self.table.get(service, {}).get(method, {}).get(workload)
        if not workload or grant is None:
            raise PermissionDenied(
                f"{workload or 'an unknown workload'} may not call {service}/{method}",
                code="workload_not_allowed",
            )
        token = metadata.get(HEADER)
        identity = self._verify(token) if token else None
        if identity is None and grant.for_owner and metadata.get(ON_BEHALF_OF):
            return Caller(workload, Identity(user_id=metadata[ON_BEHALF_OF]))
        if grant.user != "optional" and identity is None:
            raise Unauthenticated(
                f"{service}/{method} is made for a signed-in user", code="user_token_required"
            )
        if grant.user == "admin" and identity is not None and not identity.is_admin:
            raise PermissionDenied("this call needs the admin role", code="admin_required")
        if grant.owner and identity is not None and not identity.is_admin:
            if getattr(request, grant.owner) != identity.user_id:
                raise PermissionDenied("a user acts only on their own records", code="not_owner")
        return Caller(workload, identity, token)

    def _verify(self, token: str) -> Identity:
        if self.verifier is None:
            raise Unauthenticated("this service verifies no user tokens", code="invalid_user_token")
        return self.verifier.verify(token)
