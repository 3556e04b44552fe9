"""xAI (Grok): synchronous images, asynchronous videos polled by request id."""

from __future__ import annotations

from typing import Any

from services.generation.providers.base import (
    Polled,
    ProviderJob,
    Submitted,
    reported_failure,
)
from services.generation.providers.http import HttpAdapter, finished_video, image_artifact


class XaiAdapter(HttpAdapter):
    async def images(self, job: ProviderJob) -> Submitted:
        body: dict[str, Any] = {
            "model": job.model,
            "prompt": job.prompt,
            "n": max(1, job.n),
            "response_format": "b64_json",
        }
        if job.ratio:
            body["aspect_ratio"] = job.ratio
        if job.resolution.lower() in ("1k", "2k"):
            body["resolution"] = job.resolution.lower()
        if job.inputs:
            body["image"] = {"url": job.inputs[0].data_url(), "type": "image_url"}
            answer = await self.request("POST", "/images/edits", body)
        else:
            answer = await self.request("POST", "/images/generations", body)
        found = (image_artifact(item, "image/jpeg") for item in answer.get("data") or ())
        return Submitted(artifacts=tuple(artifact for artifact in found if artifact is not None))

    async def video(self, job: ProviderJob) -> Submitted:
        video: dict[str, Any] = {
            "model": job.model,
            "prompt": job.prompt,
            "duration": job.duration_seconds or 5,
            "aspect_ratio": job.ratio or "16:9",
            "resolution": job.resolution or "720p",
        }
        firsts = [i for i in job.inputs if i.role == "first_frame"]
        references = [i for i in job.inputs if i.role != "first_frame"]
        if firsts:
            video["image"] = {"url": firsts[0].data_url()}
        if references:
            video["reference_images"] = [{"url": i.data_url()} for i in references]
        return await self.start_operation("/videos/generations", video, "request_id")

    async def poll(self, job: ProviderJob, operation_id: str) -> Polled:
        answer = await self.request("GET", f"/videos/{operation_id}")
        status = answer.get("status")
        if status == "done":
            return finished_video((answer.get("video") or {}).get("url"))
        if status in ("failed", "expired"):
            # A failed job answers HTTP 200 with its error in the body.
            return Polled(done=True, error=reported_failure(answer, f"the video {status}"))
        return Polled(done=False, progress=int(answer.get("progress") or 0))
