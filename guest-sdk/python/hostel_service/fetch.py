"""Outbound HTTP through the tenant's pooled client (`wasi:http/client@0.3`).

    reply = await hostel_service.fetch.get("https://api.example.com/items")
    replies = await hostel_service.fetch.get_all(urls)   # awaited together: as slow as the slowest

Only hosts granted in the config (`grants.outbound`) can be reached; others fail at once.
"""

import asyncio
from typing import List, Union
from urllib.parse import urlsplit

import wit_world
from componentize_py_types import Err, Ok
from wit_world.imports import client
from wit_world.imports import wasi_http_types as http

from hostel.errors import HostError
from hostel.reply import Reply

from . import _done, read_all




async def get(url: str) -> Reply:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise HostError("invalid-url", url)
    trailers_tx, trailers_rx = \
        wit_world.result_option_wasi_http_types_fields_wasi_http_types_error_code_future(
            lambda: Ok(None))
    request, _ = http.Request.new(http.Fields.from_list([]), None, trailers_rx, None)
    trailers_tx.__exit__(None, None, None)
    request.set_method(http.Method_Get())
    request.set_scheme(http.Scheme_Https() if parts.scheme == "https" else http.Scheme_Http())
    request.set_authority(parts.netloc)
    request.set_path_with_query(parts.path + (f"?{parts.query}" if parts.query else "") or "/")
    try:
        response = await client.send(request)
    except Err as e:
        raise HostError("http", repr(e.value)) from None
    status = response.get_status_code()
    done_tx, done_rx = _done()
    stream, trailers = http.Response.consume_body(response, done_rx)
    try:
        body = await read_all(stream, trailers)
    except Err as e:
        raise HostError("http", repr(e.value)) from None
    finally:
        done_tx.__exit__(None, None, None)
    return Reply(status, body)


async def get_all(urls: List[str]) -> List[Union[Reply, HostError]]:
    """GETs every URL at once; each answer or its error, in order."""
    replies = await asyncio.gather(*(get(url) for url in urls), return_exceptions=True)
    return [r if isinstance(r, (Reply, HostError)) else HostError("http", repr(r))
            for r in replies]
