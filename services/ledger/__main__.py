"""`python -m services.ledger [serve|migrate|reconcile]`"""

from __future__ import annotations

from sqlalchemy.exc import OperationalError

from atelier.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from kit.db import Database
from kit.grpc_server import GrpcServer
from kit.outbox import Outbox
from kit.service import Runtime, ServiceDefinition, main
from services.ledger.events import Consumers
from services.ledger.models import metadata, outbox
from services.ledger.service import Ledger
from services.ledger.servicer import LedgerServicer
from services.ledger.settings import LedgerSettings
from services.ledger.sweeper import sweep


async def setup(runtime: Runtime[LedgerSettings], server: GrpcServer) -> None:
    ledger = Ledger(runtime.outbox or Outbox(outbox))
    servicer = LedgerServicer(runtime, ledger)
    ledger_pb2_grpc.add_LedgerServiceServicer_to_server(servicer, server.server)
    server.add(ledger_pb2.DESCRIPTOR.services_by_name["LedgerService"].full_name)
    Consumers(runtime, ledger).spawn()
    runtime.spawn(sweep(runtime, ledger, interval=runtime.settings.sweep_interval_seconds))


async def reconcile(settings: LedgerSettings, argv: list[str]) -> int:
    """Prints every violated invariant; exit status 1 when there is any."""
    db = Database(settings.database_url, application_name="atelier-ledger-reconcile")
    try:
        async with db.transaction() as session:
            report = await Ledger(Outbox(outbox)).reconcile(session, expiry_grace=settings.expiry_grace())
    except OperationalError as exc:
        print(f"cannot reach the ledger database: {exc.orig}")  # noqa: T201
        return 2
    finally:
        await db.dispose()
    for violation in report.violations:
        print(f"VIOLATION {violation.invariant} {violation.subject}: {violation.detail}")  # noqa: T201
    print(  # noqa: T201
        f"checked {report.accounts_checked} accounts, {report.transfers_checked} transfers, "
        f"{report.orders_checked} orders: {len(report.violations)} violation(s)"
    )
    return 1 if report.violations else 0


DEFINITION = ServiceDefinition("ledger", LedgerSettings, metadata, setup, commands={"reconcile": reconcile})

if __name__ == "__main__":
    main(DEFINITION)
