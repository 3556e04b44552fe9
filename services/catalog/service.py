"""The catalog's rules: loading the seed, admin changes (versioned, audited, announced), public views,
and quotes. Pure of transport: functions take a session (or a `Catalog`) and typed arguments, raise
DomainErrors, and only flush; the edge owns the transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from kit.errors import Conflict, FailedPrecondition, InvalidArgument, NotFound, Unavailable
from kit.outbox import Outbox
from services.catalog import events, repository
from services.catalog.schemas import (
    Amount,
    BillingUnit,
    Catalog,
    Channel,
    Kind,
    ModelSpec,
    PaymentMethod,
    Plan,
    RechargeRules,
    SeedFile,
    Template,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

SEED_ACTOR = "system:seed"
KIND_ORDER: tuple[Kind, ...] = ("text", "image", "video")
# 10^9 fen = 10 million RMB: far above any real top-up, far below int64 overflow in milli-credits.
MAX_RECHARGE_MINOR = 10**9


# -- reading -------------------------------------------------------------------------------------


class CatalogReader:
    """The current catalog, parsed once per version (one cheap query per call when nothing changed)."""

    def __init__(self) -> None:
        self._cached: Catalog | None = None

    async def current(self, session: AsyncSession) -> Catalog:
        version = await repository.current_version(session)
        if version is None:
            raise Unavailable("the catalog is not loaded yet", code="catalog_not_loaded")
        cached = self._cached
        if cached is not None and cached.version == version:
            return cached
        snapshot = await repository.snapshot_at(session, version)
        if snapshot is None:  # pragma: no cover - versions and the state row are written together
            raise Unavailable("the catalog version is missing", code="catalog_not_loaded")
        self._cached = snapshot
        return snapshot


# -- the seed ------------------------------------------------------------------------------------


def read_seed(path: Path) -> SeedFile:
    with path.open(encoding="utf-8") as handle:
        document = yaml.safe_load(handle)
    seed = SeedFile.model_validate(document)
    problems = seed.problems()
    if problems:
        raise ValueError(f"{path}: inconsistent seed: {'; '.join(problems)}")
    return seed


def seed_catalog(seed: SeedFile) -> Catalog:
    """The catalog a seed describes, as version 1 dated the seed's effective date."""
    loaded_at = seed.effective_date
    catalog = Catalog.model_validate(seed.model_dump(exclude={"effective_date"}))
    for model in catalog.models:
        model.updated_at = loaded_at
    for template in catalog.templates:
        template.updated_at = loaded_at
    for channel in catalog.channels:
        channel.updated_at = loaded_at
    catalog.version = 1
    catalog.updated_at = loaded_at
    _sort(catalog)
    return catalog


async def load_seed(session: AsyncSession, outbox: Outbox, seed: SeedFile) -> bool:
    """Loads `seed` into an empty catalog as version 1. Idempotent: False when a catalog exists."""
    await repository.lock_seed(session)
    if await repository.current_version(session) is not None:
        return False
    loaded_at = seed.effective_date
    catalog = seed_catalog(seed)
    for channel in catalog.channels:
        await repository.save_channel(session, channel)
    for model in catalog.models:
        await repository.save_model(session, model)
    for template in catalog.templates:
        await repository.save_template(session, template)
    for plan in catalog.plans:
        await repository.save_plan(session, plan)
    for method in catalog.payment_methods:
        await repository.save_payment_method(session, method)
    await repository.save_recharge_rules(session, catalog.recharge_rules)
    await repository.save_state(
        session,
        version=1,
        updated_at=loaded_at,
        default_capabilities=catalog.default_capabilities,
        capability_names=catalog.capabilities,
    )
    await _record(
        session,
        outbox,
        catalog,
        actor_id=SEED_ACTOR,
        at=loaded_at,
        action="seed.load",
        entity_type="catalog",
        entity_code="",
        diff=[{"op": "add", "path": "", "value": _comparable(catalog)}],
    )
    await session.flush()
    return True


def _sort(catalog: Catalog) -> None:
    """The order the tables give back (sort_order, code), so that every version lists alike."""
    for items in (catalog.models, catalog.templates, catalog.plans, catalog.payment_methods):
        items.sort(key=lambda item: (item.sort_order, item.code))
    catalog.channels.sort(key=lambda channel: channel.code)


