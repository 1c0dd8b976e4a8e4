/* Hello, in C: the same answer as components/hello. */
#include "hostel.h"

static hostel_response hello(const hostel_request *req) {
    return hostel_text(200, "Hello from Hostel! You asked for %s\n", req->path);
}

HOSTEL_HANDLER(hello)
