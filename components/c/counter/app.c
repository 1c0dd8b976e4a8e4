/* A visit counter on the host's key-value store: every GET adds `step` (the tenant's `step`
 * variable, default 1) to the count of its path and answers the new count; `?peek` answers
 * without counting; DELETE resets. The same behaviour as components/counter. */
#include <stdio.h>
#include <string.h>

#include "hostel.h"

static hostel_response counter(const hostel_request *req) {
    hostel_error err;
    hostel_kv kv;
    if (!hostel_kv_open("default", &kv, &err))
        return hostel_text(500, "cannot open the store: %s\n", err.message);
    char key[1024];
    snprintf(key, sizeof key, "visits:%s", req->path);

    bool ok;
    int64_t count = 0;
    if (strcmp(req->method, "GET") == 0 && req->query && strcmp(req->query, "peek") == 0) {
        hostel_bytes value;
        bool found;
        ok = hostel_kv_get(kv, key, &value, &found, &err);
        if (ok && found) sscanf((const char *)value.ptr, "%lld", (long long *)&count);
    } else if (strcmp(req->method, "GET") == 0) {
        ok = hostel_kv_increment(kv, key, hostel_config_int("step", 1), &count, &err);
    } else if (strcmp(req->method, "DELETE") == 0) {
        ok = hostel_kv_delete(kv, key, &err);
    } else {
        return hostel_text(405, "use GET or DELETE\n");
    }
    if (!ok) return hostel_text(500, "store error: %s\n", err.message);
    return hostel_text(200, "%lld\n", (long long)count);
}

HOSTEL_HANDLER(counter)
