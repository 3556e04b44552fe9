"""A catalog snapshot that mirrors the product document, for the docs tests.

The configuration is written as plain data in the protobuf JSON mapping of `CatalogSnapshot`, the shape
`GetCatalog` answers with. When the catalog service's seed loader lands, `seed_snapshot()` is the one
place to switch: build the snapshot from the real seed instead of `SEED` and every docs test follows.
"""

from __future__ import annotations

import copy
from typing import Any

from google.protobuf import json_format

from atelier.catalog.v1 import catalog_pb2


def _credits(credits: str) -> dict[str, int]:
    whole, _, frac = credits.partition(".")
    return {"milli": int(whole) * 1000 + int((frac + "000")[:3])}


def _model(
    code: str,
    kind: str,
    en: str,
    zh: str,
    *,
    price: str = "0.5",
    unit: str = "BILLING_UNIT_PER_GENERATION",
    ratios: list[str] | None = None,
    resolutions: list[str] | None = None,
    durations: list[int] | None = None,
    capabilities: list[str] | None = None,
    public: bool = True,
    sort_order: int = 0,
) -> dict[str, Any]:
    model: dict[str, Any] = {
        "code": code,
        "kind": kind,
        "name": {"en": en, "zh": zh},
        "billingUnit": unit,
        "price": _credits(price),
        "ratios": ratios or [],
        "resolutions": resolutions or [],
        "durations": durations or [],
        "enabled": True,
        "public": public,
        "sortOrder": sort_order,
    }
    if capabilities is None:
        model["inheritsDefaultCapabilities"] = True
    else:
        model["capabilities"] = capabilities
    return model


_IMAGE_RATIOS = ["1:1", "4:5", "16:9", "9:16", "3:4", "4:3"]
_IMAGE_SIZES = ["1024", "1536", "2048"]
_VIDEO = "MODEL_KIND_VIDEO"
_IMAGE = "MODEL_KIND_IMAGE"
_TEXT = "MODEL_KIND_TEXT"


def _inputs(*names: str) -> list[dict[str, Any]]:
    types = {
        "productText": "INPUT_TYPE_TEXT",
        "productPhotos": "INPUT_TYPE_IMAGE_UPLOADS",
        "ratio": "INPUT_TYPE_CHOICE",
        "tone": "INPUT_TYPE_CHOICE",
    }
    return [{"name": name, "type": types[name], "required": True} for name in names]


def _steps(*steps: tuple[str, str, str]) -> list[dict[str, Any]]:
    return [{"key": key, "kind": kind, "modelCode": model} for key, kind, model in steps]


