"""The smallest Hostel app as a WASI 0.3 service, in Python (components/hello-p3 in Rust)."""

import hostel_service


async def hello(req: hostel_service.Request) -> hostel_service.Response:
    return hostel_service.Response.text(200, f"Hello from Hostel! You asked for {req.path}\n")


Handler = hostel_service.service(hello)
