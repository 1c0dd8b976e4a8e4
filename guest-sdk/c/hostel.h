/*
 * Hostel guest SDK for C: an HTTP handler and the host's key-value stores, Redis and
 * PostgreSQL pools and outbound HTTP, without the component model's own/borrow plumbing.
 *
 * A handler is one function from request to response:
 *
 *     #include "hostel.h"
 *
 *     static hostel_response hello(const hostel_request *req) {
 *         return hostel_text(200, "Hello from Hostel! You asked for %s\n", req->path);
 *     }
 *     HOSTEL_HANDLER(hello)
 *
 * Build it with `hostel build DIR` (the folder holds app.c and any other .c files).
 *
 * Conventions:
 * - Calls that can fail return `true` on success and otherwise fill `*err` (which may be NULL)
 *   with a kind and a message. Failures of the host's resources are values, never crashes.
 * - Memory the SDK hands out (hostel_bytes, rows, replies) belongs to the caller. Every
 *   request runs in a fresh sandbox that is thrown away afterwards, so a handler that does not
 *   free it leaks nothing beyond its request; the *_free functions are there for loops.
 * - Everything the generated bindings offer (`handler.h`: all of wasi:http, wasi:keyvalue
 *   batch and compare-and-swap, Redis hashes/lists/sets/pipelines/transactions, ...) is
 *   available next to this header for the less common cases.
 */
#ifndef HOSTEL_H
#define HOSTEL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- errors ------------------------------------------------------------------------- */

typedef enum hostel_error_kind {
    HOSTEL_OK = 0,
    /* No store or pool of that name is configured. */
    HOSTEL_ERR_NO_SUCH,
    /* It exists, but this tenant's grants do not include it. */
    HOSTEL_ERR_NOT_GRANTED,
    /* The server is unreachable or the pool had no free connection in time: try later. */
    HOSTEL_ERR_UNAVAILABLE,
    /* The server answered with an error (for PostgreSQL, `code` holds the SQLSTATE). */
    HOSTEL_ERR_SERVER,
    /* The host refused the command (e.g. a Redis command that could cross tenants). */
    HOSTEL_ERR_REFUSED,
    /* A value could not be converted, a transaction was already finished, a fetch failed, ... */
    HOSTEL_ERR_OTHER,
} hostel_error_kind;

typedef struct hostel_error {
    hostel_error_kind kind;
    char code[8];       /* PostgreSQL SQLSTATE, else empty */
    char message[256];  /* NUL-terminated, truncated when longer */
} hostel_error;

/* A short name for the kind: "unavailable", "not-granted", ... */
const char *hostel_error_kind_name(hostel_error_kind kind);

/* ---- bytes and strings -------------------------------------------------------------- */

/* Bytes the SDK allocated; always followed by a NUL so that text can be used as a C string. */
typedef struct hostel_bytes {
    uint8_t *ptr;
    size_t len;
} hostel_bytes;

void hostel_bytes_free(hostel_bytes *bytes);

/* A growable text buffer for building responses. Zero-initialise it: `hostel_buf b = {0};` */
typedef struct hostel_buf {
    char *ptr;
    size_t len;
    size_t cap;
} hostel_buf;

void hostel_buf_append(hostel_buf *buf, const void *data, size_t len);
void hostel_buf_printf(hostel_buf *buf, const char *format, ...)
    __attribute__((format(printf, 2, 3)));
/* Appends `text` as a quoted, escaped JSON string. */
void hostel_buf_json_string(hostel_buf *buf, const char *text);
void hostel_buf_free(hostel_buf *buf);

/* ---- the handler -------------------------------------------------------------------- */

typedef struct hostel_request {
    const char *method;    /* "GET", "POST", ... */
    const char *path;      /* "/a/b", without the query */
    const char *query;     /* what follows '?', or NULL */
    const char *authority; /* the Host, or NULL */
    int32_t handle_;       /* the incoming request (borrowed; used by the functions below) */
} hostel_request;

/* The first value of header `name` (any case), or NULL. Valid until the handler returns. */
const char *hostel_header(const hostel_request *req, const char *name);

/* Reads the whole request body (once). */
bool hostel_read_body(const hostel_request *req, hostel_bytes *body, hostel_error *err);

typedef struct hostel_header_pair {
    char *name;
    char *value;
} hostel_header_pair;

typedef struct hostel_response {
    uint16_t status;
    hostel_header_pair *headers;
    size_t header_count;
    uint8_t *body;
    size_t len;
} hostel_response;

/* A text/plain; charset=utf-8 response, printf-style. */
hostel_response hostel_text(uint16_t status, const char *format, ...)
    __attribute__((format(printf, 2, 3)));
