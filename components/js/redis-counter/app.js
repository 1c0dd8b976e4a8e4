// A hit counter on the host's Redis pool `cache`, in JavaScript: the same behaviour as
// components/redis-counter. GET adds `step` (the tenant's `step` variable, default 1) to the
// count of its path; `?peek` answers without counting; DELETE resets; Redis unavailable is a
// 503.
import { HostError, serve, text } from "hostel";
import { config } from "hostel/config";
import { Redis } from "hostel/redis";

serve((request) => {
  const url = new URL(request.url);
  const key = `hits:${url.pathname}`;
  try {
    const redis = Redis.open("cache");
    if (request.method === "GET" && url.search === "?peek") {
      return text(200, `${redis.get(key) ?? "0"}\n`);
    }
    if (request.method === "GET") {
      return text(200, `${redis.incr(key, Number(config("step") ?? 1))}\n`);
    }
    if (request.method === "DELETE") {
      redis.del(key);
      return text(200, "0\n");
    }
    return text(405, "use GET or DELETE\n");
  } catch (e) {
    if (!(e instanceof HostError)) throw e;
    if (e.unavailable) return text(503, `Redis unavailable: ${e.detail}\n`);
    return text(500, `Redis error: ${e.message}\n`);
  }
});
