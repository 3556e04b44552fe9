"""Google Gemini API: Gemini text (with SSE streaming), Imagen `:predict`, Veo long-running operations."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from services.generation.providers.base import (
    Artifact,
    Polled,
    ProviderError,
    ProviderJob,
    Submitted,
    TextChunk,
    Usage,
    classify_response,
    error_fields,
    transport_error,
)
from services.generation.providers.http import HttpAdapter, decode_b64


def _contents(job: ProviderJob) -> list[dict[str, Any]]:
    if job.messages:
        return [
            {"role": "model" if m.role == "assistant" else "user", "parts": [{"text": m.text}]}
            for m in job.messages
        ]
    return [{"role": "user", "parts": [{"text": job.prompt}]}]


def _usage(answer: dict[str, Any]) -> Usage | None:
    meta = answer.get("usageMetadata")
    if not meta:
        return None
    return Usage(int(meta.get("promptTokenCount") or 0), int(meta.get("candidatesTokenCount") or 0))


def _text(answer: dict[str, Any]) -> str:
    parts: list[str] = []
    for candidate in answer.get("candidates") or ():
        for part in (candidate.get("content") or {}).get("parts") or ():
            if "text" in part and not part.get("thought"):
                parts.append(part["text"])
        if candidate.get("finishReason") in ("SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST"):
            raise ProviderError("the answer was blocked by the safety filter", code="content_filtered")
    if (answer.get("promptFeedback") or {}).get("blockReason"):
        raise ProviderError("the prompt was blocked by the safety filter", code="content_filtered")
    return "".join(parts)


class GeminiAdapter(HttpAdapter):
    def headers(self) -> dict[str, str]:
        return {"x-goog-api-key": self.api_key}

    def _text_body(self, job: ProviderJob) -> dict[str, Any]:
        body: dict[str, Any] = {"contents": _contents(job)}
        if job.system_instruction:
            body["systemInstruction"] = {"parts": [{"text": job.system_instruction}]}
        if job.max_output_tokens:
            body["generationConfig"] = {"maxOutputTokens": job.max_output_tokens}
        return body

    async def text(self, job: ProviderJob) -> Submitted:
        answer = await self.request("POST", f"/models/{job.model}:generateContent", self._text_body(job))
        return Submitted(
            artifacts=(Artifact("text/plain", text=_text(answer)),), usage=_usage(answer) or Usage()
        )

    async def images(self, job: ProviderJob) -> Submitted:
        parameters: dict[str, Any] = {"sampleCount": max(1, job.n)}
        if job.ratio:
            parameters["aspectRatio"] = job.ratio
        if job.resolution.upper() in ("1K", "2K"):
            parameters["sampleImageSize"] = job.resolution.upper()
        answer = await self.request(
            "POST",
            f"/models/{job.model}:predict",
            {"instances": [{"prompt": job.prompt}], "parameters": parameters},
        )
        artifacts: list[Artifact] = []
        failures: list[ProviderError] = []
        for item in answer.get("predictions") or ():
            if item.get("bytesBase64Encoded"):
                artifacts.append(
                    Artifact(item.get("mimeType") or "image/png", data=decode_b64(item["bytesBase64Encoded"]))
                )
            elif item.get("raiFilteredReason"):
                failures.append(ProviderError(item["raiFilteredReason"], code="content_filtered"))
        if not artifacts and not failures:
            failures.append(ProviderError("every image was filtered", code="content_filtered"))
        return Submitted(artifacts=tuple(artifacts), failures=tuple(failures))

    async def video(self, job: ProviderJob) -> Submitted:
        instance: dict[str, Any] = {"prompt": job.prompt}
        for image in job.inputs:
            encoded = {
                "bytesBase64Encoded": image.data_url().split(",", 1)[1],
                "mimeType": image.mime_type,
            }
            if image.role == "first_frame":
                instance["image"] = encoded
            else:
                instance.setdefault("referenceImages", []).append(
                    {"image": encoded, "referenceType": "asset"}
                )
        parameters: dict[str, Any] = {
            "aspectRatio": job.ratio or "16:9",
            "durationSeconds": job.duration_seconds or 8,
        }
        if job.resolution:
            parameters["resolution"] = job.resolution
        body = {"instances": [instance], "parameters": parameters}
        return await self.start_operation(f"/models/{job.model}:predictLongRunning", body, "name")

    async def poll(self, job: ProviderJob, operation_id: str) -> Polled:
        answer = await self.request("GET", f"/{operation_id}")
        if not answer.get("done"):
            return Polled(
                done=False, progress=int((answer.get("metadata") or {}).get("progressPercent") or 0)
            )
        if answer.get("error"):
            _, message = error_fields(answer)
            return Polled(
                done=True, error=ProviderError(message or "the operation failed", code="generation_failed")
            )
        response = (answer.get("response") or {}).get("generateVideoResponse") or {}
        if response.get("raiMediaFilteredReasons"):
            reason = "; ".join(response["raiMediaFilteredReasons"])
            return Polled(done=True, error=ProviderError(reason, code="content_filtered"))
        artifacts = tuple(
            Artifact("video/mp4", url=sample["video"]["uri"], download_headers=self.headers())
            for sample in response.get("generatedSamples") or ()
            if (sample.get("video") or {}).get("uri")
        )
        if not artifacts:
            return Polled(done=True, error=ProviderError("the operation finished without a video"))
        return Polled(done=True, artifacts=artifacts)

    async def stream_text(self, job: ProviderJob) -> AsyncIterator[TextChunk]:
        url = f"{self.base_url}/models/{job.model}:streamGenerateContent"
        usage: Usage | None = None
        try:
            async with self.client.stream(
                "POST", url, params={"alt": "sse"}, json=self._text_body(job), headers=self.headers()
            ) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise classify_response(response)
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    try:
                        chunk = json.loads(line[5:].strip())
                    except ValueError as exc:
                        raise ProviderError("the provider streamed malformed JSON") from exc
                    text = _text(chunk)
                    usage = _usage(chunk) or usage
                    if text:
                        yield TextChunk(text=text)
        except httpx.HTTPError as exc:
            raise transport_error(exc) from exc
        if usage is None:
            raise ProviderError("the stream ended without usage", code="upstream_error")
        yield TextChunk(usage=usage)
