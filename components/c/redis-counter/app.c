/* A hit counter on the host's Redis pool `cache`: every GET adds `step` (the tenant's `step`
 * variable, default 1) to the count of its path (INCR on the pool's shared connection) and
 * answers the new count; `?peek` answers without counting; DELETE resets. A Redis failure is a
 * 503 that says so, not a crash. The same behaviour as components/redis-counter. */
#include <stdio.h>
#include <string.h>

#include "hostel.h"

static hostel_response redis_counter(const hostel_request *req) {
    hostel_error err;
    hostel_redis redis;
    char key[1024];
    snprintf(key, sizeof key, "hits:%s", req->path);

    bool get = strcmp(req->method, "GET") == 0;
    if (!get && strcmp(req->method, "DELETE") != 0)
        return hostel_text(405, "use GET or DELETE\n");

    bool ok = hostel_redis_open("cache", &redis, &err);
    int64_t count = 0;
    if (ok && get && req->query && strcmp(req->query, "peek") == 0) {
        hostel_bytes value;
        bool found;
        ok = hostel_redis_get(redis, key, &value, &found, &err);
        if (ok && found) sscanf((const char *)value.ptr, "%lld", (long long *)&count);
    } else if (ok && get) {
        ok = hostel_redis_incr(redis, key, hostel_config_int("step", 1), &count, &err);
    } else if (ok) {
        ok = hostel_redis_del(redis, key, NULL, &err);
    }
    if (ok) return hostel_text(200, "%lld\n", (long long)count);
    if (err.kind == HOSTEL_ERR_UNAVAILABLE)
        return hostel_text(503, "Redis unavailable: %s\n", err.message);
    return hostel_text(500, "Redis error: %s: %s\n", hostel_error_kind_name(err.kind),
                       err.message);
}

HOSTEL_HANDLER(redis_counter)
