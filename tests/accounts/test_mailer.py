"""Mail delivery: the dev outbox writes real .eml files (and logs the file, never the link), the
queue retries a failing server, and the `create-admin` command works beside serve/migrate."""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import os
import subprocess
import sys
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import select

from kit.db import Database
from services.accounts.mailer import Mail, MailQueue, OutboxMailer, compose, transport_for
from services.accounts.models import users
from services.accounts.settings import AccountsSettings
from tests.accounts.stack import new_email
from tests.conftest import MigratedDatabase

ROOT = Path(__file__).resolve().parents[2]
LINK = "http://127.0.0.1:8000/v1/auth/verify-email/Zx9-secret-token-value"


async def deliver(queue: MailQueue, *mails: Mail) -> None:
    stop = asyncio.Event()
    runner = asyncio.create_task(queue.run(stop))
    for mail in mails:
        queue.submit(mail)
    stop.set()  # the queue drains what it accepted before stopping
    await asyncio.wait_for(runner, 10)


@pytest.mark.parametrize("environment", ["development", "test"])
async def test_outbox_writes_eml_and_never_logs_the_link(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, environment: str
) -> None:
    caplog.set_level(logging.INFO)
    settings = AccountsSettings(environment=environment, home=tmp_path)
    transport = transport_for(settings)
    assert isinstance(transport, OutboxMailer)
    queue = MailQueue(transport, sender=settings.mail_from, ttl_hours=24)
    await deliver(queue, Mail(to="ada@example.com", kind="verify_email", locale="zh", link=LINK))

    files = list((tmp_path / "mail").glob("*.eml"))
    assert len(files) == 1
    message = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    assert message["To"] == "ada@example.com"
    assert message["Subject"] == "验证你的 Atelier 邮箱"
    assert LINK in message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    logged = "\n".join(f"{record.getMessage()} {record.__dict__}" for record in caplog.records)
    assert "mail written" in logged
    assert any(getattr(record, "path", "") == str(files[0]) for record in caplog.records), "names the file"
    assert LINK not in logged, "the link carries a token: not even in development"


def test_both_languages_for_both_mails() -> None:
    for kind in ("verify_email", "reset_password"):
        subjects = {
            compose(Mail("a@example.com", kind, locale, LINK), "Atelier <no-reply@x>", 24)["Subject"]
            for locale in ("zh", "en", "fr")
        }
        assert len(subjects) == 2  # zh, en; anything else falls back to en


def test_production_refuses_the_dev_outbox() -> None:
    with pytest.raises(ValueError, match="smtp"):
        AccountsSettings(environment="production", grpc_tls_dir="/run/tls")
    AccountsSettings(environment="production", mail_backend="smtp", grpc_tls_dir="/run/tls")


async def test_a_failing_mail_server_is_retried_then_given_up(caplog: pytest.LogCaptureFixture) -> None:
    attempts: list[str] = []

    class Flaky:
        async def deliver(self, mail: Mail, message: EmailMessage) -> None:
            attempts.append(mail.to)
            if len(attempts) < 3:
                raise ConnectionRefusedError("mail server down")

    await deliver(
        MailQueue(Flaky(), sender="x@y", ttl_hours=24, backoff_seconds=0.01),
        Mail("a@example.com", "verify_email", "en", LINK),
    )
    assert attempts == ["a@example.com"] * 3

    class Down:
        async def deliver(self, mail: Mail, message: EmailMessage) -> None:
            raise ConnectionRefusedError("mail server down")

    caplog.set_level(logging.ERROR)
    await deliver(
        MailQueue(Down(), sender="x@y", ttl_hours=24, attempts=2, backoff_seconds=0.01),
        Mail("b@example.com", "reset_password", "en", LINK),
    )
    assert any("mail delivery failed" in r.getMessage() for r in caplog.records)
    assert all("secret-token" not in str(r.__dict__) for r in caplog.records)


async def test_create_admin_command(migrated_database: MigratedDatabase, tmp_path: Path) -> None:
    url = await migrated_database("accounts")
    admin = new_email("cli-admin")
    env = {
        **os.environ,
        "ATELIER_DATABASE_URL": url,
        "ATELIER_ENVIRONMENT": "test",
        "ATELIER_ARGON2_MEMORY_KIB": "8192",
        "ATELIER_ARGON2_TIME_COST": "1",
        "ATELIER_HOME": str(tmp_path),
    }
    env.pop("ATELIER_ADMIN_PASSWORD", None)
    command = [
        sys.executable,
        "-m",
        "services.accounts",
        "create-admin",
        "--email",
        admin,
        "--password-stdin",
    ]
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(b"a sturdy admin passphrase\n"), 60)
    assert process.returncode == 0, out.decode()
    assert b"created" in out
    assert b"sturdy" not in out

    weak = await asyncio.create_subprocess_exec(
        *command[:-3], "--email", new_email("weak"), "--password-stdin",
        cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    weak_out, _ = await asyncio.wait_for(weak.communicate(b"short\n"), 60)
    assert weak.returncode != 0
    assert b"weak_password" in weak_out
    assert b"Traceback" not in weak_out

    db = Database(url, application_name="atelier-accounts-tests")
    try:
        async with db.session() as session:
            row = (
                await session.execute(select(users.c.role, users.c.status).where(users.c.email == admin))
            ).one()
    finally:
        await db.dispose()
    assert (row.role, row.status) == ("admin", "active")
