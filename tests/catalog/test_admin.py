"""Admin changes: each makes a new version with an audit entry and a `catalog.changed` event, a
reader's cache sees it within a second, stale or concurrent edits never lose an update, and bad
changes change nothing."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2

from atelier.catalog.v1 import catalog_pb2 as pb
from atelier.common.v1 import common_pb2
from atelier.events.v1 import events_pb2
from kit.bus import Bus
from kit.cached_snapshot import CachedSnapshot
from kit.errors import from_rpc_error
from kit.identity import Identity
from tests import identities
from tests.catalog.stack import ADMIN, USER, CatalogStack


def admin(user_id: str = "admin-1") -> tuple[tuple[str, str], ...]:
    return identities.user(Identity(user_id=user_id, role="admin"))


async def version(catalog: CatalogStack) -> int:
    return int((await catalog.stub.GetCatalog(pb.GetCatalogRequest())).catalog.version)


async def model(catalog: CatalogStack, code: str) -> pb.Model:
    reply: pb.GetModelResponse = await catalog.stub.GetModel(pb.GetModelRequest(code=code))
    return reply.model


def error_code(error: grpc.aio.AioRpcError) -> str:
    domain = from_rpc_error(error)
    assert domain is not None, error
    return domain.code


@pytest.fixture
async def reader(catalog: CatalogStack, bus: Bus) -> AsyncIterator[CachedSnapshot[pb.CatalogSnapshot]]:
    """A catalog reader as another service would hold it: only events refresh it (no timer in reach)."""

    async def fetch(current: pb.CatalogSnapshot | None) -> pb.CatalogSnapshot:
        known = current.version if current is not None else 0
        reply = await catalog.stub.GetCatalog(pb.GetCatalogRequest(known_version=known))
        return current if reply.not_modified and current is not None else reply.catalog

    cache: CachedSnapshot[pb.CatalogSnapshot] = CachedSnapshot(
        fetch, bus=bus, subject="catalog.changed", interval=60.0, name="catalog"
    )
    await cache.start()
    stop = asyncio.Event()
    task = asyncio.create_task(cache.run(stop))
    yield cache
    stop.set()
    await task


async def test_a_change_is_versioned_audited_announced_and_seen_by_readers_within_a_second(
    catalog: CatalogStack, bus: Bus, reader: CachedSnapshot[pb.CatalogSnapshot]
) -> None:
    actor = f"admin-{uuid.uuid4().hex[:8]}"
    events: list[events_pb2.CatalogChanged] = []

    async def on_event(msg: object) -> None:
        event = events_pb2.CatalogChanged.FromString(msg.data)  # type: ignore[attr-defined]
        if event.actor_id == actor:
            events.append(event)

    subscription = await bus.nc.subscribe(bus.subject("catalog.changed"), cb=on_event)
    assert reader.get().version == 1

    started = time.monotonic()
    reply = await catalog.stub.SetModelEnabled(
        pb.SetModelEnabledRequest(code="grok-4-1-image", enabled=False, expected_version=1),
        metadata=admin(actor),
    )
    assert reply.catalog_version == 2
    assert reply.model.enabled is False
    for _ in range(200):
        if reader.get().version == 2 or time.monotonic() - started > 1.0:
            break
        await asyncio.sleep(0.005)
    seen_after = time.monotonic() - started
    assert reader.get().version == 2, "the reader did not see the change within a second"
    assert seen_after < 1.0, f"seen after {seen_after:.3f}s"
    assert not next(m for m in reader.get().models if m.code == "grok-4-1-image").enabled

    for _ in range(100):
        if events:
            break
        await asyncio.sleep(0.01)
    await subscription.unsubscribe()
    assert [(e.version, e.entity_type, e.entity_code) for e in events] == [(2, "model", "grok-4-1-image")]
    assert events[0].meta.event_id
    assert events[0].meta.producer == "catalog"

    audit = await catalog.stub.ListAuditLog(pb.ListAuditLogRequest(), metadata=ADMIN)
    newest = audit.entries[0]
    assert (newest.version, newest.actor_id, newest.action) == (2, actor, "model.disable")
    assert json.loads(newest.diff_json) == [{"op": "replace", "path": "/enabled", "value": False}]
    assert audit.entries[1].action == "seed.load"

    images = await catalog.stub.ListModels(pb.ListModelsRequest(kind=common_pb2.MODEL_KIND_IMAGE))
    assert "grok-4-1-image" not in [m.code for m in images.models]
    assert len(images.models) == 4


async def test_a_stale_expected_version_is_refused_and_changes_nothing(catalog: CatalogStack) -> None:
    await catalog.stub.SetModelEnabled(
        pb.SetModelEnabledRequest(code="grok-video-3", enabled=False), metadata=ADMIN
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await catalog.stub.SetModelEnabled(
            pb.SetModelEnabledRequest(code="google-flow-video", enabled=False, expected_version=1),
            metadata=ADMIN,
        )
    assert caught.value.code() == grpc.StatusCode.ABORTED
    assert error_code(caught.value) == "catalog_version_conflict"
    assert (await model(catalog, "google-flow-video")).enabled
    assert await version(catalog) == 2


async def test_admin_calls_need_the_admin_role(catalog: CatalogStack) -> None:
    request = pb.SetModelEnabledRequest(code="grok-video-3", enabled=False)
    with pytest.raises(grpc.aio.AioRpcError) as as_user:
        await catalog.stub.SetModelEnabled(request, metadata=USER)
    assert as_user.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as anonymous:
        await catalog.stub.ListAuditLog(pb.ListAuditLogRequest())
    assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as listing:
        await catalog.stub.ListModels(pb.ListModelsRequest(include_disabled=True), metadata=USER)
    assert listing.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert await version(catalog) == 1


async def test_concurrent_edits_of_one_model_lose_no_update(catalog: CatalogStack) -> None:
    code = "gpt-image-1.5-all"
    edits: list[tuple[str, pb.Model]] = [
        ("price", pb.Model(code=code, price=common_pb2.Credits(milli=750))),
        ("sort_order", pb.Model(code=code, sort_order=7)),
        ("max_images", pb.Model(code=code, max_images=4)),
        ("max_input_images", pb.Model(code=code, max_input_images=2)),
        ("description", pb.Model(code=code, description=common_pb2.LocalizedText(zh="编辑", en="Edit"))),
        ("ratios", pb.Model(code=code, ratios=["1:1", "16:9"])),
        ("resolutions", pb.Model(code=code, resolutions=["1024"])),
        ("capabilities", pb.Model(code=code, capabilities=["image_edit"])),
    ]
    replies = await asyncio.gather(
        *(
            catalog.stub.UpsertModel(
                pb.UpsertModelRequest(model=m, update_mask=field_mask_pb2.FieldMask(paths=[path])),
                metadata=ADMIN,
            )
            for path, m in edits
        )
    )
    assert sorted(r.catalog_version for r in replies) == list(range(2, 2 + len(edits)))
    final = await model(catalog, code)
    assert final.price.milli == 750
    assert final.sort_order == 7
    assert (final.max_images, final.max_input_images) == (4, 2)
    assert final.description.en == "Edit"
    assert list(final.ratios) == ["1:1", "16:9"]
    assert list(final.resolutions) == ["1024"]
    assert list(final.capabilities) == ["image_edit"]
    assert final.name.en == "GPT Image 1.5 All"  # fields outside the masks are untouched
    audit = await catalog.stub.ListAuditLog(
        pb.ListAuditLogRequest(entity_type="model", entity_code=code), metadata=ADMIN
    )
    assert len(audit.entries) == len(edits)


async def test_concurrent_edits_from_the_same_version_let_exactly_one_win(catalog: CatalogStack) -> None:
    codes = ["grok-video-3", "google-flow-video", "grok-imagine-image", "grok-4-1-image", "gpt-image-1.5-all"]
    results = await asyncio.gather(
        *(
            catalog.stub.SetModelEnabled(
                pb.SetModelEnabledRequest(code=code, enabled=False, expected_version=1), metadata=ADMIN
            )
            for code in codes
        ),
        return_exceptions=True,
    )
    winners = [r for r in results if isinstance(r, pb.SetModelEnabledResponse)]
    losers = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(winners) == 1
    assert len(losers) == len(codes) - 1
    assert {error_code(e) for e in losers} == {"catalog_version_conflict"}
    assert await version(catalog) == 2


async def refused_patch(catalog: CatalogStack, code: str, **fields: Any) -> grpc.aio.AioRpcError:
    """The error of an UpsertModel of only `fields` of model `code`, which must be refused."""
    request = pb.UpsertModelRequest(
        model=pb.Model(code=code, **fields), update_mask=field_mask_pb2.FieldMask(paths=list(fields))
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await catalog.stub.UpsertModel(request, metadata=ADMIN)
    return caught.value


async def test_invalid_and_empty_changes_change_nothing(catalog: CatalogStack) -> None:
    bad_capability = await refused_patch(catalog, "grok-video-3", capabilities=["teleport"])
    assert bad_capability.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_code(bad_capability) == "invalid_catalog"

    text_with_ratio = await refused_patch(catalog, "gemini-2.5-flash", ratios=["1:1"])
    assert error_code(text_with_ratio) == "invalid_model"

    with pytest.raises(grpc.aio.AioRpcError) as below_base:
        await catalog.stub.UpdateRechargeRules(
            pb.UpdateRechargeRulesRequest(
                rules=pb.RechargeRules(
                    currency="CNY",
                    credits_per_major_unit=common_pb2.Credits(milli=1000),
                    minimum=common_pb2.Money(minor=3000, currency="CNY"),
                    bonus_tiers=[
                        pb.BonusTier(
                            amount=common_pb2.Money(minor=30000, currency="CNY"),
                            credits=common_pb2.Credits(milli=100_000),
                        )
                    ],
                )
            ),
            metadata=ADMIN,
        )
    assert error_code(below_base.value) == "invalid_recharge_rules"

    breaks_template = await refused_patch(catalog, "veo-3.1-fast", ratios=["16:9"])
    assert error_code(breaks_template) == "invalid_catalog"
    assert "ecom-video-pro" in (breaks_template.details() or "")

    unchanged = await catalog.stub.SetModelEnabled(
        pb.SetModelEnabledRequest(code="grok-video-3", enabled=True), metadata=ADMIN
    )
    assert unchanged.catalog_version == 1
    assert await version(catalog) == 1


async def test_with_nothing_enabled_the_lists_are_empty_and_say_so(catalog: CatalogStack) -> None:
    videos = await catalog.stub.ListModels(pb.ListModelsRequest(kind=common_pb2.MODEL_KIND_VIDEO))
    assert not videos.admin_must_enable_models
    for code in ("google-flow-video", "grok-video-3"):
        await catalog.stub.SetModelEnabled(
            pb.SetModelEnabledRequest(code=code, enabled=False), metadata=ADMIN
        )
    videos = await catalog.stub.ListModels(pb.ListModelsRequest(kind=common_pb2.MODEL_KIND_VIDEO))
    assert list(videos.models) == []
    assert videos.admin_must_enable_models
    pricing = await catalog.stub.GetPricing(pb.GetPricingRequest())
    assert [g.kind for g in pricing.groups] == [common_pb2.MODEL_KIND_TEXT, common_pb2.MODEL_KIND_IMAGE]
    assert not pricing.admin_must_enable_models  # image and text models are still on
    everything = await catalog.stub.ListModels(
        pb.ListModelsRequest(kind=common_pb2.MODEL_KIND_VIDEO, include_disabled=True), metadata=ADMIN
    )
    assert {m.code for m in everything.models} >= {"google-flow-video", "grok-video-3", "veo_3_1"}
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await catalog.stub.Quote(pb.QuoteRequest(model_code="grok-video-3"))
    assert error_code(caught.value) == "model_disabled"


async def test_every_admin_entity_can_change_and_quotes_keep_their_snapshot(catalog: CatalogStack) -> None:
    before = (await catalog.stub.Quote(pb.QuoteRequest(model_code="doubao-seedream-5-0-260128"))).quote

    channel = await catalog.stub.UpsertChannel(
        pb.UpsertChannelRequest(
            channel=pb.Channel(
                code="ark-main",
                name="Volcengine Ark",
                adapter=pb.ADAPTER_KIND_ARK,
                base_url="https://ark.example/api/v3",
                api_key_ref="ARK_API_KEY",
                enabled=True,
            )
        ),
        metadata=ADMIN,
    )
    await catalog.stub.UpsertModel(
        pb.UpsertModelRequest(
            model=pb.Model(
                code="doubao-seedream-5-0-260128",
                price=common_pb2.Credits(milli=800),
                channel=pb.ChannelBinding(
                    channel_code="ark-main", upstream_model_id="doubao-seedream-5-0-260128"
                ),
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["price", "channel"]),
        ),
        metadata=ADMIN,
    )
    defaults = await catalog.stub.SetDefaultCapabilities(
        pb.SetDefaultCapabilitiesRequest(capabilities=["reference_image"]), metadata=ADMIN
    )
    plan = await catalog.stub.UpsertPlan(
        pb.UpsertPlanRequest(
            plan=pb.Plan(
                code="scale",
                name=common_pb2.LocalizedText(zh="Scale", en="Scale"),
                price=common_pb2.Money(minor=29900, currency="USD"),
                credits=common_pb2.Credits(milli=310_000),
                enabled=True,
                sort_order=30,
            )
        ),
        metadata=ADMIN,
    )
    template = (await catalog.stub.GetTemplate(pb.GetTemplateRequest(code="ecom-video-pro"))).template
    template.price.milli = 15_000
    updated = await catalog.stub.UpsertTemplate(
        pb.UpsertTemplateRequest(template=template, update_mask=field_mask_pb2.FieldMask(paths=["price"])),
        metadata=ADMIN,
    )
    disabled = await catalog.stub.SetTemplateEnabled(
        pb.SetTemplateEnabledRequest(code="creator-video", enabled=False), metadata=ADMIN
    )
    assert [channel.catalog_version, defaults.catalog_version, plan.catalog_version] == [2, 4, 5]
    assert (updated.catalog_version, disabled.catalog_version) == (6, 7)

    seedream = await model(catalog, "doubao-seedream-5-0-260128")
    assert seedream.price.milli == 800
    assert (seedream.channel.adapter, seedream.channel.base_url) == (
        pb.ADAPTER_KIND_ARK,
        "https://ark.example/api/v3",
    )
    assert seedream.channel.api_key_ref == "ARK_API_KEY"
    assert list(seedream.effective_capabilities) == ["reference_image"]
    after = (await catalog.stub.Quote(pb.QuoteRequest(model_code="doubao-seedream-5-0-260128"))).quote
    assert (before.total.milli, before.catalog_version) == (500, 1)
    assert (after.total.milli, after.catalog_version) == (800, 7)
    templates = await catalog.stub.ListTemplates(pb.ListTemplatesRequest())
    assert [t.code for t in templates.templates] == ["health-supplement", "ecom-video-pro"]
    assert templates.templates[1].price.milli == 15_000
    options = await catalog.stub.GetRechargeOptions(pb.GetRechargeOptionsRequest())
    assert [p.code for p in options.plans] == ["starter", "growth", "scale"]
    channels = await catalog.stub.ListChannels(pb.ListChannelsRequest(), metadata=ADMIN)
    assert [c.code for c in channels.channels] == ["ark-main", "local"]

    audit = await catalog.stub.ListAuditLog(
        pb.ListAuditLogRequest(page=common_pb2.PageRequest(limit=3)), metadata=ADMIN
    )
    assert [e.version for e in audit.entries] == [7, 6, 5]
    rest = await catalog.stub.ListAuditLog(
        pb.ListAuditLogRequest(page=common_pb2.PageRequest(cursor=audit.page.next_cursor, limit=10)),
        metadata=ADMIN,
    )
    assert [e.version for e in rest.entries] == [4, 3, 2, 1]
    assert rest.page.next_cursor == ""
    for cursor in ("x1", "\u00b2", "\uff13"):  # not a cursor; '²' passes str.isdigit() and breaks int()
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await catalog.stub.ListAuditLog(
                pb.ListAuditLogRequest(page=common_pb2.PageRequest(cursor=cursor)), metadata=ADMIN
            )
        refusal = from_rpc_error(refused.value)
        assert refusal is not None
        assert refusal.code == "invalid_cursor"
    price_diff = next(e for e in rest.entries if e.version == 3)
    assert {"op": "replace", "path": "/price", "value": 800} in json.loads(price_diff.diff_json)
