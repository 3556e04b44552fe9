"""The workflow's domain metrics (Prometheus)."""

from __future__ import annotations

from prometheus_client import Counter

RUNS_STARTED = Counter("atelier_workflow_runs_started_total", "Runs debited and started", ["template"])
RUNS_COMPLETED = Counter(
    "atelier_workflow_runs_completed_total", "Runs that reached a final status", ["template", "status"]
)
REFUNDED_MILLI = Counter(
    "atelier_workflow_refunded_millicredits_total",
    "Milli-credits refunded for failed or canceled runs",
    ["template"],
)
RESUMED = Counter("atelier_workflow_runs_resumed_total", "Runs picked up by the resume loop")
