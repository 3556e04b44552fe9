"""`python -m services.generation.worker`: the generation worker process.

It shares the generation service's database and pulls jobs from JetStream (`jobs.<kind>`) with
explicit acks, in-progress heartbeats and bounded redelivery (then the dead-letter subject); it
serves only the gRPC health service, for its probes.

A job's life: claim the task (queued → running), submit upstream — or, when the task already holds
an upstream operation id from an earlier delivery, resume polling it — store the outputs in our blob
store, then finish the task with compare-and-set and announce `tasks.completed` through the outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import io
import logging
import tempfile
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import httpx
import imageio_ffmpeg
from PIL import Image

from atelier.catalog.v1 import catalog_pb2
from atelier.events.v1 import events_pb2
from kit.bus import Delivery, Permanent
from kit.grpc_server import GrpcServer
from kit.money import Credits
from kit.service import Runtime, ServiceDefinition, main
from services.generation import events, repository
from services.generation.blobs import BlobNotFound, Blobs
from services.generation.models import metadata
from services.generation.providers import ProviderRegistry
from services.generation.providers.base import (
    Artifact,
    InputImage,
    Provider,
    ProviderError,
    ProviderJob,
    Submitted,
)
from services.generation.records import TaskRecord
from services.generation.service import finish_task, token_charge
from services.generation.settings import GenerationSettings
from services.generation.values import FINAL_STATUSES, OPEN_STATUSES, TaskKind, TaskStatus

log = logging.getLogger(__name__)
T = TypeVar("T")

EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "video/mp4": "mp4"}


class Discarded(Exception):
    """The task was finished by someone else (canceled, deadline) while this job ran."""


class Worker:
    def __init__(
        self, runtime: Runtime, settings: GenerationSettings, blobs: Blobs, providers: ProviderRegistry
    ) -> None:
        assert runtime.outbox is not None
        self.db = runtime.db
        self.outbox = runtime.outbox
        self.settings = settings
        self.blobs = blobs
        self.providers = providers
        self._channel_limits: dict[str, asyncio.Semaphore] = {}
        self._http = httpx.AsyncClient(timeout=settings.upstream_timeout_seconds, follow_redirects=True)

    def channel_limit(self, channel: str) -> asyncio.Semaphore:
        limit = self._channel_limits.get(channel)
        if limit is None:
            size = self.settings.channel_limits.get(channel, self.settings.channel_concurrency)
            limit = self._channel_limits[channel] = asyncio.Semaphore(size)
        return limit

    # -- the bus handler -------------------------------------------------------------------------

    async def handle(self, delivery: Delivery) -> None:
        try:
            job = events_pb2.JobRequested.FromString(delivery.data)
        except Exception as exc:
            raise Permanent(f"undecodable job: {exc}") from exc
        heartbeat = asyncio.create_task(self._heartbeat(delivery))
        try:
            await self.run(job.task_id)
        except Permanent as exc:
            # Dead-lettered now: the task must not stay running forever.
            await self._fail(job.task_id, "internal_error", f"the job cannot run: {exc}")
            raise
        except Exception as exc:
            if delivery.num_delivered >= self.settings.job_max_deliver:
                # The bus dead-letters the job now; the task must not stay running forever.
                log.error("job for task %s gave up: %r", job.task_id, exc)
                await self._fail(job.task_id, "internal_error", "the job failed repeatedly")
            raise
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat

    async def _heartbeat(self, delivery: Delivery) -> None:
        interval = max(0.2, self.settings.job_ack_wait_seconds / 3)
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(Exception):
                await delivery.in_progress()

    # -- one job ---------------------------------------------------------------------------------

    async def run(self, task_id: str) -> None:
        task = await self._claim(task_id)
        if task is None:
            return
        quote = catalog_pb2.QuoteSnapshot.FromString(task.quote)
        provider = self.providers.for_channel(quote.channel)
        job = await self._job(task, quote)
        try:
            async with self.channel_limit(quote.channel.channel_code or "local"):
                submitted = await self._execute(task, job, provider)
            outputs = await self._store(task, submitted.artifacts)
        except Discarded:
            log.info("task %s was finished elsewhere; its result is discarded", task_id)
            return
        except ProviderError as exc:
            await self._fail(task_id, exc.code, exc.message)
            return
        charge = self._charge(task, quote, submitted)
        usage = (submitted.usage.input_tokens, submitted.usage.output_tokens) if submitted.usage else None
        async with self.db.transaction() as session:
            finished = await finish_task(
                session,
                self.outbox,
                self.blobs,
                task_id,
                status=TaskStatus.SUCCEEDED,
                from_statuses=(TaskStatus.RUNNING,),
                charge=charge,
                outputs=outputs,
                usage=usage,
            )
        if finished is None:
            log.info("task %s was finished elsewhere; its result is discarded", task_id)

    async def _claim(self, task_id: str) -> TaskRecord | None:
        """queued → running (or a redelivery of a running task); None when there is nothing to do."""
        async with self.db.transaction() as session:
            task = await repository.get_task(session, task_id, lock=True)
            if task is None:
                raise Permanent(f"task {task_id} does not exist")
            if task.status in FINAL_STATUSES:
                return None
            if task.deadline_at <= dt.datetime.now(dt.UTC):
                await finish_task(
                    session,
                    self.outbox,
                    self.blobs,
                    task_id,
                    status=TaskStatus.FAILED,
                    error=("deadline_exceeded", "the task did not finish in time"),
                )
                return None
            values: dict[str, Any] = {"status": TaskStatus.RUNNING, "deliveries": task.deliveries + 1}
            if task.status == TaskStatus.QUEUED:
                values["started_at"] = dt.datetime.now(dt.UTC)
            claimed = await repository.transition(
                session, task_id, from_statuses=OPEN_STATUSES, values=values
            )
            assert claimed is not None
            if task.status == TaskStatus.QUEUED:
                await events.task_progress(session, self.outbox, claimed)
            return claimed

    async def _job(self, task: TaskRecord, quote: catalog_pb2.QuoteSnapshot) -> ProviderJob:
        images: list[InputImage] = []
        async with self.db.session() as session:
            for item in task.inputs:
                row = await repository.get_input(session, item["source"], item["id"])
                if row is None or not row.blob_key:
                    raise Permanent(f"input {item['id']} of task {task.id} is gone")
                try:
                    data = await self.blobs.store.get(row.blob_key)
                except BlobNotFound as exc:
                    raise Permanent(f"input {item['id']} of task {task.id} is gone") from exc
                images.append(InputImage(data, row.mime_type, item["role"]))
        return ProviderJob(
            kind=task.kind,
            model=quote.channel.upstream_model_id or task.model_code,
            prompt=task.prompt,
            ratio=task.ratio,
            resolution=task.resolution,
            duration_seconds=task.duration_seconds,
            n=task.n,
            capability=task.capability,
            inputs=tuple(images),
            system_instruction=task.system_instruction,
            max_output_tokens=task.max_output_tokens,
            task_id=task.id,
        )

    async def _execute(self, task: TaskRecord, job: ProviderJob, provider: Provider) -> Submitted:
        deadline = task.deadline_at
        operation_id: str | None = task.upstream_operation_id
        if operation_id is None:
            submitted = await self._with_retries(lambda: provider.submit(job), deadline)
            if submitted.operation_id is None:
                if not submitted.artifacts:
                    raise submitted.failures[0] if submitted.failures else ProviderError("no output returned")
                return submitted
            operation_id = submitted.operation_id
            # Stored before the first poll: a redelivered job resumes here instead of paying twice.
            async with self.db.transaction() as session:
                if not await repository.set_operation_id(session, task.id, operation_id):
                    current = await repository.get_task(session, task.id)
                    if current is None or current.status != TaskStatus.RUNNING:
                        with contextlib.suppress(Exception):
                            await provider.cancel(operation_id)
                        raise Discarded(task.id)
                    operation_id = current.upstream_operation_id
                    assert operation_id is not None
        last_progress = task.progress
        while True:
            async with self.db.session() as session:
                current = await repository.get_task(session, task.id)
            if current is None or current.status != TaskStatus.RUNNING:
                # Canceled (or failed by the deadline) meanwhile: stop upstream where the API allows.
                with contextlib.suppress(Exception):
                    await provider.cancel(operation_id)
                raise Discarded(task.id)
            if dt.datetime.now(dt.UTC) >= deadline:
                with contextlib.suppress(Exception):
                    await provider.cancel(operation_id)
                raise ProviderError("the task did not finish in time", code="deadline_exceeded")
            polled = await self._with_retries(partial(provider.poll, job, operation_id), deadline)
            if polled.done:
                if polled.error is not None:
                    raise polled.error
                if not polled.artifacts:
                    raise ProviderError("the provider finished without output")
                return Submitted(operation_id=operation_id, artifacts=polled.artifacts)
            if polled.progress > last_progress:
                last_progress = min(99, polled.progress)
                await self._progress(task.id, last_progress)
            await asyncio.sleep(self.settings.poll_interval_seconds)

    async def _with_retries(self, call: Callable[[], Awaitable[T]], deadline: dt.datetime) -> T:
        attempt = 0
        while True:
            try:
                return await call()
            except ProviderError as exc:
                attempt += 1
                if not exc.retryable or attempt > self.settings.upstream_retries:
                    if exc.retryable:
                        raise ProviderError(
                            f"the provider kept failing: {exc.message}", code="upstream_unavailable"
                        ) from exc
                    raise
                wait = exc.retry_after if exc.retry_after is not None else 0.5 * 2 ** (attempt - 1)
                wait = min(wait, self.settings.upstream_max_backoff_seconds)
                left = (deadline - dt.datetime.now(dt.UTC)).total_seconds()
                if wait >= left:
                    raise ProviderError("the task did not finish in time", code="deadline_exceeded") from exc
                log.info("upstream %s, retrying in %.1fs", exc.code, wait)
                await asyncio.sleep(wait)

    async def _progress(self, task_id: str, progress: int) -> None:
        async with self.db.transaction() as session:
            if await repository.set_progress(session, task_id, progress):
                row = await repository.get_task(session, task_id)
                assert row is not None
                await events.task_progress(session, self.outbox, row)

    # -- outputs ---------------------------------------------------------------------------------

    async def _store(self, task: TaskRecord, artifacts: tuple[Artifact, ...]) -> list[dict[str, Any]]:
        """Copies every output into our blob store (providers delete theirs) and measures it."""
        rows: list[dict[str, Any]] = []
        for index, artifact in enumerate(artifacts):
            row: dict[str, Any] = {
                "id": f"out_{task.id.removeprefix('tsk_')}_{index}",
                "position": index,
                "task_id": task.id,
                "user_id": task.user_id,
                "mime_type": artifact.mime_type,
                "text": artifact.text or artifact.revised_prompt,
            }
            if artifact.data is None and artifact.url is None:
                rows.append(row)
                continue
            data = artifact.data if artifact.data is not None else await self._download(artifact)
            mime, width, height, seconds = await asyncio.to_thread(measure, data, artifact.mime_type)
            key = f"outputs/{task.user_id}/{task.id}/{index}.{EXTENSIONS.get(mime, 'bin')}"
            await self.blobs.store.put(key, data, mime)
            row.update(
                mime_type=mime,
                blob_key=key,
                width=width,
                height=height,
                duration_seconds=seconds,
                size_bytes=len(data),
            )
            rows.append(row)
        return rows

    async def _download(self, artifact: Artifact) -> bytes:
        assert artifact.url is not None
        try:
            response = await self._http.get(artifact.url, headers=dict(artifact.download_headers))
        except httpx.HTTPError as exc:
            raise ProviderError("the output could not be downloaded", retryable=True) from exc
        if response.status_code != 200:
            raise ProviderError(f"the output could not be downloaded (HTTP {response.status_code})")
        return response.content

    def _charge(self, task: TaskRecord, quote: catalog_pb2.QuoteSnapshot, submitted: Submitted) -> Credits:
        price = Credits(task.price_milli)
        if task.internal:
            return Credits(0)
        if task.kind == TaskKind.TEXT and submitted.usage is not None:
            return token_charge(quote, submitted.usage.input_tokens, submitted.usage.output_tokens)
        produced = len(submitted.artifacts)
        if quote.unit == catalog_pb2.BILLING_UNIT_PER_IMAGE and 0 < produced < task.n:
            # Some images failed upstream: charge only the ones delivered.
            return Credits(quote.unit_price.milli * produced)
        return price

    async def _fail(self, task_id: str, code: str, message: str) -> None:
        async with self.db.transaction() as session:
            await finish_task(
                session, self.outbox, self.blobs, task_id, status=TaskStatus.FAILED, error=(code, message)
            )

    async def aclose(self) -> None:
        await self._http.aclose()


def measure(data: bytes, mime: str) -> tuple[str, int, int, float]:
    """(mime type from the content, width, height, duration seconds)."""
    if mime.startswith("image/") or data[:8] == b"\x89PNG\r\n\x1a\n":
        with Image.open(io.BytesIO(data)) as image:
            detected = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}.get(
                image.format or "", mime
            )
            return detected, image.width, image.height, 0.0
    if mime.startswith("video/"):
        with tempfile.TemporaryDirectory(prefix="atelier-measure-") as scratch:
            path = Path(scratch) / "video"
            path.write_bytes(data)
            frames = imageio_ffmpeg.read_frames(str(path))
            try:
                meta: dict[str, Any] = next(frames)
            finally:
                frames.close()
            width, height = meta.get("size", (0, 0))
            return mime, int(width), int(height), float(meta.get("duration") or 0.0)
    return mime, 0, 0, 0.0


async def setup(runtime: Runtime[GenerationSettings], server: GrpcServer) -> None:
    settings = runtime.settings
    blobs = Blobs.from_settings(settings)
    providers = ProviderRegistry(settings)
    worker = Worker(runtime, settings, blobs, providers)
    for kind, concurrency in (
        (TaskKind.IMAGE, settings.image_concurrency),
        (TaskKind.VIDEO, settings.video_concurrency),
        (TaskKind.TEXT, settings.text_concurrency),
    ):
        runtime.spawn(
            runtime.bus.consume(
                durable=f"generation-worker-{kind}",
                subject=events.JOB_SUBJECTS[kind],
                handler=worker.handle,
                stop=runtime.stop,
                stream="JOBS",
                max_deliver=settings.job_max_deliver,
                ack_wait=settings.job_ack_wait_seconds,
                batch=concurrency,
                concurrency=concurrency,
            )
        )
    runtime.spawn(_close_on_stop(runtime, worker, blobs, providers))


async def _close_on_stop(runtime: Runtime, worker: Worker, blobs: Blobs, providers: ProviderRegistry) -> None:
    await runtime.stop.wait()
    await asyncio.sleep(0.5)
    await worker.aclose()
    await providers.aclose()
    await blobs.aclose()


DEFINITION = ServiceDefinition("generation-worker", GenerationSettings, metadata, setup)

if __name__ == "__main__":
    main(DEFINITION)
