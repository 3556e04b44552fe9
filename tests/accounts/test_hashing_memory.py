"""Concurrent registrations and logins keep accounts inside its memory limit.

A child process loads everything the accounts service loads, then runs REGISTRATIONS registrations
and logins at once (half password hashes, half verifies), through the service's own `Passwords` with
the production argon2 memory and parallelism (only `time_cost` is 1: passes cost time, not memory).
Its peak resident memory (`VmHWM`) stays within its idle footprint plus `max_concurrent × memory` —
without the bound it grows with the thread pool, i.e. with the node's cores — and under the pod's
limit.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from services.accounts.credentials import Passwords
from services.accounts.settings import AccountsSettings

ROOT = Path(__file__).resolve().parents[2]
REGISTRATIONS = 12
MIB = 1024 * 1024
# Thread stacks, argon2's own bookkeeping and the allocator's rounding, beyond the hashes' memory.
SLACK_MIB = 48

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc (Linux)")


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise LookupError(field)


async def _registrations_and_logins(passwords: Passwords) -> None:
    stored = await passwords.hash("correct horse battery")
    registrations = [passwords.hash(f"correct horse {i}") for i in range(REGISTRATIONS // 2)]
    logins = [passwords.verify(stored, "correct horse battery") for _ in range(REGISTRATIONS // 2)]
    results = await asyncio.gather(*registrations, *logins)
    assert all(results)


def measure() -> dict[str, int]:
    """Runs in the child: what the process holds idle, at its peak, and the bound it ran with (KiB)."""
    import services.accounts.__main__  # noqa: F401  (the service's whole import footprint)

    settings = AccountsSettings()
    passwords = Passwords(
        time_cost=1,
        memory_kib=settings.argon2_memory_kib,
        parallelism=settings.argon2_parallelism,
        max_concurrent=settings.argon2_max_concurrent,
    )
    idle = _status_kib("VmRSS")
    asyncio.run(_registrations_and_logins(passwords))
    assert passwords.max_concurrent is not None
    return {
        "idle_kib": idle,
        "peak_kib": _status_kib("VmHWM"),
        "memory_kib": settings.argon2_memory_kib,
        "max_concurrent": passwords.max_concurrent,
    }


def accounts_memory_limit() -> int:
    """The accounts container's memory limit in the base manifest, in bytes."""
    manifests = yaml.safe_load_all((ROOT / "deploy" / "k8s" / "base" / "accounts.yaml").read_text())
    deployment = next(m for m in manifests if m["kind"] == "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    limit: str = container["resources"]["limits"]["memory"]
    assert limit.endswith("Mi"), limit
    return int(limit.removesuffix("Mi")) * MIB


def test_peak_memory_under_concurrent_registrations_is_bounded() -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("ATELIER_")}
    result = subprocess.run(
        [sys.executable, "-m", "tests.accounts.test_hashing_memory"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    numbers = json.loads(result.stdout)
    # The production cost: 64 MiB per hash, 4 at once by default.
    assert numbers["memory_kib"] == 64 * 1024
    assert numbers["max_concurrent"] == 4 < REGISTRATIONS
    hashing_kib = numbers["max_concurrent"] * numbers["memory_kib"]
    grown_kib = numbers["peak_kib"] - numbers["idle_kib"]
    assert grown_kib <= hashing_kib + SLACK_MIB * 1024, numbers
    # At least two hashes really overlapped (the measurement can see concurrency at all).
    assert grown_kib > numbers["memory_kib"], numbers
    assert numbers["peak_kib"] * 1024 < accounts_memory_limit(), numbers


if __name__ == "__main__":
    sys.stdout.write(json.dumps(measure()))
