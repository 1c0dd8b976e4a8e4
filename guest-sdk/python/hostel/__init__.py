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

from .errors import HostError
from .http import Request, Response, handler

__all__ = ["HostError", "Request", "Response", "handler"]
