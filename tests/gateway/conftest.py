"""Gateway suites that need the real accounts service behind the app reuse the accounts suite's stack."""

from __future__ import annotations

from tests.accounts.conftest import accounts_stack, api, smtp_inbox

# Fixtures of the accounts suite, reused rather than copied.
__all__ = ["accounts_stack", "api", "smtp_inbox"]
