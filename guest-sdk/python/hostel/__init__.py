"""Write Hostel HTTP handlers in Python (built into components with componentize-py).

    import hostel

    def hello(req: hostel.Request) -> hostel.Response:
        return hostel.Response.text(200, f"Hello from Hostel! You asked for {req.path}\\n")

    IncomingHandler = hostel.handler(hello)

The host lends its pools through the submodules: `hostel.kv` (the standard wasi:keyvalue),
`hostel.redis`, `hostel.pg`, `hostel.fetch` (outbound HTTP through the tenant's pooled
client) and `hostel.config` (the tenant's variables and secrets). Every host call is
synchronous: a sandbox lives for one request.
"""

from typing import Any

from .errors import HostError

__all__ = ["HostError", "Request", "Response", "handler"]


def __getattr__(name: str) -> Any:
    # `hostel.http` needs the WASI 0.2 bindings: imported only when used, so that a WASI 0.3
    # service (`hostel_service`) can use `hostel.kv`, `hostel.config` and the value helpers of
    # `hostel.redis` and `hostel.pg`, which both editions share.
    if name in ("Request", "Response", "handler"):
        from . import http

        return getattr(http, name)
    raise AttributeError(f"module 'hostel' has no attribute {name!r}")
