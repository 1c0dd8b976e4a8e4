/* Fans out to every URL in UPSTREAMS (comma-separated, granted through the tenant's `env`
 * and `outbound` grants) at once and answers one JSON document with each upstream's status
 * and body, in order: the same behaviour as components/aggregator. */
#include <stdlib.h>
#include <string.h>

#include "hostel.h"

#define MAX_UPSTREAMS 32

static hostel_response aggregate(const hostel_request *req) {
    const char *configured = getenv("UPSTREAMS");
    char *list = strdup(configured ? configured : "");
    hostel_fetch_request requests[MAX_UPSTREAMS];
    size_t count = 0;
    for (char *url = strtok(list, ", "); url && count < MAX_UPSTREAMS; url = strtok(NULL, ", "))
        requests[count++] = (hostel_fetch_request){.url = url};
    if (count == 0) return hostel_text(500, "no UPSTREAMS configured for this app\n");

    hostel_fetch_reply replies[MAX_UPSTREAMS];
    hostel_error errors[MAX_UPSTREAMS];
    hostel_fetch_all(count, requests, replies, errors);

    hostel_buf json = {0};
    hostel_buf_printf(&json, "[");
    for (size_t i = 0; i < count; i++) {
        hostel_buf_printf(&json, "%s{\"url\":", i ? "," : "");
        hostel_buf_json_string(&json, requests[i].url);
        if (errors[i].kind == HOSTEL_OK) {
            hostel_buf_printf(&json, ",\"status\":%u,\"body\":", replies[i].status);
            hostel_buf_json_string(&json, (const char *)replies[i].body.ptr);
        } else {
            hostel_buf_printf(&json, ",\"error\":");
            hostel_buf_json_string(&json, errors[i].message);
        }
        hostel_buf_printf(&json, "}");
    }
    hostel_buf_printf(&json, "]\n");
    return hostel_respond_buf(200, "application/json", &json);
}

HOSTEL_HANDLER(aggregate)
