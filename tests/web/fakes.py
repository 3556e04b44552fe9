"""An in-browser fake of the API routes that live on other branches, with the JSON shapes those branches
define (gateway/routes/catalog.py, auth.py, payments.py; DESIGN.md §8 for the rest). Each request is
recorded so tests can assert what the console sent."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from playwright.async_api import BrowserContext, Route

USER = {
    "id": "u_1",
    "email": "ada@example.com",
    "role": "user",
    "status": "active",
    "locale": "en",
    "created_at": "2026-03-14T08:00:00Z",
    "email_verified_at": "2026-03-14T08:01:00Z",
}


def model(code: str, kind: str, name: str, **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "code": code,
        "kind": kind,
        "name": name,
        "description": "",
        "billing": {"unit": "per_generation", "price": "0.5"},
        "ratios": [],
        "resolutions": [],
        "durations": [],
        "capabilities": [],
        "inherits_default_capabilities": False,
        "max_images": 1,
        "max_input_images": 0,
        "max_output_tokens": 0,
    }
    base.update(extra)
    return base


IMAGE_MODELS = [
    model(
        "gpt-image-1.5-all",
        "image",
        "GPT Image 1.5 All",
        ratios=["1:1", "4:5", "16:9", "9:16", "3:4", "4:3"],
        resolutions=["1024", "1536", "2048"],
        capabilities=[
            {"code": "image_edit", "name": "image edit"},
            {"code": "reference_image", "name": "reference image"},
        ],
        max_images=4,
    ),
    model(
        "google-flow-imagen",
        "image",
        "Flow",
        ratios=["16:9", "4:3", "1:1", "3:4", "9:16"],
        resolutions=["1024"],
        capabilities=[{"code": "product_image", "name": "product image"}],
    ),
]
VIDEO_MODELS = [
    model(
        "grok-video-3",
        "video",
        "Grok Video 3",
        ratios=["16:9", "9:16"],
        resolutions=["720p", "1080p"],
        durations=[5, 10],
        capabilities=[{"code": "image_to_video", "name": "image to video"}],
    )
]
RECHARGE_OPTIONS = {
    "catalog_version": 1,
    "rules": {
        "currency": "CNY",
        "credits_per_unit": "1",
        "minimum": {"amount": "30.00", "currency": "CNY"},
        "bonus_tiers": [
            {"amount": {"amount": "300.00", "currency": "CNY"}, "credits": "330"},
            {"amount": {"amount": "1000.00", "currency": "CNY"}, "credits": "1150"},
        ],
        "credits_expire": False,
    },
    "plans": [
        {
            "code": "starter",
            "name": "Starter",
            "price": {"amount": "29.00", "currency": "USD"},
            "credits": "29",
        },
        {
            "code": "growth",
            "name": "Growth",
            "price": {"amount": "99.00", "currency": "USD"},
            "credits": "99",
        },
    ],
    "payment_methods": [
        {"code": "card", "name": "Visa / MasterCard", "currencies": ["USD", "CNY"]},
        {"code": "alipay", "name": "支付宝", "currencies": ["CNY"]},
        {"code": "wechatpay", "name": "微信支付", "currencies": ["CNY"]},
    ],
}
TEMPLATE: dict[str, Any] = {
    "code": "health-supplement",
    "name": "保健品宣传视频",
    "description": "",
    "price": "1",
    "inputs": [
        {
            "name": "productText",
            "type": "text",
            "required": True,
            "allowed_values": [],
            "label": "Product text",
            "min_items": 0,
            "max_items": 0,
            "max_length": 2000,
        },
        {
            "name": "productPhotos",
            "type": "image_uploads",
            "required": True,
            "allowed_values": [],
            "label": "Product photos",
            "min_items": 1,
            "max_items": 4,
            "max_length": 0,
        },
        {
            "name": "ratio",
            "type": "choice",
            "required": True,
            "allowed_values": ["9:16", "16:9"],
            "label": "Ratio",
            "min_items": 0,
            "max_items": 0,
            "max_length": 0,
        },
        {
            "name": "tone",
            "type": "choice",
            "required": True,
            "allowed_values": ["warm", "energetic"],
            "label": "Tone",
            "min_items": 0,
            "max_items": 0,
            "max_length": 0,
        },
    ],
    "required_inputs": ["productText", "productPhotos", "ratio", "tone"],
    "steps": [
        {"key": "prompt-image", "kind": "text", "model": "gemini-2.5-pro", "label": "Image prompt"},
        {"key": "image", "kind": "image", "model": "google-flow-image", "label": "Product image"},
        {"key": "prompt-video", "kind": "text", "model": "gemini-2.5-pro", "label": "Video prompt"},
        {"key": "video", "kind": "video", "model": "google-flow-video", "label": "Promo video"},
    ],
    "notes": "图片提示词 -> 产品展示图 -> 视频提示词 -> 宣传视频",
    "refund_policy": "full",
}
PNG_1X1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201e2a8d7a60000000049454e44ae426082"
)


@dataclass
class FakeApi:
    models: dict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: {"image": list(IMAGE_MODELS), "video": list(VIDEO_MODELS), "text": []}
    )
    balance: dict[str, Any] = field(
        default_factory=lambda: {"available": "100", "held": "0", "posted": "100", "version": 1}
    )
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    usage: dict[str, dict[str, Any]] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list)
    recharge_step: dict[str, Any] = field(default_factory=lambda: {"type": "none"})
    recharge_provider: str = "sandbox"
    requests: list[tuple[str, str, Any, dict[str, str]]] = field(default_factory=list)
    # When set, these paths go to the served app's streaming test endpoints instead of a canned body.
    stream_events_to: str | None = None
    stream_copy_to: str | None = None
    conversations: list[dict[str, Any]] = field(default_factory=list)
    admin_models: list[dict[str, Any]] = field(default_factory=list)
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    uploads: int = 0
    expired_tokens: set[str] = field(default_factory=set)

    def sent(self, method: str, path: str) -> list[Any]:
        return [body for m, p, body, _ in self.requests if m == method and p == path]

    async def install(self, context: BrowserContext) -> None:
        await context.route(re.compile(r".*/(v1/(?!docs)|sandbox/).*"), self._handle)

    async def _handle(self, route: Route) -> None:
        request = route.request
        path = "/" + request.url.split("/", 3)[3].split("?")[0]
        query = dict(part.split("=", 1) for part in request.url.partition("?")[2].split("&") if "=" in part)
        body: Any = None
        if request.post_data and "json" in (request.headers.get("content-type") or ""):
            body = json.loads(request.post_data)
        self.requests.append((request.method, path, body, dict(request.headers)))
        if path == "/v1/events" and self.stream_events_to:
            await route.continue_(url=self.stream_events_to)
            return
        if path.endswith("/messages") and self.stream_copy_to:
            await route.continue_(url=self.stream_copy_to)
            return
        if path.startswith("/v1/files/"):
            await route.fulfill(status=200, content_type="image/png", body=PNG_1X1)
            return
        token = (request.headers.get("authorization") or "").removeprefix("Bearer ")
        if token in self.expired_tokens and not path.startswith("/v1/auth/"):
            await route.fulfill(
                status=401,
                content_type="application/problem+json",
                body=json.dumps({"status": 401, "code": "token_expired", "detail": "expired"}),
            )
            return
        answer = self.answer(request.method, path, query, body)
        if answer is None:
            await route.fulfill(
                status=404,
                content_type="application/problem+json",
                body=json.dumps({"status": 404, "code": "not_found", "detail": f"no route {path}"}),
            )
            return
        status, payload = answer
        if path == "/v1/events":
            stream = "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in payload)
            await route.fulfill(status=200, content_type="text/event-stream", body=stream)
            return
        content_type = "application/problem+json" if status >= 400 else "application/json"
        await route.fulfill(status=status, content_type=content_type, body=json.dumps(payload))

    def answer(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any] | None:
        if path == "/v1/me":
            return 200, {**USER, "auth_method": "session", "scopes": ["read", "write"]}
        if path == "/v1/models":
            kind = query.get("kind", "")
            models = (
                self.models.get(kind, []) if kind else [m for group in self.models.values() for m in group]
            )
            return 200, {"catalog_version": 1, "admin_must_enable_models": not models, "models": models}
        if path == "/v1/pricing":
            groups = [{"kind": k, "models": v} for k, v in self.models.items() if v]
            return 200, {
                "catalog_version": 1,
                "admin_must_enable_models": not groups,
                "groups": groups,
                "templates": [],
                "default_capabilities": [],
            }
        if path == "/v1/quotes":
            return 200, self._quote(body)
        if path == "/v1/billing/balance":
            return 200, self.balance
        if path == "/v1/events":
            events, self.events = self.events, []
            return 200, events
        if path == "/v1/recharge-options":
            return 200, RECHARGE_OPTIONS
        if path == "/v1/recharge-quotes":
            amount = body.get("amount") or "29"
            bonus = {"300": "30", "1000": "150"}.get(amount, "0")
            total = str(int(float(amount)) + int(bonus))
            return 200, {"paid_credits": amount, "bonus_credits": bonus, "total_credits": total}
        if path == "/v1/billing/recharges" and method == "POST":
            return 201, self._order(body, "pending")
        if path.startswith("/v1/billing/recharges/"):
            return 200, self._order({"method": "sandbox", "amount": "30"}, "pending", path.rsplit("/", 1)[1])
        if path.startswith("/sandbox/pay/"):
            return 200, {"order_id": path.rsplit("/", 1)[1], "callback_status": 200}
        if path == "/v1/billing/records":
            wanted = query.get("type")
            rows = [r for r in self.records if not wanted or r["type"] == wanted]
            return 200, {"items": rows, "next_cursor": None}
        if path == "/v1/usage":
            return 200, self.usage.get(query.get("group_by", "day"), {"buckets": [], "total": "0"})
        if path == "/v1/tasks" and method == "POST":
            task = self.new_task(body)
            self.tasks[task["id"]] = task
            return 201, {"task": task, "created": True}
        if path == "/v1/tasks":
            return 200, {"items": list(self.tasks.values())[::-1], "next_cursor": None}
        if path.startswith("/v1/tasks/"):
            found_task = self.tasks.get(path.rsplit("/", 1)[1])
            return (200, {"task": found_task}) if found_task else None
        if path == "/v1/copy/conversations" and method == "POST":
            number = len(self.conversations) + 1
            conversation = {"id": f"c_{number}", "title": "", "model_code": body["model"]}
            self.conversations.append(conversation)
            return 201, {"conversation": conversation}
        if path == "/v1/copy/conversations":
            return 200, {"items": self.conversations, "next_cursor": None}
        if path == "/v1/auth/login":
            if body["password"] != "right password":
                return 401, {
                    "status": 401,
                    "code": "invalid_credentials",
                    "detail": "wrong email or password",
                }
            return 200, {
                "access_token": "fake-access-token",
                "token_type": "Bearer",
                "expires_in": 900,
                "refresh_token": "fake-refresh-token",
                "refresh_expires_at": None,
                "session_id": "s_1",
                "user": {**USER, "email": body["email"]},
            }
        if path == "/v1/auth/refresh":
            return 200, {
                "access_token": f"fresh-{body['refresh_token']}",
                "token_type": "Bearer",
                "expires_in": 900,
                "refresh_token": "rotated-refresh-token",
                "refresh_expires_at": None,
                "session_id": "s_1",
                "user": USER,
            }
        if path == "/v1/api-keys":
            return 200, {"items": [], "next_cursor": None}
        if path == "/v1/uploads":
            self.uploads += 1
            upload_id = f"up_{self.uploads}"
            return 201, {"id": upload_id, "url": f"/v1/files/{upload_id}.png", "mime_type": "image/png"}
        if path == "/v1/workflow-templates":
            return 200, {"catalog_version": 1, "templates": [TEMPLATE]}
        if path == "/v1/workflow-runs" and method == "POST":
            run = {
                "id": f"r_{len(self.runs) + 1}",
                "template_code": body["template_code"],
                "status": "RUN_STATUS_RUNNING",
                "inputs": body["inputs"],
                "price": "1",
                "refund_amount": "0",
                "steps": [
                    {
                        "key": step["key"],
                        "index": i,
                        "kind": step["kind"],
                        "model_code": step["model"],
                        "status": "STEP_STATUS_PENDING",
                        "outputs": [],
                    }
                    for i, step in enumerate(TEMPLATE["steps"])
                ],
                "created_at": "2026-03-14T08:00:00Z",
            }
            self.runs[run["id"]] = run
            return 201, {"run": run, "created": True}
        if path == "/v1/workflow-runs":
            return 200, {"items": list(self.runs.values())[::-1], "next_cursor": None}
        if path.startswith("/v1/workflow-runs/"):
            found = self.runs.get(path.rsplit("/", 1)[1])
            return (200, {"run": found}) if found else None
        if path == "/v1/admin/models" and method == "GET":
            return 200, {"items": self.admin_models}
        if path.startswith("/v1/admin/models/") and method in ("PATCH", "PUT"):
            code = path.rsplit("/", 1)[1]
            for item in self.admin_models:
                if item["code"] == code:
                    item.update(body)
            return 200, {"model": body}
        if path == "/v1/admin/users":
            return 200, {"items": [{**USER, "balance": {"available": "100"}}], "next_cursor": None}
        if path.startswith("/v1/admin/users/") and path.endswith("/credit-adjustments"):
            return 201, {"id": "adj_1", "amount": body["amount"]}
        if path == "/v1/admin/audit":
            return 200, {
                "items": [
                    {
                        "created_at": "2026-03-14T08:00:00Z",
                        "actor_email": "root@atelier.local",
                        "action": "model.enabled",
                        "target": "grok-video-3",
                        "catalog_version": 7,
                    }
                ]
            }
        return None

    def _quote(self, body: dict[str, Any]) -> dict[str, Any]:
        known = {m["code"]: m for models in self.models.values() for m in models}
        found = known.get(body["model"])
        assert found is not None, body
        n = body.get("n") or 1
        total = f"{0.5 * n:g}"
        return {
            "model": body["model"],
            "kind": found["kind"],
            "unit": "per_generation",
            "quantity": 1,
            "total": total,
            "unit_price": "0.5",
            "ratio": body.get("ratio"),
            "resolution": body.get("resolution"),
            "n": n,
            "catalog_version": 1,
            "quoted_at": "2026-03-14T08:00:00Z",
        }

    def _order(self, body: dict[str, Any], status: str, order_id: str = "ro_1") -> dict[str, Any]:
        return {
            "id": order_id,
            "status": status,
            "method": body.get("method"),
            "provider": self.recharge_provider,
            "amount": {"amount": body.get("amount") or "29.00", "currency": "CNY"},
            "plan": body.get("plan"),
            "paid_credits": "30",
            "bonus_credits": "0",
            "total_credits": "30",
            "next_step": self.recharge_step,
            "provider_transaction_id": None,
            "failure_reason": None,
            "created_at": "2026-03-14T08:00:00Z",
            "expires_at": None,
            "completed_at": None,
        }

    def new_task(self, body: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": f"t_{len(self.tasks) + 1}",
            "kind": body["kind"],
            "model_code": body["model"],
            "status": "queued",
            "progress": 0,
            "prompt": body["prompt"],
            "ratio": body.get("ratio", ""),
            "resolution": body.get("resolution", ""),
            "n": body.get("n", 1),
            "price": "0.5",
            "outputs": [],
            "created_at": "2026-03-14T08:00:00Z",
        }

    def finish(self, task_id: str, url: str) -> None:
        task = self.tasks[task_id]
        task.update(
            status="succeeded",
            progress=100,
            outputs=[
                {"id": "o_1", "index": 0, "mime_type": "image/png", "url": url, "width": 1, "height": 1}
            ],
        )


async def sign_in(context: BrowserContext, user: dict[str, Any] | None = None) -> None:
    """A stored session, as the console keeps it after POST /v1/auth/login."""
    session = {
        "access_token": "fake-access-token",
        "expires_at": 4_102_444_800_000,  # 2100: never refreshed during a test
        "refresh_token": "fake-refresh-token",
        "user": user or USER,
    }
    await context.add_init_script(
        f"localStorage.setItem('atelier.session', {json.dumps(json.dumps(session))});"
    )
