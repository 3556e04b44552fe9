"""The floor for HTTP benchmarks: a minimal single-process endpoint doing one PostgreSQL transaction per
request (insert a row, read it back), on the same server and through the same load tool as the product.

`python -m bench.floor_server <port> <database-url>`
"""

from __future__ import annotations

import contextlib
import sys
import uuid
from collections.abc import AsyncIterator

import uvicorn
from fastapi import FastAPI
from sqlalchemy import text

from kit.db import Database


def build(database_url: str) -> FastAPI:
    db = Database(database_url, application_name="atelier-bench-floor", pool_size=20, max_overflow=0)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with db.transaction() as session:
            await session.execute(
                text("CREATE TABLE IF NOT EXISTS floor_tasks (id uuid PRIMARY KEY, body text NOT NULL)")
            )
        yield
        await db.dispose()

    app = FastAPI(lifespan=lifespan)

    @app.post("/tasks")
    async def submit() -> dict[str, str]:
        task_id = uuid.uuid4()
        async with db.transaction() as session:
            await session.execute(
                text("INSERT INTO floor_tasks (id, body) VALUES (:id, :body)"), {"id": task_id, "body": "x"}
            )
        return {"id": str(task_id)}

    return app


if __name__ == "__main__":
    uvicorn.run(build(sys.argv[2]), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
