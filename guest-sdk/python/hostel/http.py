"""Requests, responses and the `wasi:http/incoming-handler` export."""

import json
import sys
import traceback
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.imports import streams, types

# Imported here so that they are part of the pre-initialised snapshot rather than imported
# again by every request's fresh instance: componentize-py's runtime imports `random` (to
# reseed it) and the wall-clock binding on the first call into an instance, and the
# `weakref.finalize` behind resource handles imports `atexit`. Together ~10% of a hello.
import atexit  # noqa: E402,F401
import random  # noqa: E402,F401
from wit_world.imports import wall_clock  # noqa: E402,F401

# wasi:io streams take at most this much per blocking write.
CHUNK = 4096


def method_name(method: types.Method) -> str:
    """`Method_Get()` → "GET"; `Method_Other("PURGE")` → "PURGE"."""
    if isinstance(method, types.Method_Other):
        return method.value
    return type(method).__name__.split("_", 1)[1].upper()


def read_all(stream: streams.InputStream) -> bytes:
    """Reads a wasi:io input stream to its end."""
    parts = []
    while True:
        try:
            parts.append(stream.blocking_read(65536))
        except Err as e:
            if isinstance(e.value, streams.StreamError_Closed):
                return b"".join(parts)
            raise


def write_all(body: types.OutgoingBody, data: bytes) -> None:
    """Writes `data` to an outgoing body and finishes it."""
    with body.write() as stream:
        for start in range(0, len(data), CHUNK):
            stream.blocking_write_and_flush(data[start : start + CHUNK])
    types.OutgoingBody.finish(body, None)


class Request:
    """An incoming request: method, path, query, headers (lower-case names) and body."""

    def __init__(self, request: types.IncomingRequest):
        self._request = request
        self.method: str = method_name(request.method())
        self.path_with_query: str = request.path_with_query() or "/"
        self.path, _, query = self.path_with_query.partition("?")
        self.query: Optional[str] = query if "?" in self.path_with_query else None
        self.headers: Dict[str, List[bytes]] = {}
        for name, value in request.headers().entries():
            self.headers.setdefault(name.lower(), []).append(value)
        self._body: Optional[bytes] = None

    def header(self, name: str) -> Optional[str]:
        """The first value of a header, as text."""
        values = self.headers.get(name.lower())
        return values[0].decode("latin-1") if values else None

    def body(self) -> bytes:
        """The whole body (read once, then kept)."""
        if self._body is None:
            incoming = self._request.consume()
            with incoming.stream() as stream:
                self._body = read_all(stream)
            types.IncomingBody.finish(incoming)
        return self._body

    def json(self) -> Any:
        return json.loads(self.body())


class Response:
    """A response: status, headers and a body of bytes."""

    def __init__(self, status: int = 200, body: Union[bytes, str] = b"",
                 headers: Optional[List[Tuple[str, str]]] = None):
        self.status = status
        self.body = body.encode() if isinstance(body, str) else body
        self.headers: List[Tuple[str, str]] = list(headers or [])

    @classmethod
    def text(cls, status: int, text: str) -> "Response":
        return cls(status, text, [("content-type", "text/plain; charset=utf-8")])

    @classmethod
    def json(cls, status: int, value: Any) -> "Response":
        body = json.dumps(value, separators=(",", ":"), ensure_ascii=False) + "\n"
        return cls(status, body, [("content-type", "application/json")])

    def header(self, name: str, value: str) -> "Response":
        self.headers.append((name, value))
        return self

    def _send(self, response_out: types.ResponseOutparam) -> None:
        fields = types.Fields.from_list([(k, v.encode()) for k, v in self.headers])
        response = types.OutgoingResponse(fields)
        response.set_status_code(self.status)
        body = response.body()
        types.ResponseOutparam.set(response_out, Ok(response))
        write_all(body, self.body)


Handler = Callable[[Request], Response]


def handler(fn: Handler) -> type:
    """Turns `fn(Request) -> Response` into the `IncomingHandler` class componentize-py
    exports: `IncomingHandler = hostel.handler(fn)` at the top of the app module. An exception
    in `fn` becomes a 500 naming it (the traceback goes to stderr, the host's log)."""

    class IncomingHandler(exports.IncomingHandler):
        def handle(self, request: types.IncomingRequest,
                   response_out: types.ResponseOutparam) -> None:
            try:
                response = fn(Request(request))
            except Exception as e:  # the guest's bug: report it, do not trap
                traceback.print_exc(file=sys.stderr)
                response = Response.text(500, f"handler failed: {type(e).__name__}: {e}\n")
            response._send(response_out)

    return IncomingHandler
