"""Write Hostel services for WASI 0.3 in Python: `async def` handlers, the host's pools as
async calls a handler may await several of at once (`asyncio.gather`).

    import hostel_service

    async def hello(req: hostel_service.Request) -> hostel_service.Response:
        return hostel_service.Response.text(200, f"Hello from Hostel! You asked for {req.path}\\n")

    Handler = hostel_service.service(hello)

A module that defines `Handler` is built as a WASI 0.3 `wasi:http/service` component by
`hostel build`. The pools: `hostel_service.redis` and `hostel_service.pg` (async),
`hostel_service.fetch` (outbound HTTP, async); the key-value stores and variables are the WASI
0.2 SDK's own `hostel.kv` and `hostel.config` (their calls are synchronous in both).
"""

import json
import sys
import traceback
from typing import Any, Awaitable, Callable, List, Optional, Tuple, Union

import componentize_py_async_support
import wit_world
from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.imports import wasi_http_types as http

from hostel.errors import HostError

__all__ = ["HostError", "Request", "Response", "service", "spawn"]

_READ_CHUNK = 64 * 1024


def spawn(coroutine: Awaitable[Any]) -> None:
    """Runs a task of the guest's own beside the handler; the host keeps the sandbox until the
    last task ends, within the request's deadline."""
    componentize_py_async_support.spawn(coroutine)


def _method(method: http.Method) -> str:
    if isinstance(method, http.Method_Other):
        return method.value
    return type(method).__name__.split("_", 1)[1].upper()


async def read_all(stream: Any, trailers: Any) -> bytes:
    """A body's bytes, read to its end; the host's error on the body is raised."""
    chunks = []
    with stream:
        while True:
            chunk = await stream.read(_READ_CHUNK)
            if not chunk:
                break
            chunks.append(chunk)
    outcome = await trailers.read()
    if isinstance(outcome, Err):
        raise HostError("http", repr(outcome.value))
    return b"".join(chunks)


def _done() -> Any:
    """The future a body's reader gives the host: whether it read the body (dropped: yes)."""
    return wit_world.result_unit_wasi_http_types_error_code_future(lambda: Ok(None))


class Request:
    """An incoming request: `method`, `path`, `query`, `headers` (lower-case names), and the
    body, read with `await req.body()`."""

    def __init__(self, request: http.Request):
        self.method = _method(request.get_method())
        target = request.get_path_with_query() or "/"
        self.path, _, self.query = target.partition("?")
        self.headers: List[Tuple[str, bytes]] = request.get_headers().copy_all()
        self._request: Optional[http.Request] = request

    def header(self, name: str) -> Optional[str]:
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value.decode(errors="replace")
        return None

    async def body(self) -> bytes:
        """The whole body (the host has already refused one over the tenant's limit)."""
        if self._request is None:
            return b""
        request, self._request = self._request, None
        done_tx, done_rx = _done()
        stream, trailers = http.Request.consume_body(request, done_rx)
        try:
            return await read_all(stream, trailers)
        finally:
            done_tx.__exit__(None, None, None)

    async def json(self) -> Any:
        return json.loads(await self.body())


class Response:
    """A response: status, headers and a body given whole."""

    def __init__(self, status: int = 200, body: Union[bytes, str] = b"",
                 headers: Optional[List[Tuple[str, str]]] = None):
        self.status = status
        self.body = body.encode() if isinstance(body, str) else body
        self.headers = list(headers or [])

    @classmethod
    def text(cls, status: int, text: str) -> "Response":
        return cls(status, text, [("content-type", "text/plain; charset=utf-8")])

    @classmethod
    def json(cls, status: int, value: Any) -> "Response":
        return cls(status, json.dumps(value, separators=(",", ":")) + "\n",
                   [("content-type", "application/json")])

    def header(self, name: str, value: str) -> "Response":
        self.headers.append((name, value))
        return self

    def _wasi(self) -> http.Response:
        fields = [(name, value.encode()) for name, value in self.headers]
        fields.append(("content-length", str(len(self.body)).encode()))
        body_tx, body_rx = wit_world.byte_stream()
        trailers_tx, trailers_rx = \
            wit_world.result_option_wasi_http_types_fields_wasi_http_types_error_code_future(
                lambda: Ok(None))
        response, _ = http.Response.new(http.Fields.from_list(fields), body_rx, trailers_rx)
        response.set_status_code(self.status)
        body = self.body

        async def write() -> None:
            with body_tx:
                if body:
                    await body_tx.write_all(body)
            await trailers_tx.write(Ok(None))

        spawn(write())
        return response


Handler = Callable[[Request], Awaitable[Response]]


def service(fn: Handler) -> type:
    """Turns `async fn(Request) -> Response` into the `Handler` class componentize-py exports
    as `wasi:http/handler`. An exception becomes a 500 whose body names it (and its traceback
    goes to the host's log)."""

    class Service(exports.Handler):
        async def handle(self, request: http.Request) -> http.Response:
            try:
                response = await fn(Request(request))
            except Exception as e:  # noqa: BLE001 - every failure is the guest's 500
                traceback.print_exc(file=sys.stderr)
                response = Response.text(500, f"the handler raised {type(e).__name__}: {e}\n")
            return response._wasi()

    return Service
