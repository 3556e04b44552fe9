"""Schemathesis against the gateway's /openapi.json with a valid user token: no 5xx and every response
that the schema documents matches it.

Checks: `not_a_server_error` and `response_schema_conformance`. Left out: status-code conformance (the
schema documents success bodies; 401/403/404/409 problems are documented once in docs/, not per route).
Excluded operations, where random input is meaningless or destructive to the test's own session: the
payment callbacks and the sandbox payer (signed by providers), the server-sent event streams (/v1/events
and Copy Studio messages), signed file links, and logout (it ends the token the fuzzer uses).
"""

from __future__ import annotations

import os
from typing import Any, TypeAlias

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.schemas import APIOperation
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.e2e.stack import Stack
from tests.hostile.conftest import Owned

pytestmark = pytest.mark.slow
EXAMPLES = 60 if os.environ.get("ATELIER_FAULTS_FULL") == "1" else 3
EXCLUDED_PREFIXES = ("/callbacks/", "/sandbox/", "/v1/events", "/v1/files/", "/v1/auth/logout")
# What `get_all_operations` yields: the library leaves the operation's type parameters open.
Operation: TypeAlias = APIOperation[Any, Any, Any, Any]
EXCLUDED = {("POST", "/v1/copy/conversations/{conversation_id}/messages")}


def test_fuzzed_requests_get_no_5xx_and_match_the_schema(stack: Stack, alice: Owned) -> None:
    schema = schemathesis.openapi.from_url(f"{stack.base_url}/openapi.json")
    operations = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise result.err()
        operation = result.ok()
        if (
            operation.path.startswith(EXCLUDED_PREFIXES)
            or (operation.method.upper(), operation.path) in EXCLUDED
        ):
            continue
        operations.append(operation)
    assert len(operations) > 50
    headers = {"Authorization": f"Bearer {alice.token}"}
    failures: list[str] = []
    for operation in operations:

        @given(case=operation.as_strategy(), key=st.uuids())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case: schemathesis.Case[Operation], key: object) -> None:
            response = case.call(
                base_url=stack.base_url, headers=headers | {"Idempotency-Key": str(key)}, timeout=30
            )
            case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])

        try:
            fuzz()
        except Exception as exc:  # collect every operation's first failure, then fail once
            failures.append(f"{operation.method.upper()} {operation.path}: {str(exc)[:600]}")
    assert not failures, "\n\n".join(failures)
