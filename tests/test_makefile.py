"""`make browser` waits for another apt process instead of failing `make test` (issue 16, item 16).

The recipe runs against a stand-in `apt-get` that answers as apt 2.6 does while another process holds
the lists lock: `apt-get update` fails at once with "Could not get lock" whatever DPkg::Lock::Timeout says.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.repository_bounds import ROOT

FAKE_APT = """#!/bin/sh
echo "$*" >> "{log}"
case "$*" in
  *update*)
    count=$(cat "{counter}" 2>/dev/null || echo 0); echo $((count + 1)) > "{counter}"
    if [ "$count" -lt "{locked_updates}" ]; then
      echo "{error}" >&2; exit 100
    fi;;
esac
exit 0
"""
LOCKED = "E: Could not get lock /var/lib/apt/lists/lock. It is held by process 4242 (apt-get)"


def make_browser(
    tmp_path: Path, *, locked_updates: int, error: str = LOCKED, wait: int = 30
) -> tuple[int, list[str]]:
    log, counter, apt = tmp_path / "apt.log", tmp_path / "count", tmp_path / "apt-get"
    apt.write_text(FAKE_APT.format(log=log, counter=counter, locked_updates=locked_updates, error=error))
    apt.chmod(0o755)
    done = subprocess.run(
        [
            "make",
            "--no-print-directory",
            "browser",
            f"CHROMIUM={tmp_path / 'no-chromium'}",
            f"APT_GET={apt}",
            f"APT_WAIT={wait}",
            "APT_POLL=0.1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "MAKEFLAGS": ""},
    )
    return done.returncode, log.read_text().splitlines() if log.exists() else []


def test_browser_waits_while_another_apt_process_holds_the_lock(tmp_path: Path) -> None:
    status, calls = make_browser(tmp_path, locked_updates=3)
    assert status == 0
    assert [call.split()[-1] for call in calls[:4]] == ["update"] * 4
    install = calls[4]
    assert install.endswith("install -y --no-install-recommends chromium fonts-wqy-zenhei")
    assert "DPkg::Lock::Timeout=30" in install  # dpkg's own lock: apt waits for it itself
    assert len(calls) == 5


def test_browser_fails_at_once_on_any_other_apt_error(tmp_path: Path) -> None:
    status, calls = make_browser(tmp_path, locked_updates=99, error="E: Failed to fetch the package lists")
    assert status != 0
    assert len(calls) == 1


def test_browser_gives_up_once_the_wait_is_spent(tmp_path: Path) -> None:
    status, calls = make_browser(tmp_path, locked_updates=10_000, wait=1)
    assert status != 0
    assert 2 <= len(calls) < 100
    assert not any("install" in call for call in calls)


@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="needs the real browser installed")
def test_browser_does_nothing_where_the_browser_is_installed(tmp_path: Path) -> None:
    apt = tmp_path / "apt-get"
    apt.write_text("#!/bin/sh\nexit 1\n")
    apt.chmod(0o755)
    done = subprocess.run(["make", "browser", f"APT_GET={apt}"], cwd=ROOT, capture_output=True, timeout=60)
    assert done.returncode == 0
