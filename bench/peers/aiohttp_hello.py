"""Benchmark peer: the hello answer from aiohttp on uvloop (no sandbox). Usage: aiohttp_hello.py PORT"""

import sys

import uvloop
from aiohttp import web


async def hello(request: web.Request) -> web.Response:
    return web.Response(text=f"Hello from Hostel! You asked for {request.path}\n")


def main() -> None:
    port = int(sys.argv[1])
    app = web.Application()
    app.router.add_get("/{tail:.*}", hello)
    uvloop.install()
    print(f"aiohttp listening on http://127.0.0.1:{port}", flush=True)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main()
