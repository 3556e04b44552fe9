"""Where the tests find PostgreSQL and NATS: the servers already running (CI: 127.0.0.1:5432 and :4222),
or embedded ones started for this run. Each run gets its own databases and NATS namespace."""

from __future__ import annotations

import os
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from devkit.embedded import EmbeddedNats, EmbeddedPostgres, free_port, port_open


@dataclass
class Infra:
    database_server: str
    nats_url: str
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    _embedded: list[EmbeddedPostgres | EmbeddedNats] = field(default_factory=list)

    @property
    def namespace(self) -> str:
        return f"t{self.run_id}"

    def database_name(self, service: str) -> str:
        return f"t{self.run_id}_{service}"

    def stop(self) -> None:
        for server in reversed(self._embedded):
            server.stop()


def start_infra() -> Infra:
    embedded: list[EmbeddedPostgres | EmbeddedNats] = []
    scratch = Path(tempfile.mkdtemp(prefix="atelier-test-"))
    database_server = os.environ.get("ATELIER_TEST_DATABASE_URL")
    if not database_server:
        if port_open("127.0.0.1", 5432):
            database_server = "postgresql://postgres@127.0.0.1:5432/postgres"
        else:
            postgres = EmbeddedPostgres(scratch / "postgres")
            database_server = postgres.start()
            embedded.append(postgres)
    nats_url = os.environ.get("ATELIER_TEST_NATS_URL")
    if not nats_url:
        if port_open("127.0.0.1", 4222):
            nats_url = "nats://127.0.0.1:4222"
        else:
            nats = EmbeddedNats(scratch / "nats", free_port(), scratch / "nats.log")
            nats_url = nats.start()
            embedded.append(nats)
    return Infra(database_server, nats_url, _embedded=embedded)
