"""Benchmark peer: the redis-counter endpoint in aiohttp on uvloop, the way aiohttp users are
told to hold Redis: one `redis.asyncio` pool made in `on_startup`, kept on the application,
closed in `on_cleanup`. Usage: aiohttp_redis_counter.py PORT REDIS_URL"""

import sys

import redis.asyncio as aioredis
import uvloop
from aiohttp import web

REDIS = web.AppKey("redis", aioredis.Redis)


async def hits(request: web.Request) -> web.Response:
    try:
        n = await request.app[REDIS].incr(f"aiohttp:hits:{request.path}")
    except aioredis.RedisError as e:
        return web.Response(status=503, text=f"Redis unavailable: {e}\n")
    return web.Response(text=f"{n}\n")


def main() -> None:
    port, url = int(sys.argv[1]), sys.argv[2]
    app = web.Application()

    async def on_startup(app: web.Application) -> None:
        app[REDIS] = aioredis.from_url(url, max_connections=256)

    async def on_cleanup(app: web.Application) -> None:
        await app[REDIS].aclose()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    app.router.add_get("/{tail:.*}", hits)
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main()
