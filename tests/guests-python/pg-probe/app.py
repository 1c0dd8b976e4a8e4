"""Exercises hostel.pg from Python for the tests: every value type round-trips, a transaction
commits or rolls back, a bad statement raises DbError with its SQLSTATE."""

import datetime
import uuid

import hostel
from hostel import pg


def probe(req: hostel.Request) -> hostel.Response:
    db = pg.Connection.open("db")
    when = datetime.datetime(2026, 11, 25, 12, 30, 15, 123456, tzinfo=datetime.timezone.utc)
    ident = uuid.UUID("12345678-1234-5678-1234-567812345678")
    row = db.query_one(
        "SELECT $1::bigint AS i, $2::float8 AS f, $3::text AS t, $4::bytea AS b, $5::bool AS y, "
        "$6::text AS n, $7::timestamptz AS ts, $8::uuid AS u, $9::jsonb AS j",
        42, 2.5, "héllo", b"\x00\xff", True, None, when, ident, {"a": [1, 2]},
    )
    checks = {
        "int": row["i"] == 42,
        "float": row["f"] == 2.5,
        "text": row["t"] == "héllo",
        "bytes": row["b"] == b"\x00\xff",
        "bool": row["y"] is True,
        "null": row["n"] is None,
        "timestamp": row["ts"] == when,
        "uuid": row["u"] == ident,
        "json": row["j"] == {"a": [1, 2]},
    }
    db.execute("CREATE TABLE IF NOT EXISTS py_notes (note text NOT NULL)")
    db.execute("DELETE FROM py_notes")
    with db.begin() as tx:
        tx.execute("INSERT INTO py_notes VALUES ($1)", "kept")
    try:
        with db.begin() as tx:
            tx.execute("INSERT INTO py_notes VALUES ($1)", "dropped")
            raise RuntimeError("changed my mind")
    except RuntimeError:
        pass
    notes = [r["note"] for r in db.query("SELECT note FROM py_notes ORDER BY note")]
    checks["transactions"] = notes == ["kept"]
    try:
        db.query("SELEC 1")
        checks["db-error"] = False
    except pg.DbError as e:
        checks["db-error"] = e.code == "42601"
    failed = sorted(name for name, ok in checks.items() if not ok)
    if failed:
        return hostel.Response.text(500, f"failed: {', '.join(failed)} (row {row}, notes {notes})\n")
    return hostel.Response.text(200, f"all {len(checks)} checks passed\n")


IncomingHandler = hostel.handler(probe)
