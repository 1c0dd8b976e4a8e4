"""Outbound HTTP through the tenant's pooled client (`wasi:http/outgoing-handler`).

    reply = hostel.fetch.get("https://api.example.com/items")
    replies = hostel.fetch.get_all(urls)   # sent at once: as slow as the slowest

Only hosts granted in the config (`grants.outbound`) can be reached; others fail at once.
"""

from typing import List, Optional, Union
from urllib.parse import urlsplit

from componentize_py_types import Err, Ok
from wit_world.imports import outgoing_handler, types

from .errors import HostError
from .reply import Reply
from .http import read_all




def _start(url: str) -> types.FutureIncomingResponse:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise HostError("invalid-url", url)
    request = types.OutgoingRequest(types.Fields.from_list([]))
    request.set_method(types.Method_Get())
    request.set_scheme(types.Scheme_Https() if parts.scheme == "https" else types.Scheme_Http())
    request.set_authority(parts.netloc)
    request.set_path_with_query(parts.path + (f"?{parts.query}" if parts.query else "") or "/")
    try:
        return outgoing_handler.handle(request, None)
    except Err as e:
        raise HostError("http", repr(e.value)) from None


def _finish(future: types.FutureIncomingResponse) -> Reply:
    with future.subscribe() as ready:
        ready.block()
    outcome = future.get()
    if outcome is None or isinstance(outcome, Err) or isinstance(outcome.value, Err):
        detail = outcome.value.value if outcome is not None and isinstance(outcome, Ok) else outcome
        raise HostError("http", repr(detail))
    response = outcome.value.value
    status = response.status()
    body = response.consume()
    with body.stream() as stream:
        data = read_all(stream)
    types.IncomingBody.finish(body)
    return Reply(status, data)


def get(url: str) -> Reply:
    return _finish(_start(url))


def get_all(urls: List[str]) -> List[Union[Reply, HostError]]:
    """GETs every URL concurrently; each answer or its error, in order."""
    started: List[Union[types.FutureIncomingResponse, HostError]] = []
    for url in urls:
        try:
            started.append(_start(url))
        except HostError as e:
            started.append(e)
    replies: List[Union[Reply, HostError]] = []
    for future in started:
        if isinstance(future, HostError):
            replies.append(future)
            continue
        try:
            replies.append(_finish(future))
        except HostError as e:
            replies.append(e)
    return replies
