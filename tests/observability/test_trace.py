"""One trace explains a charge: a task submitted through the gateway of the whole stack (as processes)
is one trace across the gateway, generation, the worker and the ledger — HTTP → gRPC → SQL → NATS
publish/consume — and the ledger transfers it caused (hold and capture) carry that trace id."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest

from devkit.launcher import DEV_ADMIN_EMAIL, DEV_ADMIN_PASSWORD
from tests.e2e.stack import Stack
from tests.e2e.test_journey import recharge, register_and_verify, wait_for
from tests.observability.conftest import TRACING_UI
from tests.observability.receiver import ReceivedSpan, Receiver

pytestmark = pytest.mark.slow

SERVER, CLIENT, PRODUCER, CONSUMER = 2, 3, 4, 5  # opentelemetry.proto.trace.v1.Span.SpanKind


def task_records(
    http: httpx.Client, task_id: str, kinds: set[str], timeout: float = 60
) -> list[dict[str, Any]]:
    """The billing records of `task_id` once each of `kinds` is there (capture follows completion)."""
    deadline = time.monotonic() + timeout
    while True:
        items = http.get("/v1/billing/records", params={"limit": 100}).json()["items"]
        found = [r for r in items if r.get("transfer", {}).get("reference", {}).get("id") == task_id]
        if kinds <= {r["transfer"]["kind"] for r in found} or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def admin_token(stack: Stack) -> str:
    with stack.client() as http:
        reply = http.post("/v1/auth/login", json={"email": DEV_ADMIN_EMAIL, "password": DEV_ADMIN_PASSWORD})
        assert reply.status_code == 200, reply.text
        token: str = reply.json()["access_token"]
        return token


def test_one_trace_spans_the_submit_the_worker_and_the_ledger(
    traced_stack: Stack, receiver: Receiver
) -> None:
    stack = traced_stack
    token = register_and_verify(stack, f"traced-{uuid.uuid4().hex[:8]}@example.com")
    with stack.client(token) as http:
        recharge(http, "alipay", "30", f"recharge-{uuid.uuid4()}")
        submitted = http.post(
            "/v1/tasks",
            json={
                "kind": "image",
                "model": "gpt-image-1.5-all",
                "prompt": "a mug",
                "ratio": "1:1",
                "resolution": "1024",
            },
            headers={"Idempotency-Key": f"img-{uuid.uuid4()}"},
        )
        assert submitted.status_code == 201, submitted.text
        task_id = submitted.json()["id"]
        done = wait_for(http, f"/v1/tasks/{task_id}", {"succeeded", "failed", "canceled"})
        assert done["status"] == "succeeded", done
        records = task_records(http, task_id, {"hold", "capture"})
    (capture,) = [r["transfer"] for r in records if r["transfer"]["kind"] == "capture"]
    trace_id = capture["trace_id"]
    assert len(trace_id) == 32

    # The spend debugger shows the hold and the capture with that trace id, linked to the tracing UI.
    with stack.client(admin_token(stack)) as admin:
        chain = admin.get(f"/v1/admin/spend/{task_id}")
    assert chain.status_code == 200, chain.text
    body = chain.json()
    transfers = {t["kind"]: t for t in body["transfers"]}
    assert set(transfers) == {"hold", "capture"}
    assert {t["trace_id"] for t in transfers.values()} == {trace_id}
    assert {t["trace_url"] for t in transfers.values()} == {TRACING_UI.format(trace_id=trace_id)}
    assert body["task"]["id"] == task_id
    assert body["task"]["trace_id"] == trace_id
    assert {"trace_id": trace_id, "url": TRACING_UI.format(trace_id=trace_id)} in body["traces"]

    # One trace, from the gateway's HTTP request to the ledger's capture.
    spans = receiver.wait_for(trace_id, lambda found: has_whole_path(found))
    assert_whole_path(spans)


def named(spans: list[ReceivedSpan], service: str, kind: int, name: str) -> list[ReceivedSpan]:
    return [s for s in spans if s.service == service and s.kind == kind and s.name == name]


def published(spans: list[ReceivedSpan], name: str) -> list[ReceivedSpan]:
    return [
        s
        for s in spans
        if s.service in ("generation", "generation-worker") and s.kind == PRODUCER and s.name == name
    ]


def sql(spans: list[ReceivedSpan], service: str) -> list[ReceivedSpan]:
    return [s for s in spans if s.service == service and s.kind == CLIENT and "db.system" in s.attributes]


def has_whole_path(spans: list[ReceivedSpan]) -> bool:
    try:
        assert_whole_path(spans)
    except AssertionError:
        return False
    return True


def assert_whole_path(spans: list[ReceivedSpan]) -> None:
    by_id = {s.span_id: s for s in spans}

    def parent(span: ReceivedSpan) -> ReceivedSpan:
        assert span.parent_span_id in by_id, f"the parent of {span.service} {span.name} is not in the trace"
        return by_id[span.parent_span_id]

    (root,) = [s for s in spans if not s.parent_span_id]
    assert (root.service, root.kind, root.name) == ("gateway", SERVER, "POST /v1/tasks")
    for span in spans:  # one tree: every span reaches the gateway's request
        hops = 0
        while span is not root:
            span, hops = parent(span), hops + 1
            assert hops < 50

    # HTTP → gRPC client → generation's server, which quotes (catalog), holds (ledger) and writes (SQL).
    (submit,) = named(spans, "generation", SERVER, "/atelier.generation.v1.GenerationService/SubmitTask")
    assert parent(parent(submit)) is root
    (hold,) = named(spans, "ledger", SERVER, "/atelier.ledger.v1.LedgerService/Hold")
    assert parent(parent(hold)) is submit
    assert named(spans, "catalog", SERVER, "/atelier.catalog.v1.CatalogService/Quote")
    assert any(
        s.attributes.get("db.statement", "").startswith("INSERT") or s.name.startswith("INSERT")
        for s in sql(spans, "generation")
    )
    assert any(parent(s) is hold for s in sql(spans, "ledger"))

    # The job: published from generation's outbox (by the relay of the generation service or of a
    # worker: both share the database), consumed by the worker, which runs it (SQL).
    (job_published,) = published(spans, "jobs.image publish")
    assert parent(job_published) is submit
    (job,) = named(spans, "generation-worker", CONSUMER, "jobs.image process")
    assert parent(job) is job_published
    assert any(parent(s) is job for s in sql(spans, "generation-worker"))

    # tasks.completed: published from the worker's outbox, consumed by the ledger, which captures.
    completed = published(spans, "tasks.completed publish")
    assert any(parent(p) is job for p in completed)
    (settle,) = [
        s for s in named(spans, "ledger", CONSUMER, "tasks.completed process") if parent(s) in completed
    ]
    assert any(parent(s) is settle for s in sql(spans, "ledger"))
