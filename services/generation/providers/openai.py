"""OpenAI Images (gpt-image models): synchronous generate and edit, base64 answers."""

from __future__ import annotations

from services.generation.providers.base import Artifact, ProviderJob, Submitted
from services.generation.providers.http import HttpAdapter, decode_b64, ratio_parts


def openai_size(ratio: str) -> str:
    width, height = ratio_parts(ratio)
    if width == height:
        return "1024x1024"
    return "1536x1024" if width > height else "1024x1536"


class OpenAIAdapter(HttpAdapter):
    async def images(self, job: ProviderJob) -> Submitted:
        body: dict[str, object] = {
            "model": job.model,
            "prompt": job.prompt,
            "n": max(1, job.n),
            "size": openai_size(job.ratio),
            "output_format": "png",
        }
        if job.inputs:
            body["images"] = [{"image_url": image.data_url()} for image in job.inputs]
            answer = await self.request("POST", "/v1/images/edits", body)
        else:
            answer = await self.request("POST", "/v1/images/generations", body)
        artifacts = tuple(
            Artifact(
                "image/png",
                data=decode_b64(item["b64_json"]),
                revised_prompt=item.get("revised_prompt") or "",
            )
            for item in answer.get("data") or ()
            if item.get("b64_json")
        )
        return Submitted(artifacts=artifacts)
