"""Hello, in Python: the same answer as components/hello."""

import hostel


def hello(req: hostel.Request) -> hostel.Response:
    return hostel.Response.text(200, f"Hello from Hostel! You asked for {req.path}\n")


IncomingHandler = hostel.handler(hello)
