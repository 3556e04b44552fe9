"""The embedded default provider: real files, no network.

Images are PNGs of the asked ratio and resolution (Pillow), videos MP4s of the asked duration and
ratio (the ffmpeg shipped by `imageio-ffmpeg`, a low frame rate to stay fast), text is a short copy
draft. The prompt is hashed into the colours so different prompts give different files. A delay and
a failure fraction make it behave like a real upstream when trying the product offline.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import re
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import imageio_ffmpeg
from PIL import Image, ImageDraw

from services.generation.providers.base import (
    Adapter,
    Artifact,
    ProviderError,
    ProviderJob,
    Submitted,
    TextChunk,
    Usage,
)

IMAGE_EDGES = {"1k": 1024, "2k": 2048, "4k": 4096}
VIDEO_FPS = 4
MAX_IMAGE_EDGE = 4096


def parse_ratio(ratio: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", ratio or "1:1")
    if not match or int(match.group(1)) == 0 or int(match.group(2)) == 0:
        raise ProviderError(f"unsupported ratio {ratio!r}", code="unsupported_spec")
    return int(match.group(1)), int(match.group(2))


def _even(value: float) -> int:
    return max(2, round(value / 2.0) * 2)


def image_size(ratio: str, resolution: str) -> tuple[int, int]:
    """Width and height: `resolution` is the long edge ("1K", "2048") or explicit "WxH"."""
    text = (resolution or "1k").strip().lower()
    if match := re.fullmatch(r"(\d+)x(\d+)", text):
        return int(match.group(1)), int(match.group(2))
    if text in IMAGE_EDGES:
        edge = IMAGE_EDGES[text]
    elif text.rstrip("p").isdigit():
        edge = int(text.rstrip("p"))
    else:
        raise ProviderError(f"unsupported resolution {resolution!r}", code="unsupported_spec")
    edge = min(edge, MAX_IMAGE_EDGE)
    a, b = parse_ratio(ratio)
    if a >= b:
        return edge, _even(edge * b / a)
    return _even(edge * a / b), edge


def video_size(ratio: str, resolution: str) -> tuple[int, int]:
    """Width and height: `resolution` is the short edge ("720p")."""
    text = (resolution or "720p").strip().lower().rstrip("p")
    if not text.isdigit():
        raise ProviderError(f"unsupported resolution {resolution!r}", code="unsupported_spec")
    short = min(int(text), 2160)
    a, b = parse_ratio(ratio)
    if a >= b:
        return _even(short * a / b), _even(short)
    return _even(short), _even(short * b / a)


def _colours(prompt: str, index: int) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    digest = hashlib.sha256(f"{index}:{prompt}".encode()).digest()
    return (digest[0], digest[1], digest[2]), (digest[3], digest[4], digest[5])


def render_png(prompt: str, width: int, height: int, index: int = 0) -> bytes:
    start, end = _colours(prompt, index)
    # A diagonal-ish two-colour gradient: cheap to draw, compresses well, visibly prompt-dependent.
    gradient = Image.linear_gradient("L").resize((width, height))
    image = Image.composite(
        Image.new("RGB", (width, height), end), Image.new("RGB", (width, height), start), gradient
    )
    draw = ImageDraw.Draw(image)
    inset = min(width, height) // 8
    draw.rectangle((inset, inset, width - inset, height - inset), outline=end, width=max(2, inset // 8))
    draw.text((inset + 8, inset + 8), prompt[:60], fill=(255, 255, 255))
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False, compress_level=1)
    return out.getvalue()


async def render_mp4(prompt: str, width: int, height: int, seconds: int) -> bytes:
    start, end = _colours(prompt, 0)
    colour = "0x{:02x}{:02x}{:02x}".format(*start)
    box = "0x{:02x}{:02x}{:02x}".format(*end)
    with tempfile.TemporaryDirectory(prefix="atelier-local-") as scratch:
        path = Path(scratch) / "out.mp4"
        process = await asyncio.create_subprocess_exec(
            imageio_ffmpeg.get_ffmpeg_exe(),
            "-hide_banner",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            f"color=c={colour}:s={width}x{height}:r={VIDEO_FPS}:d={seconds}",
            # A box that moves across the frame, so it is a video and not a still.
            "-vf",
            f"drawbox=x='mod(t*{width // 4},{width})':y={height // 3}:w={width // 6}:h={height // 3}:"
            f"color={box}:t=fill",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-movflags",
            "+faststart",
            "-y",
            str(path),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, stderr = await process.communicate()
        if process.returncode != 0:
            raise ProviderError(f"local video rendering failed: {stderr.decode()[-300:]}", retryable=True)
        return path.read_bytes()


def copy_text(job: ProviderJob) -> str:
    last = job.messages[-1].text if job.messages else job.prompt
    topic = " ".join(last.split()[:12]) or "your product"
    return (
        f"Headline: {topic.capitalize()}, made effortless.\n"
        f"Body: Meet the simplest way to enjoy {topic}. Crafted for people who care about quality, "
        "designed to fit your day, and ready when you are.\n"
        "Call to action: Try it today."
    )


def _approx_tokens(text: str) -> int:
    return max(1, len(text) // 4)


class LocalProvider(Adapter):
    """Synchronous: `submit` returns the files after `delay` seconds."""

    def __init__(self, *, delay: float = 0.0, failure_fraction: float = 0.0) -> None:
        self.delay = delay
        self.failure_fraction = failure_fraction

    def _should_fail(self, job: ProviderJob) -> bool:
        if self.failure_fraction <= 0:
            return False
        bucket = int.from_bytes(hashlib.sha256(job.task_id.encode()).digest()[:4], "big") / 2**32
        return bucket < self.failure_fraction

    async def submit(self, job: ProviderJob) -> Submitted:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self._should_fail(job):
            raise ProviderError("the local provider failed this job on purpose", code="generation_failed")
        return await super().submit(job)

    async def images(self, job: ProviderJob) -> Submitted:
        width, height = image_size(job.ratio, job.resolution)
        images = await asyncio.gather(
            *(asyncio.to_thread(render_png, job.prompt, width, height, i) for i in range(max(1, job.n)))
        )
        return Submitted(artifacts=tuple(Artifact("image/png", data=png) for png in images))

    async def video(self, job: ProviderJob) -> Submitted:
        width, height = video_size(job.ratio, job.resolution)
        seconds = job.duration_seconds or 5
        return Submitted(
            artifacts=(Artifact("video/mp4", data=await render_mp4(job.prompt, width, height, seconds)),)
        )

    async def text(self, job: ProviderJob) -> Submitted:
        text = copy_text(job)
        usage = Usage(
            _approx_tokens(job.system_instruction + job.prompt + "".join(m.text for m in job.messages)),
            _approx_tokens(text),
        )
        return Submitted(artifacts=(Artifact("text/plain", text=text),), usage=usage)

    async def stream_text(self, job: ProviderJob) -> AsyncIterator[TextChunk]:
        if self._should_fail(job):
            raise ProviderError("the local provider failed this message on purpose", code="generation_failed")
        text = copy_text(job)
        words = text.split(" ")
        pause = self.delay / max(1, len(words))
        for i, word in enumerate(words):
            if pause:
                await asyncio.sleep(pause)
            yield TextChunk(text=word if i == 0 else " " + word)
        prompt = job.system_instruction + "".join(m.text for m in job.messages)
        yield TextChunk(usage=Usage(_approx_tokens(prompt), _approx_tokens(text)))
