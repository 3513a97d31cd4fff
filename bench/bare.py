"""The baselines the probe is measured against, each run in its own process.

`python -m bench.bare PORT`: a bare aiohttp handler (no database at all).
`python -m bench.bare PORT URL`: kata-context's original health endpoint, one `SELECT 1` per
request through a connection pool, answering the same JSON shape.
"""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
from aiohttp import web

POOL: web.AppKey[asyncpg.Pool] = web.AppKey("pool", asyncpg.Pool)


async def bare(request: web.Request) -> web.Response:
    return web.json_response({"status": "healthy"})


async def query_per_request(request: web.Request) -> web.Response:
    started = time.perf_counter()
    try:
        await request.app[POOL].fetchval("SELECT 1")
    except Exception:  # the original answered 503 on any database error
        return web.json_response({"status": "unhealthy"}, status=503)
    return web.json_response(
        {
            "status": "healthy",
            "timestamp": datetime.now(UTC).isoformat(),
            "checks": {
                "database": {
                    "status": "connected",
                    "latencyMs": round((time.perf_counter() - started) * 1000, 3),
                }
            },
        }
    )


def create_app(url: str | None) -> web.Application:
    app = web.Application()
    if url is None:
        app.router.add_get("/", bare)
        return app

    async def pool_ctx(app: web.Application) -> AsyncIterator[None]:
        app[POOL] = await asyncpg.create_pool(url, min_size=1, max_size=10)
        yield
        await app[POOL].close()

    app.cleanup_ctx.append(pool_ctx)
    app.router.add_get("/", query_per_request)
    return app


if __name__ == "__main__":
    web.run_app(
        create_app(sys.argv[2] if len(sys.argv) > 2 else None),
        host="127.0.0.1",
        port=int(sys.argv[1]),
        print=None,
        access_log=None,
    )