# -- admin changes -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """What an admin change did: the catalog after it, and whether it made a new version."""

    catalog: Catalog
    changed: bool


async def _change(
    session: AsyncSession,
    outbox: Outbox,
    *,
    actor_id: str,
    expected_version: int,
    action: str,
    entity_type: str,
    entity_code: str,
    get: Callable[[Catalog], Any],
    mutate: Callable[[Catalog], None],
    save: Callable[[AsyncSession, Catalog], Awaitable[None]],
) -> Change:
    """One admin change: lock the state row (changes are serialised, so none is lost), check
    `expected_version` (0 = don't check), apply, validate the whole catalog, and write the entity,
    a new version, an audit row and `catalog.changed` — all in the caller's transaction."""
    state = await repository.lock_state(session)
    if state is None:
        raise Unavailable("the catalog is not loaded yet", code="catalog_not_loaded")
    if expected_version and expected_version != state.version:
        raise Conflict(
            f"the catalog moved on to version {state.version} (you expected {expected_version}); "
            "reload and apply your change again",
            code="catalog_version_conflict",
            current_version=str(state.version),
        )
    catalog = await repository.load_catalog(session, state)
    before = _comparable(get(catalog))
    try:
        mutate(catalog)
    except ValidationError as exc:
        raise _invalid(exc, entity_type) from exc
    problems = catalog.problems()
    if problems:
        raise InvalidArgument("; ".join(problems), code="invalid_catalog", problems="; ".join(problems))
    after = _comparable(get(catalog))
    if before == after:
        return Change(catalog, changed=False)
    now = datetime.now(UTC)
    _sort(catalog)
    catalog.version = state.version + 1
    catalog.updated_at = now
    entity = get(catalog)
    if isinstance(entity, ModelSpec | Template | Channel):
        entity.updated_at = now
    await save(session, catalog)
    await repository.save_state(
        session,
        version=catalog.version,
        updated_at=now,
        default_capabilities=catalog.default_capabilities,
        capability_names=catalog.capabilities,
    )
    await _record(
        session,
        outbox,
        catalog,
        actor_id=actor_id,
        at=now,
        action=action,
        entity_type=entity_type,
        entity_code=entity_code,
        diff=json_patch(before, after),
    )
    await session.flush()
    log.info(
        "catalog changed",
        extra={"version": catalog.version, "action": action, "entity": f"{entity_type}:{entity_code}"},
    )
    return Change(catalog, changed=True)


async def _record(
    session: AsyncSession,
    outbox: Outbox,
    catalog: Catalog,
    *,
    actor_id: str,
    at: datetime,
    action: str,
    entity_type: str,
    entity_code: str,
    diff: list[dict[str, Any]],
) -> None:
    await repository.add_version(
        session, version=catalog.version, created_at=at, actor_id=actor_id, snapshot=catalog
    )
    await repository.add_audit(
        session,
        version=catalog.version,
        actor_id=actor_id,
        created_at=at,
        action=action,
        entity_type=entity_type,
        entity_code=entity_code,
        diff=diff,
    )
    event_id, message = events.catalog_changed(
        version=catalog.version,
        actor_id=actor_id,
        entity_type=entity_type,
        entity_code=entity_code,
        occurred_at=at,
    )
    await outbox.add(session, events.CATALOG_CHANGED, message, event_id=event_id)


def _invalid(exc: ValidationError, what: str) -> InvalidArgument:
    problems = "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or what}: {err['msg']}" for err in exc.errors()
    )
    return InvalidArgument(f"invalid {what}: {problems}", code=f"invalid_{what}", problems=problems)


def _merge(existing: BaseModel | None, data: dict[str, Any], fields: list[str] | None) -> dict[str, Any]:
    """The entity's new definition: `data` replaces it (fields None) or only the named fields."""
    if existing is None or fields is None:
        return data
    merged = existing.model_dump()
    for name in fields:
        merged[name] = data.get(name)
    return merged


def _replace(items: list[Any], item: Any) -> None:
    for index, old in enumerate(items):
        if old.code == item.code:
            items[index] = item
            return
    items.append(item)