/* An application/json response of `json` (copied). */
hostel_response hostel_json(uint16_t status, const char *json);
/* A response of `len` bytes (copied) with the given content type (NULL: none). */
hostel_response hostel_respond(uint16_t status, const char *content_type, const void *body,
                               size_t len);
/* A response that takes over `buf`'s text. */
hostel_response hostel_respond_buf(uint16_t status, const char *content_type, hostel_buf *buf);
/* Adds a header to the response. */
void hostel_add_header(hostel_response *res, const char *name, const char *value);

/* Your handler: called once per request, in a fresh sandbox. */
hostel_response hostel_handle(const hostel_request *req);

/* Makes `fn` (hostel_response fn(const hostel_request *)) the component's HTTP handler. */
#define HOSTEL_HANDLER(fn)                                                                   \
    hostel_response hostel_handle(const hostel_request *req) { return fn(req); }

/* ---- variables and secrets (wasi:config/store) -------------------------------------- */

/* The tenant's variable or secret `key` (`grants.variables`, `grants.secrets`): `*found` says
 * whether it was given; `value` is filled only when it was. */
bool hostel_config_get(const char *key, hostel_bytes *value, bool *found, hostel_error *err);
/* The variable `key` as an integer, or `fallback` when it is missing or not a number. */
int64_t hostel_config_int(const char *key, int64_t fallback);

/* ---- key-value stores (wasi:keyvalue) ----------------------------------------------- */

typedef struct hostel_kv {
    int32_t handle_;
} hostel_kv;

/* Opens the store the config names `store` ("default" is the embedded one). */
bool hostel_kv_open(const char *store, hostel_kv *kv, hostel_error *err);
/* `*found` says whether the key exists; `value` is filled only when it does. */
bool hostel_kv_get(hostel_kv kv, const char *key, hostel_bytes *value, bool *found,
                   hostel_error *err);
bool hostel_kv_set(hostel_kv kv, const char *key, const void *value, size_t len,
                   hostel_error *err);
bool hostel_kv_delete(hostel_kv kv, const char *key, hostel_error *err);
bool hostel_kv_exists(hostel_kv kv, const char *key, bool *exists, hostel_error *err);
/* Atomically adds `delta` to the integer at `key` (missing: 0) and gives the new value. */
bool hostel_kv_increment(hostel_kv kv, const char *key, int64_t delta, int64_t *value,
                         hostel_error *err);
void hostel_kv_close(hostel_kv kv);

/* ---- Redis (hostel:host/redis) ------------------------------------------------------- */

typedef struct hostel_redis {
    int32_t handle_;
} hostel_redis;

/* Opens the Redis pool the config names `pool`. Keys are the tenant's own: the host
 * prefixes them, so another tenant's keys are out of reach. */
bool hostel_redis_open(const char *pool, hostel_redis *redis, hostel_error *err);
bool hostel_redis_get(hostel_redis redis, const char *key, hostel_bytes *value, bool *found,
                      hostel_error *err);
/* `expire_ms` 0: no expiry. */
bool hostel_redis_set(hostel_redis redis, const char *key, const void *value, size_t len,
                      uint64_t expire_ms, hostel_error *err);
bool hostel_redis_incr(hostel_redis redis, const char *key, int64_t delta, int64_t *value,
                       hostel_error *err);
bool hostel_redis_del(hostel_redis redis, const char *key, uint32_t *deleted,
                      hostel_error *err);
bool hostel_redis_exists(hostel_redis redis, const char *key, bool *exists, hostel_error *err);
bool hostel_redis_expire(hostel_redis redis, const char *key, uint64_t expire_ms, bool *applied,
                         hostel_error *err);
bool hostel_redis_publish(hostel_redis redis, const char *channel, const void *message,
                          size_t len, uint32_t *receivers, hostel_error *err);

typedef enum hostel_redis_kind {
    HOSTEL_REDIS_NIL,
    HOSTEL_REDIS_INT,
    HOSTEL_REDIS_DATA,
    HOSTEL_REDIS_STATUS,
    HOSTEL_REDIS_DOUBLE,
    HOSTEL_REDIS_BOOL,
} hostel_redis_kind;

typedef struct hostel_redis_value {
    hostel_redis_kind kind;
    int64_t integer;
    double number;
    bool boolean;
    hostel_bytes data; /* DATA and STATUS */
} hostel_redis_value;

typedef struct hostel_redis_reply {
    hostel_redis_value *values; /* a nested reply arrives flattened */
    size_t len;
} hostel_redis_reply;

/* Any other command, e.g. hostel_redis_command(r, &reply, &err, "HINCRBY", "h", "f", "2",
 * NULL): the arguments are C strings ending with NULL. */
bool hostel_redis_command(hostel_redis redis, hostel_redis_reply *reply, hostel_error *err,
                          const char *name, ...) __attribute__((sentinel));
