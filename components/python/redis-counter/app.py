"""A hit counter on the host's Redis pool `cache`, in Python: the same behaviour as
components/redis-counter. GET adds `step` (the tenant's `step` variable, default 1) to the
count of its path; `?peek` answers without
counting; DELETE resets; Redis unavailable is a 503."""

import hostel
from hostel import config
from hostel.redis import Redis


def redis_counter(req: hostel.Request) -> hostel.Response:
    key = f"hits:{req.path}"
    try:
        redis = Redis.open("cache")
        if req.method == "GET" and req.query == "peek":
            count = (redis.get(key) or b"0").decode()
        elif req.method == "GET":
            count = str(redis.incr(key, int(config.get("step") or 1)))
        elif req.method == "DELETE":
            redis.delete(key)
            count = "0"
        else:
            return hostel.Response.text(405, "use GET or DELETE\n")
    except hostel.HostError as e:
        if e.unavailable:
            return hostel.Response.text(503, f"Redis unavailable: {e.detail}\n")
        return hostel.Response.text(500, f"Redis error: {e}\n")
    return hostel.Response.text(200, f"{count}\n")


IncomingHandler = hostel.handler(redis_counter)
