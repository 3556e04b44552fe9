"""A few users submitting tasks and starting workflow runs against a whole stack while faults happen,
and the checks every fault test ends with: reconcile passes, every task and run is terminal, failed work
is uncharged, nothing is charged twice and balances are exact."""

from __future__ import annotations

import io
import os
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
import psutil
import psycopg
from PIL import Image

from devkit.launcher import ready
from tests.e2e.stack import Stack
from tests.e2e.test_journey import recharge, register_and_verify

FULL = os.environ.get("ATELIER_FAULTS_FULL") == "1"
TEMPLATE = "health-supplement"
TERMINAL = {"succeeded", "failed", "canceled"}
RECHARGE_CREDITS = Decimal(330)
IMAGE = {
    "kind": "image",
    "model": "gpt-image-1.5-all",
    "prompt": "a ceramic mug on a sunlit desk",
    "ratio": "1:1",
    "resolution": "1024",
}


def fault_env(stack: Stack) -> None:
    """Short timeouts so redeliveries after a kill happen within a test, and some failing tasks."""
    stack.env.update(
        ATELIER_JOB_ACK_WAIT_SECONDS="4",
        ATELIER_LOCAL_DELAY_SECONDS="0.3",
        ATELIER_LOCAL_FAILURE_FRACTION="0.2",
        ATELIER_POLL_INTERVAL_SECONDS="0.5",
    )


def request(
    http: httpx.Client, method: str, path: str, *, deadline: float = 90, **kwargs: Any
) -> httpx.Response:
    """Retry on connection errors and 5xx (same Idempotency-Key, so a retry never starts work twice)."""
    end = time.monotonic() + deadline
    last = ""
    while True:
        try:
            reply = http.request(method, path, **kwargs)
            if reply.status_code < 500:
                return reply
            last = f"{reply.status_code} {reply.text[:300]}"
        except httpx.TransportError as error:
            last = repr(error)
        if time.monotonic() > end:
            raise AssertionError(f"{method} {path} kept failing; last: {last}")
        time.sleep(0.3)


@dataclass
class User:
    token: str
    http: httpx.Client
    upload_id: str = ""
    run_inputs: dict[str, Any] = field(default_factory=dict)
    tasks: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    # How long a submission is retried (same Idempotency-Key) before it counts as a failed request.
    deadline: float = 90

    def submit_task(self) -> None:
        key = f"task-{uuid.uuid4()}"
        reply = self._post("/v1/tasks", IMAGE, key)
        if reply is not None and reply.status_code in (200, 201):
            self.tasks.append(reply.json()["id"])
        elif reply is not None:
            self.errors.append(f"task {reply.status_code} {reply.text[:200]}")

    def start_run(self) -> None:
        key = f"run-{uuid.uuid4()}"
        body = {"template_code": TEMPLATE, "inputs": self.run_inputs}
        reply = self._post("/v1/workflow-runs", body, key)
        if reply is not None and reply.status_code in (200, 201):
            self.runs.append(reply.json()["run"]["id"])
        elif reply is not None:
            self.errors.append(f"run {reply.status_code} {reply.text[:200]}")

    def _post(self, path: str, body: dict[str, Any], key: str) -> httpx.Response | None:
        try:
            return request(
                self.http, "POST", path, json=body, headers={"Idempotency-Key": key}, deadline=self.deadline
            )
        except AssertionError as failed:  # no 2xx or 4xx answer within the deadline
            self.errors.append(f"{path} failed: {failed}")
            return None


def make_users(stack: Stack, count: int, *, deadline: float = 90) -> list[User]:
    users = []
    for _ in range(count):
        token = register_and_verify(stack, f"fault-{uuid.uuid4().hex[:8]}@example.com")
        http = stack.client(token)
        recharge(http, "alipay", "300", f"recharge-{uuid.uuid4()}")
        photo = io.BytesIO()
        Image.new("RGB", (64, 64), (200, 120, 40)).save(photo, format="PNG")
        upload = http.post(
            "/v1/uploads",
            content=photo.getvalue(),
            headers={"Content-Type": "image/png"},
            params={"filename": "p.png"},
        )
        assert upload.status_code == 201, upload.text
        templates = {t["code"]: t for t in http.get("/v1/workflow-templates").json()["templates"]}
        inputs: dict[str, Any] = {"productText": "Vitamin D3 gummies, 60 count"}
        for spec in templates[TEMPLATE]["inputs"]:
            if spec["name"] == "productPhotos":
                inputs["productPhotos"] = [upload.json()["id"]]
            elif spec["allowed_values"]:
                inputs[spec["name"]] = spec["allowed_values"][0]
        users.append(User(token, http, upload.json()["id"], inputs, deadline=deadline))
    return users


