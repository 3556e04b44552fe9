"""A fake of every upstream model API over real HTTP (Starlette under uvicorn in a thread), speaking
each documented contract: success, per-item failures, 429 with each retry hint, 5xx, content filters
and slow long-running operations. Tests script the next answers of a route and count the calls."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from devkit.embedded import free_port
from services.generation.providers.local import render_mp4, render_png

KEY = "sk-test"


@dataclass
class Scripted:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Operation:
    created: float
    prompt: str
    outcome: str = "ok"  # ok | failed | filtered


class FakeUpstream:
    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.bodies: dict[str, list[Any]] = defaultdict(list)
        self.scripts: dict[str, list[Scripted]] = defaultdict(list)
        self.operations: dict[str, Operation] = {}
        # How long a video operation runs before it is done.
        self.operation_seconds = 0.3
        self.next_outcome = "ok"
        self.video = b""
        self.png = render_png("fake", 64, 64)
        self.port = free_port()
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def script(self, route: str, *answers: Scripted) -> None:
        self.scripts[route].extend(answers)

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        self.video = asyncio.run(render_mp4("fake video", 160, 90, 2))
        app = Starlette(
            routes=[
                Route("/openai/v1/images/generations", self.openai_images, methods=["POST"]),
                Route("/openai/v1/images/edits", self.openai_images, methods=["POST"]),
                Route("/ark/images/generations", self.ark_images, methods=["POST"]),
                Route("/ark/contents/generations/tasks", self.ark_submit, methods=["POST"]),
                Route("/ark/contents/generations/tasks/{id}", self.ark_task, methods=["GET", "DELETE"]),
                Route("/xai/images/generations", self.xai_images, methods=["POST"]),
                Route("/xai/images/edits", self.xai_images, methods=["POST"]),
                Route("/xai/videos/generations", self.xai_submit, methods=["POST"]),
                Route("/xai/videos/{id}", self.xai_poll, methods=["GET"]),
                Route("/gemini/models/{rest:path}", self.gemini_models, methods=["POST"]),
                Route("/gemini/operations/{id}", self.gemini_poll, methods=["GET"]),
                Route("/files/{name}", self.files, methods=["GET"]),
            ]
        )
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fake upstream did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=5)

    # -- helpers ---------------------------------------------------------------------------------

    async def _enter(self, route: str, request: Request, auth: str = "bearer") -> Response | Any:
        """Counts the call, checks the key, and returns a scripted answer if one is queued."""
        self.calls[route] += 1
        body: Any = None
        if request.method in ("POST",):
            body = await request.json()
            self.bodies[route].append(body)
        given = (
            request.headers.get("authorization", "")
            if auth == "bearer"
            else request.headers.get("x-goog-api-key", "")
        )
        expected = f"Bearer {KEY}" if auth == "bearer" else KEY
        if given != expected:
            return JSONResponse(
                {
                    "error": {
                        "message": "Incorrect API key",
                        "type": "invalid_request_error",
                        "code": "invalid_api_key",
                    }
                },
                401,
            )
        if self.scripts[route]:
            answer = self.scripts[route].pop(0)
            return JSONResponse(answer.body, answer.status, headers=answer.headers)
        return body

    def _png_b64(self) -> str:
        return base64.b64encode(self.png).decode()

    def _new_operation(self, prompt: str) -> str:
        op_id = uuid.uuid4().hex
        self.operations[op_id] = Operation(time.monotonic(), prompt, self.next_outcome)
        return op_id

    def _state(self, op_id: str) -> tuple[Operation | None, bool]:
        op = self.operations.get(op_id)
        return op, op is not None and time.monotonic() - op.created >= self.operation_seconds

    # -- OpenAI ----------------------------------------------------------------------------------

    async def openai_images(self, request: Request) -> Response:
        route = "openai.edit" if request.url.path.endswith("edits") else "openai.generate"
        body = await self._enter(route, request)
        if isinstance(body, Response):
            return body
        if "model" not in body or not body.get("prompt"):
            return JSONResponse(
                {
                    "error": {
                        "message": "missing model or prompt",
                        "type": "invalid_request_error",
                        "param": "model",
                        "code": None,
                    }
                },
                400,
            )
        data = [
            {"b64_json": self._png_b64(), "revised_prompt": body["prompt"] + "!"}
            for _ in range(body.get("n", 1))
        ]
        return JSONResponse(
            {
                "created": int(time.time()),
                "data": data,
                "size": body.get("size"),
                "output_format": "png",
                "usage": {"total_tokens": 10},
            }
        )

    # -- Ark -------------------------------------------------------------------------------------

    async def ark_images(self, request: Request) -> Response:
        body = await self._enter("ark.images", request)
        if isinstance(body, Response):
            return body
        count = (body.get("sequential_image_generation_options") or {}).get("max_images", 1)
        data: list[dict[str, Any]] = [{"b64_json": self._png_b64(), "size": "64x64"} for _ in range(count)]
        if self.next_outcome == "partial" and count > 1:
            data[-1] = {
                "error": {
                    "code": "OutputImageSensitiveContentDetected",
                    "message": "The output image may contain sensitive information.",
                }
            }
        return JSONResponse(
            {
                "model": body["model"],
                "created": int(time.time()),
                "data": data,
                "usage": {"generated_images": count},
            }
        )

    async def ark_submit(self, request: Request) -> Response:
        body = await self._enter("ark.video.submit", request)
        if isinstance(body, Response):
            return body
        text = next(c["text"] for c in body["content"] if c["type"] == "text")
        return JSONResponse({"id": f"cgt-{self._new_operation(text)}"})

    async def ark_task(self, request: Request) -> Response:
        route = "ark.video.cancel" if request.method == "DELETE" else "ark.video.poll"
        entered = await self._enter(route, request)
        if isinstance(entered, Response):
            return entered
        op_id = request.path_params["id"].removeprefix("cgt-")
        op, done = self._state(op_id)
        if op is None:
            return JSONResponse({"error": {"code": "ResourceNotFound", "message": "task not found"}}, 404)
        if request.method == "DELETE":
            op.outcome = "cancelled"
            return JSONResponse({})
        task: dict[str, Any] = {"id": request.path_params["id"], "model": "seedance", "status": "running"}
        if op.outcome == "cancelled":
            task["status"] = "cancelled"
        elif done and op.outcome == "ok":
            task.update(status="succeeded", content={"video_url": f"{self.url}/files/{op_id}.mp4"})
        elif done:
            task.update(
                status="failed",
                error={
                    "code": "OutputVideoSensitiveContentDetected",
                    "message": "The output video may contain sensitive content.",
                },
            )
        return JSONResponse(task)

    # -- xAI -------------------------------------------------------------------------------------

    async def xai_images(self, request: Request) -> Response:
        body = await self._enter("xai.images", request)
        if isinstance(body, Response):
            return body
        return JSONResponse({"data": [{"b64_json": self._png_b64()} for _ in range(body.get("n", 1))]})

    async def xai_submit(self, request: Request) -> Response:
        body = await self._enter("xai.video.submit", request)
        if isinstance(body, Response):
            return body
        return JSONResponse({"request_id": self._new_operation(body["prompt"])})

    async def xai_poll(self, request: Request) -> Response:
        entered = await self._enter("xai.video.poll", request)
        if isinstance(entered, Response):
            return entered
        op, done = self._state(request.path_params["id"])
        if op is None:
            return JSONResponse({"code": "not_found", "error": "request not found"}, 404)
        if not done:
            return JSONResponse({"status": "pending", "progress": 40})
        if op.outcome != "ok":
            # A failed job answers HTTP 200.
            return JSONResponse(
                {
                    "status": "failed",
                    "error": {"code": "content_moderated", "message": "Video rejected by content moderation"},
                }
            )
        return JSONResponse(
            {
                "status": "done",
                "video": {"url": f"{self.url}/files/{request.path_params['id']}.mp4", "duration": 2},
                "progress": 100,
            }
        )

    # -- Gemini ----------------------------------------------------------------------------------

    async def gemini_models(self, request: Request) -> Response:
        rest = request.path_params["rest"]
        _model, _, method = rest.partition(":")
        route = {
            "generateContent": "gemini.generate",
            "streamGenerateContent": "gemini.stream",
            "predict": "gemini.predict",
            "predictLongRunning": "gemini.video.submit",
        }.get(method, "gemini.unknown")
        body = await self._enter(route, request, auth="google")
        if isinstance(body, Response):
            return body
        if route == "gemini.generate":
            return JSONResponse(
                {
                    "candidates": [
                        {
                            "content": {
                                "role": "model",
                                "parts": [
                                    {"text": "Fresh copy for " + body["contents"][-1]["parts"][0]["text"]}
                                ],
                            },
                            "finishReason": "STOP",
                        }
                    ],
                    "usageMetadata": {
                        "promptTokenCount": 12,
                        "candidatesTokenCount": 7,
                        "totalTokenCount": 19,
                    },
                }
            )
        if route == "gemini.stream":
            return StreamingResponse(self._sse(body), media_type="text/event-stream")
        if route == "gemini.predict":
            count = body["parameters"].get("sampleCount", 1)
            predictions: list[dict[str, Any]] = [
                {"bytesBase64Encoded": self._png_b64(), "mimeType": "image/png"} for _ in range(count)
            ]
            if self.next_outcome == "partial" and count > 1:
                predictions[-1] = {"raiFilteredReason": "The image was filtered for safety reasons."}
            return JSONResponse({"predictions": predictions})
        if route == "gemini.video.submit":
            return JSONResponse({"name": f"operations/{self._new_operation(body['instances'][0]['prompt'])}"})
        return JSONResponse({"error": {"code": 404, "message": "unknown method", "status": "NOT_FOUND"}}, 404)

    async def _sse(self, body: Any) -> AsyncIterator[bytes]:
        words = ["Bright ", "mornings ", "start ", "here."]
        for i, word in enumerate(words):
            chunk: dict[str, Any] = {
                "candidates": [{"content": {"role": "model", "parts": [{"text": word}]}}]
            }
            if i == len(words) - 1:
                chunk["usageMetadata"] = {
                    "promptTokenCount": 20,
                    "candidatesTokenCount": 4,
                    "totalTokenCount": 24,
                }
            yield f"data: {json.dumps(chunk)}\r\n\r\n".encode()
            await asyncio.sleep(0.01)

    async def gemini_poll(self, request: Request) -> Response:
        entered = await self._enter("gemini.video.poll", request, auth="google")
        if isinstance(entered, Response):
            return entered
        op_id = request.path_params["id"]
        op, done = self._state(op_id)
        if op is None:
            return JSONResponse(
                {"error": {"code": 404, "message": "operation not found", "status": "NOT_FOUND"}}, 404
            )
        name = f"operations/{op_id}"
        if not done:
            return JSONResponse({"name": name, "done": False})
        if op.outcome != "ok":
            return JSONResponse(
                {
                    "name": name,
                    "done": True,
                    "response": {
                        "generateVideoResponse": {
                            "raiMediaFilteredCount": 1,
                            "raiMediaFilteredReasons": ["Video was filtered for safety."],
                        }
                    },
                }
            )
        uri = f"{self.url}/files/{op_id}.mp4?alt=media"
        return JSONResponse(
            {
                "name": name,
                "done": True,
                "response": {
                    "@type": "type.googleapis.com/google.ai.generativelanguage.v1beta."
                    "PredictLongRunningResponse",
                    "generateVideoResponse": {"generatedSamples": [{"video": {"uri": uri}}]},
                },
            }
        )

    async def files(self, request: Request) -> Response:
        self.calls["download"] += 1
        return Response(self.video, media_type="video/mp4")


def rate_limited(hint: str) -> Scripted:
    """A 429 carrying one of the retry hints the providers use."""
    if hint == "retry-after-ms":
        return Scripted(
            429,
            {"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}},
            {"retry-after-ms": "150"},
        )
    if hint == "retry-after":
        return Scripted(
            429,
            {"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}},
            {"retry-after": "1"},
        )
    if hint == "retry-after-date":
        from email.utils import formatdate

        return Scripted(
            429,
            {"error": {"message": "slow down"}},
            {"retry-after": formatdate(time.time() + 2, usegmt=True)},
        )
    if hint == "retry-info":
        return Scripted(
            429,
            {
                "error": {
                    "code": 429,
                    "message": "Resource has been exhausted",
                    "status": "RESOURCE_EXHAUSTED",
                    "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1s"}],
                }
            },
        )
    return Scripted(
        429,
        {
            "error": {
                "code": "RateLimitExceeded.EndpointRPMExceeded",
                "message": "Request rate exceeded",
                "type": "TooManyRequests",
            }
        },
    )
