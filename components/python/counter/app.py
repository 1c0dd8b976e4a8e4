"""A visit counter on the host's key-value store, in Python: the same behaviour as
components/counter. GET adds `step` (the tenant's `step` variable, default 1) to the count of
its path and answers it; `?peek` answers
without counting; DELETE resets."""

import hostel
from hostel import config
from hostel.kv import Bucket


def counter(req: hostel.Request) -> hostel.Response:
    key = f"visits:{req.path}"
    try:
        bucket = Bucket.open("default")
    except hostel.HostError as e:
        return hostel.Response.text(500, f"cannot open the store: {e}\n")
    try:
        if req.method == "GET" and req.query == "peek":
            count = (bucket.get(key) or b"0").decode()
        elif req.method == "GET":
            count = str(bucket.increment(key, int(config.get("step") or 1)))
        elif req.method == "DELETE":
            bucket.delete(key)
            count = "0"
        else:
            return hostel.Response.text(405, "use GET or DELETE\n")
    except hostel.HostError as e:
        return hostel.Response.text(500, f"store error: {e}\n")
    return hostel.Response.text(200, f"{count}\n")


IncomingHandler = hostel.handler(counter)
