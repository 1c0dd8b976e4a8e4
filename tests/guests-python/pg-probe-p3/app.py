"""Exercises hostel_service.pg from a WASI 0.3 Python service for the tests: the WASI 0.2
probe's checks (every value type round-trips, a transaction commits or rolls back, a bad
statement raises DbError with its SQLSTATE), awaited, and two statements awaited together."""

import asyncio
import datetime
import uuid

import hostel_service
from hostel_service import pg


async def probe(req: hostel_service.Request) -> hostel_service.Response:
    db = pg.Connection.open("db")
    when = datetime.datetime(2026, 11, 25, 12, 30, 15, 123456, tzinfo=datetime.timezone.utc)
    ident = uuid.UUID("12345678-1234-5678-1234-567812345678")
    row = await db.query_one(
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
    await db.execute("CREATE TABLE IF NOT EXISTS py3_notes (note text NOT NULL)")
    await db.execute("DELETE FROM py3_notes")
    tx = await db.begin()
    await tx.execute("INSERT INTO py3_notes VALUES ($1)", "kept")
    await tx.commit()
    tx = await db.begin()
    await tx.execute("INSERT INTO py3_notes VALUES ($1)", "dropped")
    await tx.rollback()
    notes = [r["note"] for r in await db.query("SELECT note FROM py3_notes ORDER BY note")]
    checks["transactions"] = notes == ["kept"]
    try:
        await db.query("SELEC 1")
        checks["db-error"] = False
    except pg.DbError as e:
        checks["db-error"] = e.code == "42601"
    one, two = await asyncio.gather(db.query_one("SELECT 1 AS n"), db.query_one("SELECT 2 AS n"))
    checks["together"] = (one["n"], two["n"]) == (1, 2)
    failed = sorted(name for name, ok in checks.items() if not ok)
    if failed:
        return hostel_service.Response.text(
            500, f"failed: {', '.join(failed)} (row {row}, notes {notes})\n")
    return hostel_service.Response.text(200, f"all {len(checks)} checks passed\n")


Handler = hostel_service.service(probe)
