"""The aggregator as a WASI 0.3 service, in Python: fans out to every URL in `UPSTREAMS` at
once, awaiting them together, and answers one JSON document with each upstream's status and
body, in order — the same behaviour as components/aggregator."""

import os

import hostel_service
from hostel_service import fetch


async def aggregate(req: hostel_service.Request) -> hostel_service.Response:
    upstreams = [u.strip() for u in os.environ.get("UPSTREAMS", "").split(",") if u.strip()]
    if not upstreams:
        return hostel_service.Response.text(500, "no UPSTREAMS configured for this app\n")
    parts = []
    for url, reply in zip(upstreams, await fetch.get_all(upstreams)):
        if isinstance(reply, hostel_service.HostError):
            parts.append({"url": url, "error": str(reply)})
        else:
            parts.append({"url": url, "status": reply.status, "body": reply.text()})
    return hostel_service.Response.json(200, parts)


Handler = hostel_service.service(aggregate)
