"""Generation quotes: a request checked against its model's specs and priced by its billing unit
(per generation, image, second, or 1k tokens)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from kit.errors import FailedPrecondition, InvalidArgument
from services.catalog.model_specs import find_model
from services.catalog.schemas import BillingUnit, Catalog, Channel, ModelSpec


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
    # The request as priced: empty values resolved to the model's defaults.
    params: QuoteParams


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


def _check_input_images(model: ModelSpec, params: QuoteParams) -> None:
    if not 0 <= params.input_image_count <= model.max_input_images:
        allowed = [str(i) for i in range(model.max_input_images + 1)]
        raise _unsupported(model, "input_image_count", params.input_image_count, allowed)


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
    _check_input_images(model, params)
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
        params=replace(params, ratio=ratio, resolution=resolution, duration_seconds=duration, n=n),
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
    _check_input_images(model, params)
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
        # A text quote records no input images, even a multimodal model's (as it always has).
        params=replace(params, n=1, max_output_tokens=output, input_image_count=0),
        **common,
    )
