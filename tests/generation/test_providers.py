"""Each adapter against its fake upstream over real HTTP, and the error classification."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from PIL import Image

from services.generation.providers.ark import ArkAdapter
from services.generation.providers.base import (
    ChatMessage,
    InputImage,
    ProviderError,
    ProviderJob,
    parse_retry_after,
)
from services.generation.providers.gemini import GeminiAdapter
from services.generation.providers.http import HttpAdapter
from services.generation.providers.local import LocalProvider, image_size, video_size
from services.generation.providers.openai import OpenAIAdapter
from services.generation.providers.xai import XaiAdapter
from tests.generation.upstream import KEY, FakeUpstream, Scripted, rate_limited


def image_job(**kwargs: object) -> ProviderJob:
    fields: dict[str, object] = {
        "kind": "image",
        "model": "m",
        "prompt": "a cat",
        "ratio": "16:9",
        "resolution": "1K",
        "n": 1,
    }
    fields.update(kwargs)
    return ProviderJob(**fields)  # type: ignore[arg-type]


def video_job(**kwargs: object) -> ProviderJob:
    fields: dict[str, object] = {
        "kind": "video",
        "model": "v",
        "prompt": "waves",
        "ratio": "16:9",
        "resolution": "720p",
        "duration_seconds": 5,
    }
    fields.update(kwargs)
    return ProviderJob(**fields)  # type: ignore[arg-type]


@pytest.fixture
async def adapters(upstream: FakeUpstream) -> AsyncIterator[dict[str, HttpAdapter]]:
    made: dict[str, HttpAdapter] = {
        "openai": OpenAIAdapter(base_url=f"{upstream.url}/openai", api_key=KEY, timeout=5),
        "ark": ArkAdapter(base_url=f"{upstream.url}/ark", api_key=KEY, timeout=5),
        "xai": XaiAdapter(base_url=f"{upstream.url}/xai", api_key=KEY, timeout=5),
        "gemini": GeminiAdapter(base_url=f"{upstream.url}/gemini", api_key=KEY, timeout=5),
    }
    yield made
    for adapter in made.values():
        await adapter.aclose()


def png_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        return image.size


# -- OpenAI ------------------------------------------------------------------------------------------


async def test_openai_generates_and_edits(upstream: FakeUpstream, adapters: dict[str, OpenAIAdapter]) -> None:
    adapter = adapters["openai"]
    done = await adapter.submit(image_job(n=2))
    assert len(done.artifacts) == 2
    assert done.artifacts[0].revised_prompt == "a cat!"
    assert png_size(done.artifacts[0].data or b"") == (64, 64)
    body = upstream.bodies["openai.generate"][0]
    assert body == {"model": "m", "prompt": "a cat", "n": 2, "size": "1536x1024", "output_format": "png"}
    edit = await adapter.submit(image_job(inputs=(InputImage(upstream.png, "image/png", "edit"),)))
    assert len(edit.artifacts) == 1
    assert upstream.bodies["openai.edit"][0]["images"][0]["image_url"].startswith("data:image/png;base64,")


@pytest.mark.parametrize(
    ("hint", "expected"),
    [
        ("retry-after-ms", 0.15),
        ("retry-after", 1.0),
        ("retry-after-date", 2.0),
        ("retry-info", 1.0),
        ("none", None),
    ],
)
async def test_429_is_retryable_with_each_retry_hint(
    upstream: FakeUpstream, adapters: dict[str, OpenAIAdapter], hint: str, expected: float | None
) -> None:
    upstream.script("openai.generate", rate_limited(hint))
    with pytest.raises(ProviderError) as caught:
        await adapters["openai"].submit(image_job())
    assert caught.value.retryable
    assert caught.value.code == "upstream_rate_limited"
    if expected is None:
        assert caught.value.retry_after is None
    else:
        assert caught.value.retry_after == pytest.approx(
            expected, abs=1.01 if hint == "retry-after-date" else 0.01
        )


async def test_5xx_and_408_are_retryable_400_is_permanent_and_filters_are_named(
    upstream: FakeUpstream, adapters: dict[str, OpenAIAdapter]
) -> None:
    upstream.script(
        "openai.generate",
        Scripted(500, {"error": {"message": "The server had an error", "type": "server_error"}}),
        Scripted(408, {"error": {"message": "timeout"}}),
        Scripted(
            400,
            {
                "error": {
                    "message": "Invalid size",
                    "type": "invalid_request_error",
                    "param": "size",
                    "code": None,
                }
            },
        ),
        Scripted(
            400,
            {
                "error": {
                    "message": "Your request was rejected by our safety system",
                    "type": "image_generation_user_error",
                    "code": "moderation_blocked",
                }
            },
        ),
        Scripted(400, {"error": {"message": "bad"}}, {"x-should-retry": "true"}),
    )
    outcomes = []
    for _ in range(5):
        with pytest.raises(ProviderError) as caught:
            await adapters["openai"].submit(image_job())
        outcomes.append((caught.value.retryable, caught.value.code))
    assert outcomes == [
        (True, "upstream_error"),
        (True, "upstream_error"),
        (False, "upstream_rejected"),
        (False, "content_filtered"),
        (True, "upstream_error"),
    ]


async def test_timeouts_and_unreachable_upstreams_are_retryable() -> None:
    adapter = OpenAIAdapter(base_url="http://127.0.0.1:9", api_key=KEY, timeout=1)
    with pytest.raises(ProviderError) as caught:
        await adapter.submit(image_job())
    assert caught.value.retryable
    await adapter.aclose()


def test_retry_after_parsing() -> None:
    now = time.time()
    assert parse_retry_after({"Retry-After-Ms": "2500", "Retry-After": "9"}) == 2.5
    assert parse_retry_after({"retry-after": "7"}) == 7.0
    assert (
        parse_retry_after(
            {},
            {
                "error": {
                    "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "37s"}]
                }
            },
        )
        == 37.0
    )
    from email.utils import formatdate

    assert parse_retry_after({"retry-after": formatdate(now + 30, usegmt=True)}, now=now) == pytest.approx(
        30, abs=1
    )
    assert parse_retry_after({"retry-after": "soon"}) is None


# -- Ark -----------------------------------------------------------------------------------------------


async def test_ark_images_report_partial_failures(
    upstream: FakeUpstream, adapters: dict[str, ArkAdapter]
) -> None:
    upstream.next_outcome = "partial"
    done = await adapters["ark"].submit(image_job(n=3, resolution="2K"))
    assert len(done.artifacts) == 2
    assert [f.code for f in done.failures] == ["content_filtered"]
    body = upstream.bodies["ark.images"][0]
    assert body["sequential_image_generation"] == "auto"
    assert body["sequential_image_generation_options"] == {"max_images": 3}
    assert body["watermark"] is False
    assert "n" not in body


async def test_ark_sensitive_input_is_permanent(
    upstream: FakeUpstream, adapters: dict[str, ArkAdapter]
) -> None:
    upstream.script(
        "ark.images",
        Scripted(
            400,
            {
                "error": {
                    "code": "InputTextSensitiveContentDetected",
                    "message": "The request failed because the input text may contain sensitive information.",
                    "param": "",
                    "type": "BadRequest",
                }
            },
        ),
    )
    with pytest.raises(ProviderError) as caught:
        await adapters["ark"].submit(image_job())
    assert (caught.value.retryable, caught.value.code) == (False, "content_filtered")
    upstream.script("ark.images", rate_limited("ark"))
    with pytest.raises(ProviderError) as caught:
        await adapters["ark"].submit(image_job())
    assert caught.value.retryable
    assert caught.value.retry_after is None


async def test_ark_video_task_is_polled_until_done(
    upstream: FakeUpstream, adapters: dict[str, ArkAdapter]
) -> None:
    adapter = adapters["ark"]
    job = video_job(inputs=(InputImage(upstream.png, "image/png", "first_frame"),))
    submitted = await adapter.submit(job)
    assert submitted.operation_id
    assert submitted.operation_id.startswith("cgt-")
    body = upstream.bodies["ark.video.submit"][0]
    assert body["content"][0] == {"type": "text", "text": "waves --ratio 16:9 --resolution 720p --duration 5"}
    assert body["content"][1]["role"] == "first_frame"
    first = await adapter.poll(job, submitted.operation_id)
    assert not first.done
    await asyncio.sleep(0.35)
    final = await adapter.poll(job, submitted.operation_id)
    assert final.done
    assert final.artifacts[0].url
    assert final.artifacts[0].url.endswith(".mp4")
    upstream.next_outcome = "failed"
    failing = await adapter.submit(job)
    await asyncio.sleep(0.35)
    failed = await adapter.poll(job, failing.operation_id or "")
    assert failed.done
    assert failed.error is not None
    assert failed.error.code == "content_filtered"
    assert await adapter.cancel(failing.operation_id or "")


# -- xAI -----------------------------------------------------------------------------------------------


async def test_xai_images_and_video(upstream: FakeUpstream, adapters: dict[str, XaiAdapter]) -> None:
    adapter = adapters["xai"]
    images = await adapter.submit(image_job(n=2, ratio="4:3", resolution="2K"))
    assert len(images.artifacts) == 2
    assert upstream.bodies["xai.images"][0] | {} == {
        "model": "m",
        "prompt": "a cat",
        "n": 2,
        "response_format": "b64_json",
        "aspect_ratio": "4:3",
        "resolution": "2k",
    }
    job = video_job()
    submitted = await adapter.submit(job)
    pending = await adapter.poll(job, submitted.operation_id or "")
    assert (pending.done, pending.progress) == (False, 40)
    await asyncio.sleep(0.35)
    done = await adapter.poll(job, submitted.operation_id or "")
    assert done.done
    assert done.artifacts
    upstream.next_outcome = "failed"
    bad = await adapter.submit(job)
    await asyncio.sleep(0.35)
    failed = await adapter.poll(job, bad.operation_id or "")  # HTTP 200 with status failed
    assert failed.error is not None
    assert failed.error.code == "content_filtered"


async def test_xai_error_shape_with_top_level_code(
    upstream: FakeUpstream, adapters: dict[str, XaiAdapter]
) -> None:
    upstream.script(
        "xai.images", Scripted(400, {"code": "invalid_argument", "error": "n must be at most 10"})
    )
    with pytest.raises(ProviderError) as caught:
        await adapters["xai"].submit(image_job())
    assert caught.value.message == "n must be at most 10"
    assert not caught.value.retryable


# -- Gemini --------------------------------------------------------------------------------------------


async def test_gemini_text_and_streaming(upstream: FakeUpstream, adapters: dict[str, GeminiAdapter]) -> None:
    adapter = adapters["gemini"]
    job = ProviderJob(
        kind="text",
        model="gemini-2.5-pro",
        system_instruction="be brief",
        max_output_tokens=100,
        messages=(
            ChatMessage("user", "hi"),
            ChatMessage("assistant", "hello"),
            ChatMessage("user", "a slogan"),
        ),
    )
    done = await adapter.submit(job)
    assert done.artifacts[0].text == "Fresh copy for a slogan"
    assert done.usage is not None
    assert (done.usage.input_tokens, done.usage.output_tokens) == (12, 7)
    body = upstream.bodies["gemini.generate"][0]
    assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
    assert body["systemInstruction"] == {"parts": [{"text": "be brief"}]}
    chunks = [c async for c in adapter.stream_text(job)]
    assert "".join(c.text for c in chunks) == "Bright mornings start here."
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.output_tokens == 4


async def test_gemini_429_carries_retry_info(
    upstream: FakeUpstream, adapters: dict[str, GeminiAdapter]
) -> None:
    upstream.script("gemini.generate", rate_limited("retry-info"))
    with pytest.raises(ProviderError) as caught:
        await adapters["gemini"].submit(ProviderJob(kind="text", model="g", prompt="x"))
    assert caught.value.retryable
    assert caught.value.retry_after == 1.0


async def test_imagen_predictions_with_a_filtered_one(
    upstream: FakeUpstream, adapters: dict[str, GeminiAdapter]
) -> None:
    upstream.next_outcome = "partial"
    done = await adapters["gemini"].submit(image_job(n=2))
    assert len(done.artifacts) == 1
    assert [f.code for f in done.failures] == ["content_filtered"]
    assert upstream.bodies["gemini.predict"][0]["parameters"] == {
        "sampleCount": 2,
        "aspectRatio": "16:9",
        "sampleImageSize": "1K",
    }


async def test_veo_long_running_operation(upstream: FakeUpstream, adapters: dict[str, GeminiAdapter]) -> None:
    adapter = adapters["gemini"]
    job = video_job(duration_seconds=8)
    submitted = await adapter.submit(job)
    assert submitted.operation_id
    assert submitted.operation_id.startswith("operations/")
    assert not (await adapter.poll(job, submitted.operation_id)).done
    await asyncio.sleep(0.35)
    done = await adapter.poll(job, submitted.operation_id)
    artifact = done.artifacts[0]
    assert artifact.download_headers == {"x-goog-api-key": KEY}
    async with httpx.AsyncClient() as client:
        video = await client.get(artifact.url or "", headers=dict(artifact.download_headers))
    assert video.content[4:8] == b"ftyp"
    upstream.next_outcome = "filtered"
    bad = await adapter.submit(job)
    await asyncio.sleep(0.35)
    filtered = await adapter.poll(job, bad.operation_id or "")
    assert filtered.error is not None
    assert filtered.error.code == "content_filtered"


async def test_a_wrong_key_is_a_permanent_error(upstream: FakeUpstream) -> None:
    adapter = OpenAIAdapter(base_url=f"{upstream.url}/openai", api_key="wrong", timeout=5)
    with pytest.raises(ProviderError) as caught:
        await adapter.submit(image_job())
    assert (caught.value.status, caught.value.retryable) == (401, False)
    await adapter.aclose()


# -- local ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ratio", "resolution", "size"),
    [
        ("1:1", "1K", (1024, 1024)),
        ("16:9", "2K", (2048, 1152)),
        ("9:16", "1024", (576, 1024)),
        ("4:3", "1K", (1024, 768)),
    ],
)
def test_local_image_sizes(ratio: str, resolution: str, size: tuple[int, int]) -> None:
    assert image_size(ratio, resolution) == size


def test_local_video_sizes() -> None:
    assert video_size("16:9", "720p") == (1280, 720)
    assert video_size("9:16", "1080p") == (1080, 1920)
    assert video_size("1:1", "480p") == (480, 480)


async def test_local_failure_fraction_fails_that_share_of_jobs() -> None:
    provider = LocalProvider(failure_fraction=0.3)
    failed = 0
    for i in range(200):
        try:
            await provider.submit(ProviderJob(kind="text", model="t", prompt="p", task_id=f"t{i}"))
        except ProviderError:
            failed += 1
    assert 35 <= failed <= 85
