"""The visit counter as a WASI 0.3 service, in Python: the same behaviour as
components/counter. GET adds `step` (the tenant's `step` variable, default 1) to the count of
its path and answers it; `?peek` answers without counting; DELETE resets. The key-value store
and the variables are the WASI 0.2 SDK's modules: their calls are synchronous in both."""

import hostel_service
from hostel import config
from hostel.kv import Bucket


async def counter(req: hostel_service.Request) -> hostel_service.Response:
    key = f"visits:{req.path}"
    try:
        bucket = Bucket.open("default")
    except hostel_service.HostError as e:
        return hostel_service.Response.text(500, f"cannot open the store: {e}\n")
    try:
        if req.method == "GET" and req.query == "peek":
            count = (bucket.get(key) or b"0").decode()
        elif req.method == "GET":
            count = str(bucket.increment(key, int(config.get("step") or 1)))
        elif req.method == "DELETE":
            bucket.delete(key)
            count = "0"
        else:
            return hostel_service.Response.text(405, "use GET or DELETE\n")
    except hostel_service.HostError as e:
        return hostel_service.Response.text(500, f"store error: {e}\n")
    return hostel_service.Response.text(200, f"{count}\n")


Handler = hostel_service.service(counter)