def _check_fields(fields: list[str] | None, schema: type[BaseModel], read_only: set[str]) -> None:
    if fields is None:
        return
    unknown = sorted({f for f in fields if f not in schema.model_fields or f in read_only})
    if unknown:
        raise InvalidArgument(
            f"these fields cannot be updated: {', '.join(unknown)}", code="invalid_update_mask"
        )


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
    _check_fields(fields, ModelSpec, {"code", "updated_at"})

    def mutate(catalog: Catalog) -> None:
        existing = catalog.model(code)
        if existing is None and fields is not None:
            raise NotFound(f"no model {code!r} to update", code="model_not_found")
        merged = _merge(existing, data, fields)
        merged["updated_at"] = existing.updated_at if existing else None
        _replace(catalog.models, ModelSpec.model_validate(merged))

    return await _change(
        session,
        outbox,
        actor_id=actor_id,
        expected_version=expected_version,
        action="model.upsert",
        entity_type="model",
        entity_code=code,
        get=lambda c: c.model(code),
        mutate=mutate,
        save=lambda s, c: repository.save_model(s, _required(c.model(code))),
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
        _required(catalog.model(code), f"no model {code!r}", "model_not_found").enabled = enabled

    return await _change(
        session,
        outbox,
        actor_id=actor_id,
        expected_version=expected_version,
        action="model.enable" if enabled else "model.disable",
        entity_type="model",
        entity_code=code,
        get=lambda c: c.model(code),
        mutate=mutate,
        save=lambda s, c: repository.save_model(s, _required(c.model(code))),
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

    return await _change(
        session,
        outbox,
        actor_id=actor_id,
        expected_version=expected_version,
        action="default_capabilities.update",
        entity_type="default_capabilities",
        entity_code="",
        get=lambda c: c.default_capabilities,
        mutate=mutate,
        save=save,
    )


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
    _check_fields(fields, Template, {"code", "updated_at"})

    def mutate(catalog: Catalog) -> None:
        existing = catalog.template(code)
        if existing is None and fields is not None:
            raise NotFound(f"no template {code!r} to update", code="template_not_found")
        merged = _merge(existing, data, fields)
        merged["updated_at"] = existing.updated_at if existing else None
        _replace(catalog.templates, Template.model_validate(merged))

    return await _change(
        session,
        outbox,
        actor_id=actor_id,
        expected_version=expected_version,
        action="template.upsert",
        entity_type="template",
        entity_code=code,
        get=lambda c: c.template(code),
        mutate=mutate,
        save=lambda s, c: repository.save_template(s, _required(c.template(code))),
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
        _required(catalog.template(code), f"no template {code!r}", "template_not_found").enabled = enabled

    return await _change(
        session,
        outbox,
        actor_id=actor_id,
        expected_version=expected_version,
        action="template.enable" if enabled else "template.disable",
        entity_type="template",
        entity_code=code,
        get=lambda c: c.template(code),
        mutate=mutate,
        save=lambda s, c: repository.save_template(s, _required(c.template(code))),
    )


async def update_recharge_rules(
    session: AsyncSession, outbox: Outbox, *, actor_id: str, data: dict[str, Any], expected_version: int = 0
) -> Change:
    def mutate(catalog: Catalog) -> None:
        catalog.recharge_rules = RechargeRules.model_validate(data)

    return await _change(
        session,
        outbox,
        actor_id=actor_id,
        expected_version=expected_version,
        action="recharge_rules.update",
        entity_type="recharge_rules",
        entity_code="",
        get=lambda c: c.recharge_rules,
        mutate=mutate,
        save=lambda s, c: repository.save_recharge_rules(s, c.recharge_rules),
    )


async def upsert_plan(
    session: AsyncSession, outbox: Outbox, *, actor_id: str, data: dict[str, Any], expected_version: int = 0
) -> Change:
    code = str(data.get("code", ""))

    def mutate(catalog: Catalog) -> None:
        _replace(catalog.plans, Plan.model_validate(data))

    return await _change(
        session,
        outbox,
        actor_id=actor_id,
        expected_version=expected_version,
        action="plan.upsert",
        entity_type="plan",
        entity_code=code,
        get=lambda c: c.plan(code),
        mutate=mutate,
        save=lambda s, c: repository.save_plan(s, _required(c.plan(code))),
    )


async def upsert_channel(
    session: AsyncSession, outbox: Outbox, *, actor_id: str, data: dict[str, Any], expected_version: int = 0
) -> Change:
    code = str(data.get("code", ""))

    def mutate(catalog: Catalog) -> None:
        existing = catalog.channel(code)
        _replace(
            catalog.channels, Channel.model_validate({**data, "updated_at": existing and existing.updated_at})
        )

    return await _change(
        session,
        outbox,
        actor_id=actor_id,
        expected_version=expected_version,
        action="channel.upsert",
        entity_type="channel",
        entity_code=code,
        get=lambda c: c.channel(code),
        mutate=mutate,
        save=lambda s, c: repository.save_channel(s, _required(c.channel(code))),
    )


def _required(item: T | None, message: str = "not found", code: str = "not_found") -> T:
    if item is None:
        raise NotFound(message, code=code)
    return item


def _comparable(value: Any) -> Any:
    """JSON of an entity without the timestamps a change itself sets."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    if isinstance(value, dict):
        return {k: _comparable(v) for k, v in value.items() if k not in ("updated_at", "version")}
    if isinstance(value, list):
        return [_comparable(v) for v in value]
    return value


def json_patch(before: Any, after: Any, path: str = "") -> list[dict[str, Any]]:
    """An RFC 6902 JSON Patch turning `before` into `after` (lists are replaced whole)."""
    if before == after:
        return []
    if before is None:
        return [{"op": "add", "path": path, "value": after}]
    if after is None:
        return [{"op": "remove", "path": path}]
    if isinstance(before, dict) and isinstance(after, dict):
        ops: list[dict[str, Any]] = []
        for key in before:
            pointer = f"{path}/{_escape(key)}"
            if key not in after:
                ops.append({"op": "remove", "path": pointer})
            else:
                ops += json_patch(before[key], after[key], pointer)
        for key in after:
            if key not in before:
                ops.append({"op": "add", "path": f"{path}/{_escape(key)}", "value": after[key]})
        return ops
    return [{"op": "replace", "path": path, "value": after}]


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


async def audit_log(
    session: AsyncSession, *, entity_type: str, entity_code: str, before_id: int | None, limit: int
) -> list[repository.AuditRow]:
    """Audit entries, newest first, optionally for one entity, older than `before_id` (the cursor)."""
    return await repository.list_audit(
        session, entity_type=entity_type, entity_code=entity_code, before_id=before_id, limit=limit
    )


# -- public views --------------------------------------------------------------------------------


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


def list_templates(catalog: Catalog, include_disabled: bool) -> list[Template]:
    return [t for t in catalog.templates if include_disabled or (t.enabled and t.public)]


def find_template(catalog: Catalog, code: str, include_disabled: bool) -> Template:
    template = catalog.template(code)
    if template is None or not (include_disabled or template.public):
        raise NotFound(f"no workflow template {code!r}", code="template_not_found")
    return template


def find_model(catalog: Catalog, code: str, include_internal: bool) -> ModelSpec:
    model = catalog.model(code)
    if model is None or not (include_internal or model.public):
        raise NotFound(f"no model {code!r}", code="model_not_found")
    return model


def recharge_options(catalog: Catalog) -> tuple[RechargeRules, list[Plan], list[PaymentMethod]]:
    return (
        catalog.recharge_rules,
        [p for p in catalog.plans if p.enabled],
        [m for m in catalog.payment_methods if m.enabled],
    )


# -- quotes --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuoteParams:
    model_code: str
    ratio: str = ""
    resolution: str = ""
    duration_seconds: int = 0
    n: int = 0
    capability: str = ""
    input_image_count: int = 0
    input_tokens: int = 0
    max_output_tokens: int = 0
    # Workflow steps may use enabled non-public models.
    internal: bool = False


@dataclass(frozen=True)
class Quote:
    model: ModelSpec
    channel: Channel | None
    unit: BillingUnit
    unit_price: int
    quantity: int
    total: int
    catalog_version: int
    quoted_at: datetime
    ratio: str = ""
    resolution: str = ""
    duration_seconds: int = 0
    n: int = 1
    capability: str = ""
    input_image_count: int = 0
    input_tokens: int = 0
    max_output_tokens: int = 0


def _unsupported(model: ModelSpec, field: str, value: object, allowed: list[str]) -> InvalidArgument:
    shown = ", ".join(allowed) if allowed else "none"
    return InvalidArgument(
        f"{field} {value!r} is not supported by {model.code}; allowed: {shown}",
        code="unsupported_spec",
        field=field,
        allowed=",".join(allowed),
        model=model.code,
    )


def _pick(model: ModelSpec, field: str, value: str, allowed: list[str]) -> str:
    """`value` when allowed; the model's first allowed value when empty."""
    if not value:
        return allowed[0]
    if value not in allowed:
        raise _unsupported(model, field, value, allowed)
    return value


def quote(catalog: Catalog, params: QuoteParams, *, now: datetime | None = None) -> Quote:
    """Validates a generation request against its model and prices it by the model's billing unit.

    Empty ratio / resolution / duration mean the model's first allowed value; n 0 means 1.
    """
    model = find_model(catalog, params.model_code, include_internal=params.internal)
    if not model.enabled:
        raise FailedPrecondition(
            f"model {model.code} is disabled; an admin must enable it first",
            code="model_disabled",
            model=model.code,
        )
    binding = model.channel
    channel = catalog.channel(binding.channel_code) if binding.channel_code else None
    common: dict[str, Any] = {
        "model": model,
        "channel": channel,
        "catalog_version": catalog.version,
        "quoted_at": now or datetime.now(UTC),
    }
    n = params.n or 1
    if model.kind == "text":
        return _quote_text(model, params, n, common)

    for field, given in (
        ("input_tokens", params.input_tokens),
        ("max_output_tokens", params.max_output_tokens),
    ):
        if given:
            # Text asked of an image or video model (a Copy Studio chat): name the kind, not the field.
            raise InvalidArgument(
                f"{model.code} is not a text model ({model.kind}); {field} applies to text models only",
                code="unsupported_spec",
                field=field,
                allowed="",
                model=model.code,
                kind=model.kind,
            )
    ratio = _pick(model, "ratio", params.ratio, model.ratios)
    resolution = _pick(model, "resolution", params.resolution, model.resolutions)
    duration = 0
    if model.kind == "video":
        allowed_durations = [str(d) for d in model.durations]
        duration = int(
            _pick(model, "duration_seconds", str(params.duration_seconds or ""), allowed_durations)
        )
    elif params.duration_seconds:
        raise _unsupported(model, "duration_seconds", params.duration_seconds, [])
    max_n = max(model.max_images, 1) if model.kind == "image" else 1
    if not 1 <= n <= max_n:
        raise _unsupported(model, "n", params.n, [str(i) for i in range(1, max_n + 1)])
    capabilities = catalog.effective_capabilities(model)
    if params.capability and params.capability not in capabilities:
        raise InvalidArgument(
            f"capability {params.capability!r} is not supported by {model.code}; "
            f"allowed: {', '.join(capabilities) or 'none'}",
            code="unsupported_capability",
            field="capability",
            allowed=",".join(capabilities),
            model=model.code,
        )
    if not 0 <= params.input_image_count <= model.max_input_images:
        raise _unsupported(
            model,
            "input_image_count",
            params.input_image_count,
            [str(i) for i in range(model.max_input_images + 1)],
        )
    if model.billing_unit == "per_generation":
        quantity = 1
    elif model.billing_unit == "per_image":
        quantity = n
    else:  # per_second
        quantity = duration * n
    return Quote(
        unit=model.billing_unit,
        unit_price=model.price,
        quantity=quantity,
        total=model.price * quantity,
        ratio=ratio,
        resolution=resolution,
        duration_seconds=duration,
        n=n,
        capability=params.capability,
        input_image_count=params.input_image_count,
        **common,
    )


def _quote_text(model: ModelSpec, params: QuoteParams, n: int, common: dict[str, Any]) -> Quote:
    for field, given in (
        ("ratio", params.ratio),
        ("resolution", params.resolution),
        ("duration_seconds", params.duration_seconds),
        ("capability", params.capability),
    ):
        if given:
            raise _unsupported(model, field, given, [])
    # Multimodal text models read images too (e.g. a workflow's product photos).
    if not 0 <= params.input_image_count <= model.max_input_images:
        raise _unsupported(
            model,
            "input_image_count",
            params.input_image_count,
            [str(i) for i in range(model.max_input_images + 1)],
        )
    if n != 1:
        raise _unsupported(model, "n", params.n, ["1"])
    if params.input_tokens < 0:
        raise _unsupported(model, "input_tokens", params.input_tokens, ["0 or more"])
    cap = model.max_output_tokens
    output = params.max_output_tokens or cap
    if output <= 0 or (cap and output > cap):
        raise _unsupported(model, "max_output_tokens", params.max_output_tokens, [f"1..{cap or 'any'}"])
    # Milli-credits per 1k tokens, rounded up to a whole milli-credit: never under-charge.
    cost = params.input_tokens * model.input_price_per_1k_tokens + output * model.output_price_per_1k_tokens
    total = -(-cost // 1000)
    return Quote(
        unit="per_1k_tokens",
        unit_price=0,
        quantity=params.input_tokens + output,
        total=total,
        n=1,
        input_tokens=params.input_tokens,
        max_output_tokens=output,
        **common,
    )


# -- recharge quotes -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RechargeQuote:
    method: PaymentMethod
    amount: Amount
    plan_code: str
    paid_credits: int
    bonus_credits: int
    catalog_version: int

    @property
    def total_credits(self) -> int:
        return self.paid_credits + self.bonus_credits


def bonus_for(rules: RechargeRules, amount: Amount) -> int:
    """The bonus of the highest tier `amount` reaches, as a flat number of milli-credits.

    300 RMB → 30 bonus credits; 500 RMB reaches only the 300 tier → 500 + 30 = 530 credits;
    1000 RMB → 150 bonus credits. Amounts between tiers never get a pro-rated bonus.
    """
    reached = [tier for tier in rules.bonus_tiers if amount.minor >= tier.amount.minor]
    if not reached:
        return 0
    tier = reached[-1]
    return tier.credits - rules.base_credits(tier.amount)


def quote_recharge(
    catalog: Catalog, *, method_code: str, amount: Amount | None = None, plan_code: str = ""
) -> RechargeQuote:
    method = catalog.payment_method(method_code)
    if method is None:
        raise NotFound(f"no payment method {method_code!r}", code="payment_method_not_found")
    if not method.enabled:
        raise FailedPrecondition(f"payment method {method.code} is disabled", code="payment_method_disabled")

    def currency_check(currency: str, allowed: list[str]) -> None:
        if currency not in allowed or currency not in method.currencies:
            ok = [c for c in allowed if c in method.currencies]
            raise FailedPrecondition(
                f"{method.code} cannot pay in {currency!r} here; allowed: {', '.join(ok) or 'none'}",
                code="unsupported_currency",
                allowed=",".join(ok),
            )

    if plan_code:
        plan = catalog.plan(plan_code)
        if plan is None:
            raise NotFound(f"no plan {plan_code!r}", code="plan_not_found")
        if not plan.enabled:
            raise FailedPrecondition(f"plan {plan.code} is not available", code="plan_disabled")
        currency_check(plan.price.currency, [plan.price.currency])
        return RechargeQuote(method, plan.price, plan.code, plan.credits, 0, catalog.version)
    if amount is None:
        raise InvalidArgument("give an amount or a plan", code="invalid_recharge")
    rules = catalog.recharge_rules
    currency_check(amount.currency, [rules.currency])
    if amount.minor < rules.minimum.minor:
        raise FailedPrecondition(
            f"the minimum recharge is {rules.minimum.money}",
            code="below_minimum_recharge",
            minimum=rules.minimum.money.major_str(),
            currency=rules.currency,
        )
    if amount.minor > MAX_RECHARGE_MINOR:
        raise InvalidArgument("the amount is too large", code="amount_too_large")
    return RechargeQuote(
        method, amount, "", rules.base_credits(amount), bonus_for(rules, amount), catalog.version
    )
