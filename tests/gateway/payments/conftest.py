from __future__ import annotations

import pytest

from gateway.payments.settings import PaymentSettings
from tests.gateway.payments.signers import Keys


@pytest.fixture(scope="session")
def keys() -> Keys:
    return Keys()


@pytest.fixture(scope="session")
def payment_settings(keys: Keys) -> PaymentSettings:
    return keys.settings()