def stream(
    users: list[User], seconds: float, runs_every: int = 4, while_alive: threading.Thread | None = None
) -> None:
    """Every user submits (mostly image tasks, every `runs_every`-th a workflow run) for `seconds`, and
    on while `while_alive` (the fault thread) runs, and at least `runs_every` times."""

    def one(user: User) -> None:
        end = time.monotonic() + seconds
        count = 0
        while (
            time.monotonic() < end
            or (while_alive is not None and while_alive.is_alive())
            or count < runs_every
        ):
            count += 1
            if count % runs_every == 0:
                user.start_run()
            else:
                user.submit_task()
            time.sleep(random.uniform(0.05, 0.3))

    threads = [threading.Thread(target=one, args=(user,)) for user in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


# -- faults ----------------------------------------------------------------------------------------
def child_pid(stack: Stack, name: str) -> int:
    """The launcher's child named `name`: a service, "worker" or "gateway", and on the cluster shape
    "<name>-2" for a second replica (the launcher's ATELIER_INSTANCE)."""
    assert stack.process is not None
    for child in psutil.Process(stack.process.pid).children():
        try:
            if child.environ().get("ATELIER_INSTANCE") == name:
                pid: int = child.pid
                return pid
        except psutil.NoSuchProcess:
            continue
    raise AssertionError(f"no running {name} under the launcher")


def kill(stack: Stack, name: str) -> int:
    pid = child_pid(stack, name)
    psutil.Process(pid).kill()
    return pid


def wait_restarted(stack: Stack, name: str, old_pid: int, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if child_pid(stack, name) != old_pid:
                return
        except AssertionError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{name} was not restarted")


def wait_ready(stack: Stack, timeout: float = 90) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if all(ready(ops) for ops in stack.ops_urls):
            return
        time.sleep(0.3)
    raise AssertionError("the stack did not become ready again")


def drop_connections(stack: Stack) -> int:
    server = stack.env["DATABASE_URL"]
    from kit.db import libpq_dsn

    with psycopg.connect(libpq_dsn(server), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname LIKE %s AND pid <> pg_backend_pid()",
            (f"{stack.prefix}%",),
        ).fetchall()
    return len(rows)


# -- the checks ------------------------------------------------------------------------------------
def settle(users: list[User], timeout: float = 150, stack: Stack | None = None) -> None:
    """Wait until every task and run of every user is terminal and nothing is held any more."""
    end = time.monotonic() + timeout
    pending: list[str] = []
    done: set[str] = set()  # terminal stays terminal: ask about the others only
    while time.monotonic() < end:
        pending = []
        for user in users:
            for kind, ids, path in (
                ("task", user.tasks, "/v1/tasks"),
                ("run", user.runs, "/v1/workflow-runs"),
            ):
                for item in ids:
                    if item in done:
                        continue
                    status = request(user.http, "GET", f"{path}/{item}").json()["status"]
                    if status in TERMINAL:
                        done.add(item)
                    else:
                        pending.append(f"{kind} {item} {status}")
            if not pending and request(user.http, "GET", "/v1/billing/balance").json()["held"] != "0":
                pending.append("held credits")
        if not pending:
            return
        time.sleep(1)
    holds: list[Any] = []
    if stack is not None:
        with psycopg.connect(stack.database("ledger")) as ledger:
            holds = ledger.execute(
                "SELECT id, reference_id, created_at FROM transfers"
                " WHERE kind = 'hold' AND status = 'pending'"
            ).fetchall()
    known = {task for user in users for task in user.tasks}
    raise AssertionError(
        f"not terminal after {timeout} s: {pending[:10]}; pending holds (reference, known task): "
        f"{[(h[0], h[1], h[1] in known, str(h[2])) for h in holds]}"
    )


def check_money(stack: Stack, users: list[User]) -> dict[str, int]:
    """Every failed task uncharged (its hold released), one capture per succeeded task, one debit per
    run, refunds as the run says, balances exact; then the reconcile command passes."""
    counts = {"succeeded": 0, "failed": 0, "canceled": 0, "runs": 0}
    with psycopg.connect(stack.database("ledger")) as ledger:

        def transfers(reference: str) -> list[tuple[str, str, int]]:
            rows = ledger.execute(
                "SELECT kind, status, amount FROM transfers WHERE reference_id = %s ORDER BY seq",
                (reference,),
            ).fetchall()
            return [(str(k), str(s), int(a)) for k, s, a in rows]

        for user in users:
            assert not user.errors, user.errors
            spent = Decimal(0)
            for task_id in set(user.tasks):
                task = request(user.http, "GET", f"/v1/tasks/{task_id}").json()
                counts[task["status"]] += 1
                rows = transfers(task_id)
                holds = [r for r in rows if r[0] == "hold"]
                captures = [r for r in rows if r[0] == "capture"]
                # One hold, unless a submission held and then lost its connection before recording
                # the task: it released that hold, and the client's retry (same Idempotency-Key) held
                # afresh. Only the last hold can be charged.
                assert holds, (task_id, rows)
                assert all(h[1] == "voided" for h in holds[:-1]), (task_id, rows)
                if task["status"] == "succeeded":
                    assert [c[1] for c in captures] == ["posted"], (task_id, rows)
                    assert Decimal(captures[0][2]) / 1000 == Decimal(task["price"]), (task, rows)
                    assert holds[-1][1] == "posted", (task_id, rows)
                    spent += Decimal(task["price"])
                else:
                    assert captures == [], (task_id, task["status"], rows)
                    assert holds[-1][1] == "voided", (task_id, task["status"], rows)
            for run_id in set(user.runs):
                run = request(user.http, "GET", f"/v1/workflow-runs/{run_id}").json()
                counts["runs"] += 1
                rows = transfers(run_id)
                debits = [r for r in rows if r[0] == "debit"]
                refunds = [r for r in rows if r[0] == "refund"]
                assert [d[1] for d in debits] == ["posted"], (run_id, rows)
                assert Decimal(debits[0][2]) / 1000 == Decimal(run["price"]), (run, rows)
                assert len(refunds) <= 1, (run_id, rows)
                refunded = Decimal(refunds[0][2]) / 1000 if refunds else Decimal(0)
                assert refunded == Decimal(run["refund_amount"]), (run_id, run["status"], rows)
                spent += Decimal(run["price"]) - refunded
            balance = request(user.http, "GET", "/v1/billing/balance").json()
            assert balance["held"] == "0", balance
            assert Decimal(balance["available"]) == RECHARGE_CREDITS - spent, (balance, spent)
    result = stack.reconcile()
    assert result.returncode == 0, result.stdout + result.stderr
    return counts
