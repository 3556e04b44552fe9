"""`python -m services.accounts [serve|migrate]` and `python -m services.accounts create-admin --email ...`"""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import sys

from atelier.accounts.v1 import accounts_pb2, accounts_pb2_grpc
from kit.db import Database
from kit.errors import DomainError
from kit.grpc_server import GrpcServer
from kit.service import Runtime, ServiceDefinition, main, migrate
from services.accounts.credentials import Passwords
from services.accounts.mailer import MailQueue, transport_for
from services.accounts.models import metadata
from services.accounts.service import AccountsService
from services.accounts.servicer import AccountsServicer
from services.accounts.settings import AccountsSettings

log = logging.getLogger("services.accounts")


def build_service(settings: AccountsSettings) -> AccountsService:
    return AccountsService(
        settings,
        Passwords(
            time_cost=settings.argon2_time_cost,
            memory_kib=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
            max_concurrent=settings.argon2_max_concurrent,
        ),
    )


def build_mail_queue(settings: AccountsSettings) -> MailQueue:
    return MailQueue(
        transport_for(settings),
        sender=settings.mail_from,
        ttl_hours=settings.email_token_ttl_seconds // 3600,
    )


async def bootstrap_admin(db: Database, service: AccountsService, settings: AccountsSettings) -> None:
    """Ensure the first admin from ATELIER_ADMIN_EMAIL / ATELIER_ADMIN_PASSWORD, when both are set."""
    password = settings.admin_password.get_secret_value()
    if not settings.admin_email or not password:
        return
    async with db.transaction() as session:
        user, created = await service.ensure_admin(
            session, email=settings.admin_email, password=password, locale="en"
        )
    log.info("admin %s", "created" if created else "present", extra={"user_id": str(user.id)})


async def setup(runtime: Runtime[AccountsSettings], server: GrpcServer) -> None:
    settings = runtime.settings
    service = build_service(settings)
    mail = build_mail_queue(settings)
    runtime.spawn(mail.run(runtime.stop))
    await bootstrap_admin(runtime.db, service, settings)
    servicer = AccountsServicer(runtime.db, service, mail)
    accounts_pb2_grpc.add_AccountsServiceServicer_to_server(servicer, server.server)
    server.add(accounts_pb2.DESCRIPTOR.services_by_name["AccountsService"].full_name)


async def create_admin(settings: AccountsSettings, argv: list[str]) -> None:
    """Create (or promote and activate) an admin. The password comes from --password-stdin,
    ATELIER_ADMIN_PASSWORD, or a prompt — never from the command line, where `ps` would show it."""
    parser = argparse.ArgumentParser(prog="python -m services.accounts create-admin")
    parser.add_argument("--email", required=True)
    parser.add_argument("--locale", default="en", choices=["en", "zh"])
    parser.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    args = parser.parse_args(argv)
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = os.environ.get("ATELIER_ADMIN_PASSWORD") or getpass.getpass("Password (if new): ")
    await migrate(DEFINITION, settings)
    db = Database(settings.database_url, application_name="atelier-accounts-cli")
    try:
        async with db.transaction() as session:
            user, created = await build_service(settings).ensure_admin(
                session, email=args.email, password=password, locale=args.locale
            )
    except DomainError as exc:
        raise SystemExit(f"create-admin: {exc.message} ({exc.code})") from None
    finally:
        await db.dispose()
    sys.stdout.write(f"admin {user.email} {'created' if created else 'promoted/present'} (id {user.id})\n")


DEFINITION = ServiceDefinition(
    "accounts", AccountsSettings, metadata, setup, commands={"create-admin": create_admin}
)

if __name__ == "__main__":
    main(DEFINITION)
