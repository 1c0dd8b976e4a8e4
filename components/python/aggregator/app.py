"""Fans out to every URL in `UPSTREAMS` at once and answers one JSON document with each
upstream's status and body, in order: the same behaviour as components/aggregator."""

import os

import hostel
from hostel import fetch


def aggregate(req: hostel.Request) -> hostel.Response:
    upstreams = [u.strip() for u in os.environ.get("UPSTREAMS", "").split(",") if u.strip()]
    if not upstreams:
        return hostel.Response.text(500, "no UPSTREAMS configured for this app\n")
    parts = []
    for url, reply in zip(upstreams, fetch.get_all(upstreams)):
        if isinstance(reply, hostel.HostError):
            parts.append({"url": url, "error": str(reply)})
        else:
            parts.append({"url": url, "status": reply.status, "body": reply.text()})
    return hostel.Response.json(200, parts)


IncomingHandler = hostel.handler(aggregate)
