"""gRPC clients of the services the workflow calls: catalog (templates), ledger (debit, refund) and
generation (uploads, step tasks). Failures come back as DomainErrors (`Unavailable` for transport)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import grpc

from atelier.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from atelier.generation.v1 import generation_pb2, generation_pb2_grpc
from atelier.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from kit import grpc_client
from kit.access import ON_BEHALF_OF
from kit.settings import Settings

SERVICE = "workflow"


def _as_user(user_id: str) -> tuple[tuple[str, str], ...]:
    # Step tasks and uploads are the run owner's; the workflow acts for the owner its run record names
    # (fixed when the user's request started the run), so the steps go on after their session ends.
    return ((ON_BEHALF_OF, user_id),)


@dataclass
class Clients:
    catalog_channel: grpc.aio.Channel
    ledger_channel: grpc.aio.Channel
    generation_channel: grpc.aio.Channel

    @classmethod
    def connect(cls, settings: Settings) -> Clients:
        return cls(
            grpc_client.to_peer(settings, "catalog", workload=SERVICE),
            grpc_client.to_peer(settings, "ledger", workload=SERVICE),
            grpc_client.to_peer(settings, "generation", workload=SERVICE),
        )

    @property
    def catalog(self) -> catalog_pb2_grpc.CatalogServiceStub:
        return catalog_pb2_grpc.CatalogServiceStub(self.catalog_channel)

    @property
    def ledger(self) -> ledger_pb2_grpc.LedgerServiceStub:
        return ledger_pb2_grpc.LedgerServiceStub(self.ledger_channel)

    @property
    def generation(self) -> generation_pb2_grpc.GenerationServiceStub:
        return generation_pb2_grpc.GenerationServiceStub(self.generation_channel)

    async def close(self) -> None:
        await asyncio.gather(
            self.catalog_channel.close(), self.ledger_channel.close(), self.generation_channel.close()
        )

    # -- catalog ---------------------------------------------------------------------------------
    async def get_template(self, user_id: str, code: str) -> catalog_pb2.GetTemplateResponse:
        request = catalog_pb2.GetTemplateRequest(code=code)
        return await grpc_client.call(lambda: self.catalog.GetTemplate(request))

    # -- ledger ----------------------------------------------------------------------------------
    async def debit(self, request: ledger_pb2.DebitRequest) -> ledger_pb2.DebitResponse:
        return await grpc_client.call(lambda: self.ledger.Debit(request))

    async def refund(self, request: ledger_pb2.RefundRequest) -> ledger_pb2.RefundResponse:
        return await grpc_client.call(lambda: self.ledger.Refund(request))

    # -- generation ------------------------------------------------------------------------------
    async def get_upload(self, user_id: str, upload_id: str) -> generation_pb2.Upload:
        request = generation_pb2.GetUploadRequest(upload_id=upload_id)
        reply: generation_pb2.GetUploadResponse = await grpc_client.call(
            lambda: self.generation.GetUpload(request, metadata=_as_user(user_id))
        )
        return reply.upload

    async def get_task(self, user_id: str, task_id: str) -> generation_pb2.Task:
        request = generation_pb2.GetTaskRequest(task_id=task_id)
        reply: generation_pb2.GetTaskResponse = await grpc_client.call(
            lambda: self.generation.GetTask(request, metadata=_as_user(user_id))
        )
        return reply.task

    async def cancel_task(self, user_id: str, task_id: str) -> None:
        request = generation_pb2.CancelTaskRequest(task_id=task_id)
        await grpc_client.call(lambda: self.generation.CancelTask(request, metadata=_as_user(user_id)))

    async def submit_task(
        self, user_id: str, request: generation_pb2.SubmitTaskRequest
    ) -> generation_pb2.SubmitTaskResponse:
        return await grpc_client.call(lambda: self.generation.SubmitTask(request, metadata=_as_user(user_id)))
