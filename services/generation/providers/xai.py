"""xAI (Grok): synchronous images, asynchronous videos polled by request id."""

from __future__ import annotations

from typing import Any

from services.generation.providers.base import (
    IMAGE,
    VIDEO,
    Artifact,
    Polled,
    ProviderError,
    ProviderJob,
    Submitted,
    error_fields,
    is_content_filtered,
)
from services.generation.providers.http import HttpAdapter, decode_b64


class XaiAdapter(HttpAdapter):
    async def submit(self, job: ProviderJob) -> Submitted:
        if job.kind == IMAGE:
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
            artifacts = []
            for item in answer.get("data") or ():
                if item.get("b64_json"):
                    artifacts.append(Artifact("image/jpeg", data=decode_b64(item["b64_json"])))
                elif item.get("url"):
                    artifacts.append(Artifact("image/jpeg", url=item["url"]))
            return Submitted(artifacts=tuple(artifacts))
        if job.kind == VIDEO:
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
            answer = await self.request("POST", "/videos/generations", video)
            if not answer.get("request_id"):
                raise ProviderError("the provider returned no request id", retryable=True)
            return Submitted(operation_id=str(answer["request_id"]))
        raise ProviderError("xAI adapter makes images and videos", code="unsupported_spec")

    async def poll(self, job: ProviderJob, operation_id: str) -> Polled:
        answer = await self.request("GET", f"/videos/{operation_id}")
        status = answer.get("status")
        if status == "done":
            url = (answer.get("video") or {}).get("url")
            if not url:
                return Polled(done=True, error=ProviderError("the video finished without a URL"))
            return Polled(done=True, artifacts=(Artifact("video/mp4", url=url),))
        if status in ("failed", "expired"):
            # A failed job answers HTTP 200 with its error in the body.
            code, message = error_fields(answer)
            filtered = is_content_filtered(code, message)
            return Polled(
                done=True,
                error=ProviderError(
                    message or f"the video {status}",
                    code="content_filtered" if filtered else "generation_failed",
                ),
            )
        return Polled(done=False, progress=int(answer.get("progress") or 0))
