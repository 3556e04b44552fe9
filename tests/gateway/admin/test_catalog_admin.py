"""Admin catalog edits through the gateway against the real catalog service: they show on the public
pages at once, leave an audit entry, and bad input changes nothing."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.gateway.admin.conftest import Admin

MODEL = "doubao-seedream-5-0-260128"


async def version(api: Admin) -> int:
    reply = await api.http.get("/v1/admin/plans", headers=api.headers)
    assert reply.status_code == 200
    return int(reply.json()["catalog_version"])


async def test_price_edit_shows_on_pricing_at_once_and_is_audited(api: Admin) -> None:
    listed = await api.http.get("/v1/admin/models", headers=api.headers)
    assert listed.status_code == 200
    models = {m["code"]: m for m in listed.json()["models"]}
    assert models[MODEL]["price"] == "0.5"
    assert models["veo_3_1"]["public"] is False  # internal models are listed for admins
    assert models[MODEL]["channel"]["channel_code"] == "local"
    start = listed.json()["catalog_version"]

    edited = await api.http.patch(
        f"/v1/admin/models/{MODEL}",
        json={"price": "0.75", "expected_version": start},
        headers=api.headers,
    )
    assert edited.status_code == 200, edited.text
    assert edited.json()["model"]["price"] == "0.75"
    assert edited.json()["model"]["ratios"] == models[MODEL]["ratios"]  # untouched fields stay
    assert edited.json()["catalog_version"] == start + 1

    pricing = (await api.http.get("/v1/pricing")).json()
    [image] = [g for g in pricing["groups"] if g["kind"] == "image"]
    [shown] = [m for m in image["models"] if m["code"] == MODEL]
    assert shown["billing"]["price"] == "0.75"
    assert pricing["catalog_version"] == start + 1

    audit = await api.http.get(
        "/v1/admin/audit", params={"entity_type": "model", "entity_code": MODEL}, headers=api.headers
    )
    assert audit.status_code == 200
    entry = audit.json()["items"][0]
    assert (entry["action"], entry["actor_id"], entry["version"]) == ("model.upsert", api.admin_id, start + 1)
    assert {"op": "replace", "path": "/price", "value": 750} in entry["diff"]

    stale = await api.http.patch(
        f"/v1/admin/models/{MODEL}", json={"price": "9", "expected_version": start}, headers=api.headers
    )
    assert stale.status_code == 409
    assert stale.json()["code"] == "catalog_version_conflict"
    again = (await api.http.get(f"/v1/admin/models/{MODEL}", headers=api.headers)).json()
    assert again["model"]["price"] == "0.75"


async def test_a_fetched_model_can_be_sent_back_whole(api: Admin) -> None:
    fetched = (await api.http.get(f"/v1/admin/models/{MODEL}", headers=api.headers)).json()
    model = fetched["model"]
    model["name"]["en"] = "Seedream 5"
    model["capabilities"] = ["reference_image"]
    model["inherits_default_capabilities"] = False
    model["expected_version"] = fetched["catalog_version"]
    put = await api.http.put(f"/v1/admin/models/{MODEL}", json=model, headers=api.headers)
    assert put.status_code == 200, put.text
    assert put.json()["model"]["effective_capabilities"] == ["reference_image"]
    models = (await api.http.get("/v1/models", params={"kind": "image"})).json()["models"]
    assert next(m for m in models if m["code"] == MODEL)["name"] == "Seedream 5"


async def test_disabling_the_models_of_a_kind_empties_it(api: Admin) -> None:
    for code in ("google-flow-video", "grok-video-3"):
        reply = await api.http.post(f"/v1/admin/models/{code}/disable", headers=api.headers)
        assert reply.status_code == 200, reply.text
        assert reply.json()["model"]["enabled"] is False
    public = (await api.http.get("/v1/models", params={"kind": "video"})).json()
    assert public["models"] == []
    assert public["admin_must_enable_models"] is True
    pricing = (await api.http.get("/v1/pricing")).json()
    assert "video" not in [g["kind"] for g in pricing["groups"]]
    quote = await api.http.post(
        "/v1/quotes",
        json={"model": "grok-video-3", "ratio": "16:9", "resolution": "720p", "duration_seconds": 6},
    )
    assert quote.status_code == 409
    assert quote.json()["code"] == "model_disabled"
    # Admins still see them.
    admin_view = (
        await api.http.get("/v1/admin/models", params={"kind": "video"}, headers=api.headers)
    ).json()
    assert {m["code"]: m["enabled"] for m in admin_view["models"] if m["public"]} == {
        "google-flow-video": False,
        "grok-video-3": False,
    }

    enabled = await api.http.post(
        "/v1/admin/models/grok-video-3/enable",
        json={"expected_version": admin_view["catalog_version"]},
        headers=api.headers,
    )
    assert enabled.status_code == 200
    public = (await api.http.get("/v1/models", params={"kind": "video"})).json()
    assert [m["code"] for m in public["models"]] == ["grok-video-3"]
    actions = [
        e["action"] for e in (await api.http.get("/v1/admin/audit", headers=api.headers)).json()["items"]
    ]
    assert actions[:3] == ["model.enable", "model.disable", "model.disable"]


async def test_templates_rules_plans_defaults_and_channels(api: Admin) -> None:
    templates = (await api.http.get("/v1/admin/templates", headers=api.headers)).json()["templates"]
    health = next(t for t in templates if t["code"] == "health-supplement")
    health["price"] = "2"
    put = await api.http.put("/v1/admin/templates/health-supplement", json=health, headers=api.headers)
    assert put.status_code == 200, put.text
    assert put.json()["template"]["price"] == "2"
    assert (
        await api.http.post("/v1/admin/templates/creator-video/disable", headers=api.headers)
    ).status_code == 200
    public = (await api.http.get("/v1/workflow-templates")).json()["templates"]
    assert {t["code"]: t["price"] for t in public} == {"health-supplement": "2", "ecom-video-pro": "12"}

    rules = (await api.http.get("/v1/admin/recharge-rules", headers=api.headers)).json()
    assert rules["rules"]["minimum"] == {"amount": "30.00", "currency": "CNY"}
    body = dict(rules["rules"], minimum={"amount": "50", "currency": "CNY"})
    updated = await api.http.put("/v1/admin/recharge-rules", json=body, headers=api.headers)
    assert updated.status_code == 200, updated.text
    options = (await api.http.get("/v1/recharge-options")).json()
    assert options["rules"]["minimum"] == {"amount": "50.00", "currency": "CNY"}

    plan = await api.http.put(
        "/v1/admin/plans/scale",
        json={
            "name": {"en": "Scale", "zh": "规模"},
            "price": {"amount": "299", "currency": "USD"},
            "credits": "320",
            "enabled": True,
            "sort_order": 3,
        },
        headers=api.headers,
    )
    assert plan.status_code == 200, plan.text
    plans = (await api.http.get("/v1/admin/plans", headers=api.headers)).json()["plans"]
    assert {"code": "scale", "credits": "320"}.items() <= next(
        p for p in plans if p["code"] == "scale"
    ).items()

    defaults = await api.http.put(
        "/v1/admin/default-capabilities", json={"capabilities": ["reference_image"]}, headers=api.headers
    )
    assert defaults.status_code == 200, defaults.text
    got = (await api.http.get("/v1/admin/default-capabilities", headers=api.headers)).json()
    assert got["capabilities"] == ["reference_image"]

    channel = await api.http.put(
        "/v1/admin/channels/ark-main",
        json={
            "name": "Volcengine Ark",
            "adapter": "ark",
            "base_url": "https://ark.example.com/api/v3",
            "api_key_ref": "ARK_API_KEY",
            "timeout_seconds": 60,
        },
        headers=api.headers,
    )
    assert channel.status_code == 200, channel.text
    listed = (await api.http.get("/v1/admin/channels", headers=api.headers)).json()["channels"]
    ark = next(c for c in listed if c["code"] == "ark-main")
    assert (ark["adapter"], ark["api_key_ref"], ark["enabled"]) == ("ark", "ARK_API_KEY", True)
    bound = await api.http.patch(
        f"/v1/admin/models/{MODEL}",
        json={"channel": {"channel_code": "ark-main", "upstream_model_id": "seedream-5-0-260128"}},
        headers=api.headers,
    )
    assert bound.status_code == 200, bound.text
    assert bound.json()["model"]["channel"]["adapter"] == "ark"
    entities = {
        e["entity_type"] for e in (await api.http.get("/v1/admin/audit", headers=api.headers)).json()["items"]
    }
    assert entities >= {"template", "recharge_rules", "plan", "default_capabilities", "channel", "model"}


BAD: list[tuple[str, str, Any, int, str]] = [
    ("PATCH", f"/v1/admin/models/{MODEL}", {"price": "-1"}, 422, "invalid_request"),
    ("PATCH", f"/v1/admin/models/{MODEL}", {"price": 0.5}, 422, "invalid_request"),
    ("PATCH", f"/v1/admin/models/{MODEL}", {"price": "0.0001"}, 422, "invalid_request"),
    ("PATCH", f"/v1/admin/models/{MODEL}", {"price": "０.５"}, 422, "invalid_request"),
    ("PATCH", f"/v1/admin/models/{MODEL}", {"price": None}, 422, "invalid_request"),
    ("PATCH", f"/v1/admin/models/{MODEL}", {}, 422, "invalid_request"),
    ("PATCH", f"/v1/admin/models/{MODEL}", {"colour": "red"}, 422, "invalid_request"),
    ("PATCH", f"/v1/admin/models/{MODEL}", {"kind": "audio"}, 422, "invalid_request"),
    ("PATCH", f"/v1/admin/models/{MODEL}", {"durations": [5]}, 400, "invalid_model"),
    ("PATCH", f"/v1/admin/models/{MODEL}", {"capabilities": ["time_travel"]}, 400, "invalid_catalog"),
    ("PATCH", f"/v1/admin/models/{MODEL}", {"channel": {"channel_code": "nowhere"}}, 400, "invalid_catalog"),
    ("PATCH", "/v1/admin/models/no-such-model", {"price": "1"}, 404, "model_not_found"),
    ("PATCH", "/v1/admin/models/Bad Code", {"price": "1"}, 422, "invalid_request"),
    (
        "PUT",
        f"/v1/admin/models/{MODEL}",
        {
            "kind": "image",
            "name": {"en": "x"},
            "billing_unit": "per_image",
            "ratios": [],
            "resolutions": ["1024"],
        },
        400,
        "invalid_model",
    ),
    (
        "PUT",
        f"/v1/admin/models/{MODEL}",
        {"code": "other", "kind": "image", "name": {"en": "x"}, "billing_unit": "per_image"},
        422,
        "code_mismatch",
    ),
    ("POST", "/v1/admin/models/no-such-model/disable", None, 404, "model_not_found"),
    ("POST", f"/v1/admin/models/{MODEL}/disable", {"expected_version": 999}, 409, "catalog_version_conflict"),
    ("PUT", "/v1/admin/default-capabilities", {"capabilities": ["time_travel"]}, 400, "invalid_catalog"),
    ("PUT", "/v1/admin/default-capabilities", {}, 422, "invalid_request"),
    (
        "PUT",
        "/v1/admin/templates/health-supplement",
        {"name": {"en": "x"}, "price": "1", "steps": []},
        422,
        "invalid_request",
    ),
    (
        "PUT",
        "/v1/admin/recharge-rules",
        {"currency": "EUR", "credits_per_major_unit": "1", "minimum": {"amount": "30", "currency": "EUR"}},
        422,
        "invalid_request",
    ),
    (
        "PUT",
        "/v1/admin/recharge-rules",
        {
            "currency": "CNY",
            "credits_per_major_unit": "1",
            "minimum": {"amount": "30", "currency": "CNY"},
            "bonus_tiers": [{"amount": {"amount": "300", "currency": "CNY"}, "credits": "100"}],
        },
        400,
        "invalid_recharge_rules",
    ),
    (
        "PUT",
        "/v1/admin/plans/tiny",
        {"name": {"en": "x"}, "price": {"amount": "1.234", "currency": "USD"}, "credits": "1"},
        422,
        "invalid_request",
    ),
    (
        "PUT",
        "/v1/admin/plans/tiny",
        {"name": {"en": "x"}, "price": {"amount": "٩٩", "currency": "CNY"}, "credits": "99"},
        422,
        "invalid_request",
    ),
    (
        "PUT",
        "/v1/admin/channels/leaky",
        {"name": "x", "adapter": "openai", "api_key_ref": "sk-proj-abc123"},
        422,
        "invalid_request",
    ),
    (
        "PUT",
        "/v1/admin/channels/leaky",
        {"name": "x", "adapter": "openai", "base_url": "https://user:sk-secret@api.example.com"},
        422,
        "invalid_request",
    ),
    ("PUT", "/v1/admin/channels/leaky", {"name": "x", "adapter": "telepathy"}, 422, "invalid_request"),
]


async def test_bad_input_is_refused_and_changes_nothing(api: Admin) -> None:
    # One catalog for every case (a fresh one each would cost a database clone per case).
    for method, path, body, status, code in BAD:
        case = f"{method} {path} {body}"
        before = await version(api)
        audit_before = (await api.http.get("/v1/admin/audit", headers=api.headers)).json()["items"]
        reply = await api.http.request(method, path, json=body, headers=api.headers)
        assert reply.status_code == status, f"{case}: {reply.text}"
        assert reply.headers["content-type"].startswith("application/problem+json"), case
        assert reply.json()["code"] == code, f"{case}: {reply.text}"
        assert await version(api) == before, case
        assert (await api.http.get("/v1/admin/audit", headers=api.headers)).json()["items"] == audit_before, (
            case
        )


async def test_concurrent_edits_with_one_expected_version_apply_once(api: Admin) -> None:
    start = await version(api)
    replies = await asyncio.gather(
        *(
            api.http.patch(
                f"/v1/admin/models/{MODEL}",
                json={"price": f"{i}", "expected_version": start},
                headers=api.headers,
            )
            for i in range(1, 6)
        )
    )
    assert sorted(r.status_code for r in replies) == [200, 409, 409, 409, 409]
    assert await version(api) == start + 1