void hostel_redis_reply_free(hostel_redis_reply *reply);
void hostel_redis_close(hostel_redis redis);

/* ---- PostgreSQL (hostel:host/postgres) ----------------------------------------------- */

/* A pooled connection, or a transaction on one leased connection: the same calls serve
 * both. A transaction never committed is rolled back by the host. */
typedef struct hostel_pg {
    int32_t handle_;
    bool transaction_;
} hostel_pg;

typedef enum hostel_pg_kind {
    HOSTEL_PG_NULL,
    HOSTEL_PG_BOOL,
    HOSTEL_PG_INT,   /* int2, int4 and int8 arrive here */
    HOSTEL_PG_FLOAT, /* float4 and float8 */
    HOSTEL_PG_TEXT,
    HOSTEL_PG_BYTES,
    HOSTEL_PG_JSON,
    HOSTEL_PG_TIMESTAMP, /* seconds since the Unix epoch in `integer`, `nanos` */
    HOSTEL_PG_UUID,      /* as text, "xxxxxxxx-xxxx-..." */
} hostel_pg_kind;

/* A parameter or a cell. Parameters point at the caller's memory; cells own theirs. */
typedef struct hostel_pg_value {
    hostel_pg_kind kind;
    bool boolean;
    int64_t integer;
    uint32_t nanos;
    double number;
    const char *text; /* TEXT, JSON, UUID: NUL-terminated */
    const uint8_t *bytes;
    size_t len; /* of `bytes`, or of `text` */
} hostel_pg_value;

static inline hostel_pg_value hostel_pg_null(void) {
    return (hostel_pg_value){.kind = HOSTEL_PG_NULL};
}
static inline hostel_pg_value hostel_pg_bool(bool b) {
    return (hostel_pg_value){.kind = HOSTEL_PG_BOOL, .boolean = b};
}
/* An int8 parameter; compare with int4 columns as `$1::int4` or use int8 columns. */
static inline hostel_pg_value hostel_pg_int(int64_t i) {
    return (hostel_pg_value){.kind = HOSTEL_PG_INT, .integer = i};
}
static inline hostel_pg_value hostel_pg_float(double f) {
    return (hostel_pg_value){.kind = HOSTEL_PG_FLOAT, .number = f};
}
hostel_pg_value hostel_pg_text(const char *text);
hostel_pg_value hostel_pg_json(const char *json);
static inline hostel_pg_value hostel_pg_bytes(const void *bytes, size_t len) {
    return (hostel_pg_value){.kind = HOSTEL_PG_BYTES, .bytes = bytes, .len = len};
}

typedef struct hostel_pg_rows {
    size_t columns;
    char **names;           /* column names */
    size_t rows;
    hostel_pg_value *cells; /* row-major: cell (r, c) is cells[r * columns + c] */
} hostel_pg_rows;

static inline const hostel_pg_value *hostel_pg_cell(const hostel_pg_rows *rows, size_t row,
                                                    size_t column) {
    return &rows->cells[row * rows->columns + column];
}

bool hostel_pg_open(const char *pool, hostel_pg *pg, hostel_error *err);
bool hostel_pg_query(hostel_pg pg, const char *sql, size_t count,
                     const hostel_pg_value *params, hostel_pg_rows *rows, hostel_error *err);
bool hostel_pg_execute(hostel_pg pg, const char *sql, size_t count,
                       const hostel_pg_value *params, uint64_t *affected, hostel_error *err);
bool hostel_pg_begin(hostel_pg pg, hostel_pg *transaction, hostel_error *err);
bool hostel_pg_commit(hostel_pg transaction, hostel_error *err);
bool hostel_pg_rollback(hostel_pg transaction, hostel_error *err);
void hostel_pg_rows_free(hostel_pg_rows *rows);
void hostel_pg_close(hostel_pg pg);

/* ---- outbound HTTP (wasi:http/outgoing-handler) ------------------------------------- */

typedef struct hostel_fetch_request {
    const char *url;          /* "https://api.example.com/x?y": the host must be granted */
    const char *method;       /* NULL: GET */
    const char *content_type; /* NULL: none */
    const void *body;
    size_t body_len;
} hostel_fetch_request;

typedef struct hostel_fetch_reply {
    uint16_t status;
    hostel_bytes body;
} hostel_fetch_reply;

/* Sends every request at once and waits for all of them: replies[i] or errors[i] for
 * requests[i]. Returns how many succeeded. */
size_t hostel_fetch_all(size_t count, const hostel_fetch_request *requests,
                        hostel_fetch_reply *replies, hostel_error *errors);
bool hostel_fetch(const hostel_fetch_request *request, hostel_fetch_reply *reply,
                  hostel_error *err);
void hostel_fetch_reply_free(hostel_fetch_reply *reply);

#endif
