"""Outgoing mail: verification and password-reset messages, in Chinese or English.

Two deliveries:
- `SmtpMailer` (production): the stdlib `smtplib` in a worker thread, with STARTTLS or implicit TLS and
  credentials from settings.
- `OutboxMailer` (the embedded default): writes each message as an `.eml` file under
  `$ATELIER_HOME/mail/`; in development only it also logs the link, so a person running the product
  locally can verify an account without a mail server.

`MailQueue` sends after the request's transaction has committed, in the background with retries:
a slow or failing mail server neither delays nor fails the RPC, and response time does not reveal
whether an address has an account. Tokens are never logged (outside development's outbox link).
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Literal, Protocol

from services.accounts.settings import AccountsSettings

log = logging.getLogger(__name__)

MailKind = Literal["verify_email", "reset_password"]


@dataclass(frozen=True)
class Mail:
    to: str
    kind: MailKind
    locale: str
    link: str

    def __repr__(self) -> str:  # never show the link (it carries a token) in a traceback or log
        return f"Mail(kind={self.kind!r}, locale={self.locale!r})"


_TEXTS: dict[tuple[MailKind, str], tuple[str, str]] = {
    ("verify_email", "en"): (
        "Verify your Atelier email address",
        "Welcome to Atelier!\n\n"
        "Open this link to verify your email address (it expires in {hours} hours and works once):\n\n"
        "{link}\n\n"
        "If you did not create an account, ignore this message.\n",
    ),
    ("verify_email", "zh"): (
        "验证你的 Atelier 邮箱",
        "欢迎使用 Atelier!\n\n"
        "请打开下面的链接验证你的邮箱地址(链接 {hours} 小时内有效,仅可使用一次):\n\n"
        "{link}\n\n"
        "如果你没有注册账号,请忽略这封邮件。\n",
    ),
    ("reset_password", "en"): (
        "Reset your Atelier password",
        "Someone asked to reset the password of your Atelier account.\n\n"
        "Open this link to choose a new password (it expires in {hours} hours and works once):\n\n"
        "{link}\n\n"
        "Resetting signs you out everywhere. If it was not you, ignore this message.\n",
    ),
    ("reset_password", "zh"): (
        "重置你的 Atelier 密码",
        "有人请求重置你的 Atelier 账号密码。\n\n"
        "请打开下面的链接设置新密码(链接 {hours} 小时内有效,仅可使用一次):\n\n"
        "{link}\n\n"
        "重置后所有设备都会退出登录。如果不是你本人操作,请忽略这封邮件。\n",
    ),
}


def compose(mail: Mail, sender: str, ttl_hours: int) -> EmailMessage:
    locale = mail.locale if mail.locale in ("zh", "en") else "en"
    subject, body = _TEXTS[(mail.kind, locale)]
    message = EmailMessage()
    message["From"] = sender
    message["To"] = mail.to
    message["Subject"] = subject
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = make_msgid(domain="atelier.local")
    message["Content-Language"] = "zh-CN" if locale == "zh" else "en"
    message.set_content(body.format(link=mail.link, hours=ttl_hours))
    return message


class Transport(Protocol):
    async def deliver(self, mail: Mail, message: EmailMessage) -> None: ...


class SmtpMailer:
    def __init__(self, settings: AccountsSettings) -> None:
        self.settings = settings

    async def deliver(self, mail: Mail, message: EmailMessage) -> None:
        await asyncio.to_thread(self._send, message)
        log.info("mail sent", extra={"kind": mail.kind, "via": "smtp"})

    def _send(self, message: EmailMessage) -> None:
        s = self.settings
        context = ssl.create_default_context()
        smtp: smtplib.SMTP
        if s.smtp_ssl:
            smtp = smtplib.SMTP_SSL(s.smtp_host, s.smtp_port, timeout=s.smtp_timeout_seconds, context=context)
        else:
            smtp = smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.smtp_timeout_seconds)
        with smtp:
            smtp.ehlo()
            if s.smtp_starttls and not s.smtp_ssl:
                smtp.starttls(context=context)
                smtp.ehlo()
            if s.smtp_username:
                smtp.login(s.smtp_username, s.smtp_password.get_secret_value())
            smtp.send_message(message)


class OutboxMailer:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def deliver(self, mail: Mail, message: EmailMessage) -> None:
        path = await asyncio.to_thread(self._write, message)
        # The file, never the link: the link carries a token, and no log line carries a secret.
        log.info("mail written to the dev outbox", extra={"kind": mail.kind, "path": str(path)})

    def _write(self, message: EmailMessage) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        path = self.directory / f"{stamp}-{uuid.uuid4().hex[:8]}.eml"
        partial = path.with_suffix(".eml.part")
        partial.write_bytes(message.as_bytes())
        partial.rename(path)  # readers never see half a message
        return path


def transport_for(settings: AccountsSettings) -> Transport:
    if settings.mail_backend == "smtp":
        return SmtpMailer(settings)
    return OutboxMailer(settings.outbox_dir)


class MailQueue:
    """Background delivery after commit, with a few retries. Run `run(stop)` for the process's life."""

    def __init__(
        self,
        transport: Transport,
        *,
        sender: str,
        ttl_hours: int,
        attempts: int = 4,
        backoff_seconds: float = 1.0,
    ) -> None:
        self.transport = transport
        self.sender = sender
        self.ttl_hours = ttl_hours
        self.attempts = attempts
        self.backoff_seconds = backoff_seconds
        self._queue: asyncio.Queue[Mail] = asyncio.Queue()

    def submit(self, mail: Mail) -> None:
        self._queue.put_nowait(mail)

    async def run(self, stop: asyncio.Event) -> None:
        stopping = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                getter = asyncio.create_task(self._queue.get())
                await asyncio.wait([getter, stopping], return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    break
                await self._send(getter.result())
            while not self._queue.empty():  # drain what was accepted before the stop
                await self._send(self._queue.get_nowait())
        finally:
            stopping.cancel()

    async def _send(self, mail: Mail) -> None:
        message = compose(mail, self.sender, self.ttl_hours)
        for attempt in range(1, self.attempts + 1):
            try:
                await self.transport.deliver(mail, message)
                return
            except Exception as exc:  # a mail server failure must never take the service down
                if attempt == self.attempts:
                    log.error(
                        "mail delivery failed; the user can ask for another",
                        extra={"kind": mail.kind, "error": type(exc).__name__},
                    )
                    return
                await asyncio.sleep(self.backoff_seconds * 2 ** (attempt - 1))
