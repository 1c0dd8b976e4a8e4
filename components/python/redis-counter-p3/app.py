"""The Redis hit counter as a WASI 0.3 service, in Python: the same behaviour as
components/redis-counter, its Redis calls awaited. GET adds `step` (the tenant's `step`
variable, default 1) to the count of its path; `?peek` answers without counting; DELETE
resets; Redis unavailable is a 503."""

import hostel_service
from hostel import config
from hostel_service.redis import Redis


async def redis_counter(req: hostel_service.Request) -> hostel_service.Response:
    key = f"hits:{req.path}"
    try:
        redis = Redis.open("cache")
        if req.method == "GET" and req.query == "peek":
            count = ((await redis.get(key)) or b"0").decode()
        elif req.method == "GET":
            count = str(await redis.incr(key, int(config.get("step") or 1)))
        elif req.method == "DELETE":
            await redis.delete(key)
            count = "0"
        else:
            return hostel_service.Response.text(405, "use GET or DELETE\n")
    except hostel_service.HostError as e:
        if e.unavailable:
            return hostel_service.Response.text(503, f"Redis unavailable: {e.detail}\n")
        return hostel_service.Response.text(500, f"Redis error: {e}\n")
    return hostel_service.Response.text(200, f"{count}\n")


Handler = hostel_service.service(redis_counter)