SEED: dict[str, Any] = {
    "version": "7",
    "updatedAt": "2026-03-14T08:30:00Z",
    "defaultCapabilities": ["reference_image", "image_edit"],
    "models": [
        _model(
            "google-flow-video",
            _VIDEO,
            "Flow",
            "Flow",
            ratios=["16:9", "9:16"],
            resolutions=["720p", "1080p"],
            durations=[5, 8],
            capabilities=["first_frame", "image_to_video", "reference_image"],
            sort_order=10,
        ),
        _model(
            "grok-video-3",
            _VIDEO,
            "Grok Video 3",
            "Grok Video 3",
            ratios=["16:9", "9:16"],
            resolutions=["720p", "1080p"],
            durations=[5, 10],
            capabilities=["image_to_video", "reference_image"],
            sort_order=20,
        ),
        _model(
            "doubao-seedream-5-0-260128",
            _IMAGE,
            "Doubao Seedream 5.0",
            "豆包 Seedream 5.0",
            ratios=_IMAGE_RATIOS,
            resolutions=_IMAGE_SIZES,
            sort_order=10,
        ),
        _model(
            "gpt-image-1.5-all",
            _IMAGE,
            "GPT Image 1.5 All",
            "GPT Image 1.5 All",
            ratios=_IMAGE_RATIOS,
            resolutions=_IMAGE_SIZES,
            capabilities=["image_edit", "reference_image"],
            sort_order=20,
        ),
        _model(
            "google-flow-imagen",
            _IMAGE,
            "Flow",
            "Flow",
            ratios=["16:9", "4:3", "1:1", "3:4", "9:16"],
            resolutions=["1024"],
            capabilities=["product_image", "reference_image"],
            sort_order=30,
        ),
        _model(
            "grok-4-1-image",
            _IMAGE,
            "Grok 4.1 Image",
            "Grok 4.1 Image",
            ratios=_IMAGE_RATIOS,
            resolutions=_IMAGE_SIZES,
            sort_order=40,
        ),
        _model(
            "grok-imagine-image",
            _IMAGE,
            "Grok Imagine Image",
            "Grok Imagine Image",
            ratios=_IMAGE_RATIOS,
            resolutions=_IMAGE_SIZES,
            sort_order=50,
        ),
        # Internal models: enabled for workflow steps, never shown on the public pages.
        _model("gemini-2.5-pro", _TEXT, "Gemini 2.5 Pro", "Gemini 2.5 Pro", public=False, capabilities=[]),
        _model("google-flow-image", _IMAGE, "Flow Image", "Flow 图片", public=False, ratios=_IMAGE_RATIOS),
        _model("imagen-4-pro", _IMAGE, "Imagen 4 Pro", "Imagen 4 Pro", public=False, ratios=_IMAGE_RATIOS),
        _model("veo_3_1", _VIDEO, "Veo 3.1", "Veo 3.1", public=False, durations=[8], capabilities=[]),
        _model(
            "veo-3.1-fast",
            _VIDEO,
            "Veo 3.1 Fast",
            "Veo 3.1 Fast",
            public=False,
            durations=[8],
            capabilities=[],
        ),
    ],
    "templates": [
        {
            "code": "health-supplement",
            "name": {"en": "保健品宣传视频", "zh": "保健品宣传视频"},
            "price": _credits("1"),
            "inputs": _inputs("productText", "productPhotos", "ratio", "tone"),
            "steps": _steps(
                ("prompt-image", _TEXT, "gemini-2.5-pro"),
                ("image", _IMAGE, "google-flow-image"),
                ("prompt-video", _TEXT, "gemini-2.5-pro"),
                ("video", _VIDEO, "google-flow-video"),
            ),
            "notes": {
                "en": "图片提示词 -> 产品展示图 -> 视频提示词 -> 宣传视频",
                "zh": "图片提示词 -> 产品展示图 -> 视频提示词 -> 宣传视频",
            },
            "refundPolicy": "REFUND_POLICY_FULL",
            "enabled": True,
            "public": True,
            "sortOrder": 10,
        },
        {
            "code": "creator-video",
            "name": {"en": "达人视频制作", "zh": "达人视频制作"},
            "price": _credits("20"),
            "inputs": _inputs("productText", "productPhotos", "ratio", "tone"),
            "steps": _steps(
                ("prompt-image", _TEXT, "gemini-2.5-pro"),
                ("image", _IMAGE, "imagen-4-pro"),
                ("prompt-video", _TEXT, "gemini-2.5-pro"),
                ("video", _VIDEO, "veo_3_1"),
            ),
            "notes": {
                "en": "图片提示词 -> 人物图片 -> 视频提示词 -> 视频",
                "zh": "图片提示词 -> 人物图片 -> 视频提示词 -> 视频",
            },
            "refundPolicy": "REFUND_POLICY_FULL",
            "enabled": True,
            "public": True,
            "sortOrder": 20,
        },
        {
            "code": "ecom-video-pro",
            "name": {"en": "文案生成视频", "zh": "文案生成视频"},
            "price": _credits("12"),
            "inputs": _inputs("productText", "ratio"),
            "steps": _steps(("image", _IMAGE, "imagen-4-pro"), ("video", _VIDEO, "veo-3.1-fast")),
            "notes": {"en": "文案 -> 图片 -> 视频", "zh": "文案 -> 图片 -> 视频"},
            "refundPolicy": "REFUND_POLICY_FULL",
            "enabled": True,
            "public": True,
            "sortOrder": 30,
        },
    ],
    "rechargeRules": {
        "currency": "CNY",
        "creditsPerMajorUnit": _credits("1"),
        "minimum": {"minor": 3000, "currency": "CNY"},
        "bonusTiers": [
            {"amount": {"minor": 30000, "currency": "CNY"}, "credits": _credits("330")},
            {"amount": {"minor": 100000, "currency": "CNY"}, "credits": _credits("1150")},
        ],
        "creditsExpire": False,
    },
    "plans": [
        {
            "code": "starter",
            "name": {"en": "Starter", "zh": "入门版"},
            "price": {"minor": 2900, "currency": "USD"},
            "credits": _credits("29"),
            "enabled": True,
            "sortOrder": 10,
        },
        {
            "code": "growth",
            "name": {"en": "Growth", "zh": "成长版"},
            "price": {"minor": 9900, "currency": "USD"},
            "credits": _credits("99"),
            "enabled": True,
            "sortOrder": 20,
        },
    ],
    "paymentMethods": [
        {
            "code": "card",
            "name": {"en": "Visa / MasterCard", "zh": "Visa / MasterCard"},
            "provider": "stripe",
            "currencies": ["USD", "CNY"],
            "enabled": True,
            "sortOrder": 10,
        },
        {
            "code": "alipay",
            "name": {"en": "支付宝", "zh": "支付宝"},
            "provider": "alipay",
            "currencies": ["CNY"],
            "enabled": True,
            "sortOrder": 20,
        },
        {
            "code": "wechatpay",
            "name": {"en": "微信支付", "zh": "微信支付"},
            "provider": "wechatpay",
            "currencies": ["CNY"],
            "enabled": True,
            "sortOrder": 30,
        },
    ],
}


def seed_snapshot() -> catalog_pb2.CatalogSnapshot:
    """A fresh snapshot of the seed configuration (callers may mutate it)."""
    snapshot = catalog_pb2.CatalogSnapshot()
    json_format.ParseDict(copy.deepcopy(SEED), snapshot)
    return snapshot


def model(snapshot: catalog_pb2.CatalogSnapshot, code: str) -> catalog_pb2.Model:
    return next(m for m in snapshot.models if m.code == code)
