/* Exercises the C SDK's PostgreSQL calls for the tests, like tests/guests-python/pg-probe:
 * every value type round-trips, a transaction commits or rolls back, a bad statement fails
 * with its SQLSTATE. */
#include <string.h>

#include "hostel.h"

#define CHECK(name, condition)                                                               \
    do {                                                                                     \
        checks++;                                                                            \
        if (!(condition)) hostel_buf_printf(&failed, " %s", name);                           \
    } while (0)

static hostel_response probe(const hostel_request *req) {
    hostel_error err;
    hostel_pg db;
    if (!hostel_pg_open("db", &db, &err)) return hostel_text(503, "open: %s\n", err.message);

    static const uint8_t blob[] = {0x00, 0xff};
    hostel_pg_value params[] = {
        hostel_pg_int(42),
        hostel_pg_float(2.5),
        hostel_pg_text("h\xc3\xa9llo"),
        hostel_pg_bytes(blob, sizeof blob),
        hostel_pg_bool(true),
        hostel_pg_null(),
        {.kind = HOSTEL_PG_TIMESTAMP, .integer = 1795609815, .nanos = 123456000},
        {.kind = HOSTEL_PG_UUID, .text = "12345678-1234-5678-1234-567812345678", .len = 36},
        hostel_pg_json("{\"a\": [1, 2]}"),
    };
    hostel_pg_rows rows;
    if (!hostel_pg_query(db,
                         "SELECT $1::bigint, $2::float8, $3::text, $4::bytea, $5::bool, $6::text, "
                         "$7::timestamptz, $8::text::uuid, $9::jsonb",
                         sizeof params / sizeof *params, params, &rows, &err))
        return hostel_text(500, "query: %s %s\n", err.code, err.message);

    if (rows.rows != 1 || rows.columns != 9)
        return hostel_text(500, "%zu rows of %zu columns\n", rows.rows, rows.columns);
    hostel_buf failed = {0};
    int checks = 0;
    const hostel_pg_value *c = rows.cells;
    CHECK("int", c[0].kind == HOSTEL_PG_INT && c[0].integer == 42);
    CHECK("float", c[1].kind == HOSTEL_PG_FLOAT && c[1].number == 2.5);
    CHECK("text", c[2].kind == HOSTEL_PG_TEXT && strcmp(c[2].text, "h\xc3\xa9llo") == 0);
    CHECK("bytes", c[3].kind == HOSTEL_PG_BYTES && c[3].len == 2 &&
                       memcmp(c[3].bytes, blob, 2) == 0);
    CHECK("bool", c[4].kind == HOSTEL_PG_BOOL && c[4].boolean);
    CHECK("null", c[5].kind == HOSTEL_PG_NULL);
    CHECK("timestamp", c[6].kind == HOSTEL_PG_TIMESTAMP && c[6].integer == 1795609815 &&
                           c[6].nanos == 123456000);
    CHECK("uuid", c[7].kind == HOSTEL_PG_UUID &&
                      strcmp(c[7].text, "12345678-1234-5678-1234-567812345678") == 0);
    CHECK("json", c[8].kind == HOSTEL_PG_JSON && strcmp(c[8].text, "{\"a\": [1, 2]}") == 0);

    hostel_pg_execute(db, "CREATE TABLE IF NOT EXISTS c_notes (note text NOT NULL)", 0, NULL,
                      NULL, &err);
    hostel_pg_execute(db, "DELETE FROM c_notes", 0, NULL, NULL, &err);
    hostel_pg tx;
    hostel_pg_value kept = hostel_pg_text("kept"), dropped = hostel_pg_text("dropped");
    bool committed = hostel_pg_begin(db, &tx, &err) &&
                     hostel_pg_execute(tx, "INSERT INTO c_notes VALUES ($1)", 1, &kept, NULL,
                                       &err) &&
                     hostel_pg_commit(tx, &err);
    bool rolled_back = hostel_pg_begin(db, &tx, &err) &&
                       hostel_pg_execute(tx, "INSERT INTO c_notes VALUES ($1)", 1, &dropped,
                                         NULL, &err) &&
                       hostel_pg_rollback(tx, &err);
    hostel_pg_rows notes;
    bool listed = hostel_pg_query(db, "SELECT note FROM c_notes ORDER BY note", 0, NULL, &notes,
                                  &err);
    CHECK("transactions", committed && rolled_back && listed && notes.rows == 1 &&
                              strcmp(notes.cells[0].text, "kept") == 0);

    bool bad = hostel_pg_query(db, "SELEC 1", 0, NULL, &notes, &err);
    CHECK("db-error", !bad && err.kind == HOSTEL_ERR_SERVER && strcmp(err.code, "42601") == 0);

    if (failed.len) return hostel_text(500, "failed:%s\n", failed.ptr);
    return hostel_text(200, "all %d checks passed\n", checks);
}

HOSTEL_HANDLER(probe)
