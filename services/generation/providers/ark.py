"""Volcengine Ark: Seedream images (synchronous, per-item errors) and Seedance video tasks."""

from __future__ import annotations

from typing import Any

from services.generation.providers.base import (
    Artifact,
    Polled,
    ProviderError,
    ProviderJob,
    Submitted,
    reported_failure,
)
from services.generation.providers.http import HttpAdapter, finished_video, image_artifact

ROLES = {
    "first_frame": "first_frame",
    "reference": "reference_image",
    "edit": "reference_image",
    "product": "reference_image",
}
ITEM_FAILED = "the provider failed this item"


class ArkAdapter(HttpAdapter):
    async def images(self, job: ProviderJob) -> Submitted:
        body: dict[str, Any] = {
            "model": job.model,
            "prompt": job.prompt,
            "size": job.resolution or "2K",
            "response_format": "b64_json",
            "watermark": False,
        }
        if job.inputs:
            body["image"] = [image.data_url() for image in job.inputs]
        if job.n > 1:
            body["sequential_image_generation"] = "auto"
            body["sequential_image_generation_options"] = {"max_images": job.n}
        answer = await self.request("POST", "/images/generations", body)
        artifacts: list[Artifact] = []
        failures: list[ProviderError] = []
        for item in answer.get("data") or ():
            if item.get("error"):
                failures.append(reported_failure({"error": item["error"]}, ITEM_FAILED))
            elif (artifact := image_artifact(item, "image/png")) is not None:
                artifacts.append(artifact)
        return Submitted(artifacts=tuple(artifacts), failures=tuple(failures))

    async def video(self, job: ProviderJob) -> Submitted:
        flags = (
            f" --ratio {job.ratio or '16:9'} --resolution {job.resolution or '720p'}"
            f" --duration {job.duration_seconds or 5}"
        )
        content: list[dict[str, Any]] = [{"type": "text", "text": job.prompt + flags}]
        for image in job.inputs:
            content.append(
                {"type": "image_url", "image_url": {"url": image.data_url()}, "role": ROLES[image.role]}
            )
        body = {"model": job.model, "content": content}
        return await self.start_operation("/contents/generations/tasks", body, "id")

    async def poll(self, job: ProviderJob, operation_id: str) -> Polled:
        answer = await self.request("GET", f"/contents/generations/tasks/{operation_id}")
        status = answer.get("status")
        if status == "succeeded":
            return finished_video((answer.get("content") or {}).get("video_url"))
        if status in ("failed", "cancelled", "expired"):
            error = answer.get("error") or {"message": f"task {status}"}
            return Polled(done=True, error=reported_failure({"error": error}, ITEM_FAILED))
        return Polled(done=False, progress=50 if status == "running" else 5)

    async def cancel(self, operation_id: str) -> bool:
        # Ark deletes (cancels) a task that is still queued; running tasks cannot be stopped.
        try:
            await self.request("DELETE", f"/contents/generations/tasks/{operation_id}")
        except ProviderError:
            return False
        return True
