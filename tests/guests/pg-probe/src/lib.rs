//! Test guest for `hostel:host/postgres`: round-trips values, misbehaves inside transactions
//! (traps, overstays its deadline) and reports errors as JSON, for the PostgreSQL tests.
//!
//! Endpoints (last path segment; `?tag` where a row is written to `probe_rows (tag text)`,
//! which the tests create):
//! - `roundtrip`: `SELECT $1::type` for every value type; what came back, and whether it matched
//! - `conversions`: parameters and columns the host must refuse, with its messages
//! - `trap?TAG`: BEGIN, insert TAG, panic
//! - `hold?TAG`: BEGIN, insert TAG, then `pg_sleep(30)` past the request deadline
//! - `spin?TAG`: BEGIN, insert TAG, then a busy loop past the request deadline
//! - `tx`: BEGIN, a short `pg_sleep`, COMMIT
//! - `bad-sql`, `missing-table`: the error the server reports
//! - `open?POOL`: open a pool by name and run `SELECT 1`
//! - `finished`: use a transaction after its commit
//! - `sql` (POST): whatever SQL the body says, as a hostile tenant would send it:
//!   `{"pool": "db", "transaction": "commit" | "rollback" | "open" | null,
//!     "statements": [{"sql": "...", "params": [1, "x", null, true], "rows": true}]}`;
//!   each statement's rows (values as JSON) or error, in order

use hostel_guest::pg::{self, Connection, Json, Timestamp, ToValue, Uuid, Value};
use hostel_guest::{Request, Response};
use serde_json::{Value as JsonValue, json};

fn probe(mut req: Request) -> Response {
    let query = req.query().unwrap_or("").to_string();
    let result = match req.path().rsplit('/').next().unwrap_or("") {
        "roundtrip" => roundtrip(),
        "conversions" => conversions(),
        "trap" => in_transaction(&query, |_| panic!("the probe traps mid-transaction")),
        "hold" => in_transaction(&query, |tx| {
            tx.execute("SELECT pg_sleep(30)", &[])?;
            Ok(json!("slept"))
        }),
        "spin" => in_transaction(&query, |_| {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }),
        "tx" => db().and_then(|db| {
            let tx = db.begin()?;
            tx.execute("SELECT pg_sleep(0.2)", &[])?;
            let one: i32 = tx.query("SELECT 1 AS one", &[])?[0].get("one")?;
            tx.commit()?;
            Ok(json!({ "one": one }))
        }),
        "bad-sql" => db().and_then(|db| db.query("SELEC 1", &[]).map(|_| json!("ran"))),
        "missing-table" => db().and_then(|db| {
            db.query("SELECT * FROM no_such_table", &[])
                .map(|_| json!("ran"))
        }),
        "open" => Connection::open(&query).and_then(|db| {
            db.query("SELECT 1 AS one", &[])?;
            Ok(json!("opened"))
        }),
        "finished" => finished(),
        "sql" => {
            let mut body = Vec::new();
            if let Err(e) = std::io::Read::read_to_end(&mut req.body(), &mut body) {
                return Response::text(400, format!("cannot read the body: {e}"));
            }
            match serde_json::from_slice::<JsonValue>(&body) {
                Ok(script) => run_script(&script),
                Err(e) => return Response::text(400, format!("not JSON: {e}")),
            }
        }
        _ => return Response::text(404, "unknown probe"),
    };
    let body = match result {
        Ok(value) => json!({ "ok": value }),
        Err(e) => json!({ "error": describe(&e) }),
    };
    Response::json(200, body.to_string())
}

/// Runs a hostile tenant's script (see the module comment): every statement's outcome.
fn run_script(script: &JsonValue) -> Result<JsonValue, pg::Error> {
    let db = Connection::open(script["pool"].as_str().unwrap_or("db"))?;
    let statements = script["statements"].as_array().cloned().unwrap_or_default();
    let transaction = script["transaction"].as_str();
    let tx = match transaction {
        Some(_) => Some(db.begin()?),
        None => None,
    };
    let mut results = Vec::new();
    for statement in &statements {
        let sql = statement["sql"].as_str().unwrap_or("");
        let params: Vec<Value> = statement["params"]
            .as_array()
            .map(|ps| ps.iter().map(json_to_value).collect())
            .unwrap_or_default();
        let refs: Vec<&dyn ToValue> = params.iter().map(|p| p as &dyn ToValue).collect();
        let rows = statement["rows"].as_bool().unwrap_or(true);
        let outcome = match (&tx, rows) {
            (Some(tx), true) => tx.query(sql, &refs).map(rows_json),
            (Some(tx), false) => tx.execute(sql, &refs).map(|n| json!(n)),
            (None, true) => db.query(sql, &refs).map(rows_json),
            (None, false) => db.execute(sql, &refs).map(|n| json!(n)),
        };
        results.push(match outcome {
            Ok(value) => json!({ "ok": value }),
            Err(e) => json!({ "error": describe(&e) }),
        });
    }
    let finished = match (tx, transaction) {
        (Some(tx), Some("commit")) => Some(tx.commit()),
        (Some(tx), Some("rollback")) => Some(tx.rollback()),
        // "open": left for the host to clean up when the request ends.
        (Some(tx), _) => {
            std::mem::forget(tx);
            None
        }
        (None, _) => None,
    };
    let finished = match finished {
        Some(Ok(())) => json!("ok"),
        Some(Err(e)) => json!({ "error": describe(&e) }),
        None => JsonValue::Null,
    };
    Ok(json!({ "results": results, "finished": finished }))
}

fn json_to_value(value: &JsonValue) -> Value {
    match value {
        JsonValue::Null => Value::Null,
        JsonValue::Bool(b) => Value::Boolean(*b),
        JsonValue::Number(n) => match n.as_i64() {
            Some(i) => Value::Int64(i),
            None => Value::Float64(n.as_f64().unwrap_or_default()),
        },
        JsonValue::String(s) => Value::Text(s.clone()),
        other => Value::Json(other.to_string()),
    }
}

/// Rows as lists of JSON values (text, numbers, booleans, null; anything else as its debug form).
fn rows_json(rows: Vec<pg::Row>) -> JsonValue {
    rows.into_iter()
        .map(|row| {
            row.into_values()
                .into_iter()
                .map(|v| match v {
                    Value::Null => JsonValue::Null,
                    Value::Boolean(b) => json!(b),
                    Value::Int16(n) => json!(n),
                    Value::Int32(n) => json!(n),
                    Value::Int64(n) => json!(n),
                    Value::Float32(f) => json!(f),
                    Value::Float64(f) => json!(f),
                    Value::Text(s) | Value::Json(s) => json!(s),
                    other => json!(format!("{other:?}")),
                })
                .collect::<JsonValue>()
        })
        .collect()
}

fn db() -> Result<Connection, pg::Error> {
    Connection::open("db")
}

/// A transaction used after its commit, through the raw bindings (the SDK's `commit` takes
/// the transaction, so there it cannot happen).
fn finished() -> Result<JsonValue, pg::Error> {
    use hostel_guest::bindings::hostel::host::postgres as raw;
    let conn = raw::Connection::open("db")?;
    let tx = conn.begin()?;
    tx.commit()?;
    tx.execute("SELECT 1", &[])?;
    Ok(json!("ran after commit"))
}

/// Begins a transaction, inserts `tag`, then runs `then` without committing.
fn in_transaction(
    tag: &str,
    then: impl FnOnce(&pg::Transaction) -> Result<JsonValue, pg::Error>,
) -> Result<JsonValue, pg::Error> {
    let db = db()?;
    let tx = db.begin()?;
    tx.execute("INSERT INTO probe_rows (tag) VALUES ($1)", &[&tag])?;
    let outcome = then(&tx)?;
    tx.commit()?;
    Ok(outcome)
}

fn describe(e: &pg::Error) -> JsonValue {
    let kind = match e {
        pg::Error::NoSuchPool(_) => "no-such-pool",
        pg::Error::NotGranted(_) => "not-granted",
        pg::Error::Unavailable(_) => "unavailable",
        pg::Error::Db(_) => "db",
        pg::Error::Conversion(_) => "conversion",
        pg::Error::Finished => "finished",
        pg::Error::NoSuchColumn(_) => "no-such-column",
    };
    json!({ "kind": kind, "code": e.code(), "message": e.to_string() })
}

/// Sends each value as `$1::type` and compares what comes back with what is expected.
fn roundtrip() -> Result<JsonValue, pg::Error> {
    let db = db()?;
    let at = Timestamp {
        seconds: 1_700_000_000,
        nanoseconds: 123_456_000,
    };
    let before_1970 = Timestamp {
        seconds: -86_401,
        nanoseconds: 500_000_000,
    };
    let uuid = Uuid(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210);
    let cases: Vec<(&str, Value, Value)> = vec![
        ("bool", true.into(), Value::Boolean(true)),
        ("int2", (-7_i16).into(), Value::Int16(-7)),
        ("int2", 300_i64.into(), Value::Int16(300)),
        ("int4", 123_456_i64.into(), Value::Int32(123_456)),
        ("int4", (-5_i32).into(), Value::Int32(-5)),
        ("int8", i64::MAX.into(), Value::Int64(i64::MAX)),
        ("float4", 1.5_f32.into(), Value::Float32(1.5)),
        ("float8", (-2.25_f64).into(), Value::Float64(-2.25)),
        ("float8", 0.5_f32.into(), Value::Float64(0.5)),
        ("text", "héllo ✓".into(), Value::Text("héllo ✓".into())),
        ("varchar", "v".into(), Value::Text("v".into())),
        ("char(4)", "ab".into(), Value::Text("ab  ".into())),
        ("name", "pg_class".into(), Value::Text("pg_class".into())),
        (
            "bytea",
            vec![0_u8, 1, 255].into(),
            Value::Bytes(vec![0, 1, 255]),
        ),
        (
            "json",
            Json(r#"{"b": 1,  "a": [1, 2]}"#.into()).to_value(),
            Value::Json(r#"{"b": 1,  "a": [1, 2]}"#.into()),
        ),
        (
            "jsonb",
            Json(r#"{"b":1,"a":[1,2]}"#.into()).to_value(),
            Value::Json(r#"{"a": [1, 2], "b": 1}"#.into()),
        ),
        ("jsonb", "[true]".into(), Value::Json("[true]".into())),
        ("timestamp", at.into(), Value::Timestamp(at)),
        ("timestamptz", at.into(), Value::Timestamp(at)),
        (
            "timestamptz",
            before_1970.into(),
            Value::Timestamp(before_1970),
        ),
        ("uuid", uuid.to_value(), uuid.to_value()),
        ("int4", Value::Null, Value::Null),
        ("text", None::<String>.to_value(), Value::Null),
    ];
    let mut results = Vec::new();
    let mut all_match = true;
    for (ty, sent, expected) in cases {
        let sql = format!("SELECT $1::{ty} AS v");
        let (got, type_name) = match db.query(&sql, &[&sent]) {
            Ok(rows) => (
                format!("{:?}", rows[0].values()[0]),
                rows[0].columns()[0].type_name.clone(),
            ),
            Err(e) => (format!("error: {e}"), String::new()),
        };
        let matched = got == format!("{expected:?}");
        all_match &= matched;
        results.push(json!({
            "type": ty,
            "sent": format!("{sent:?}"),
            "got": got,
            "column_type": type_name,
            "matched": matched,
        }));
    }
    // Typed getters on the same values, as a guest would read them.
    let row = db
        .query(
            "SELECT 42::int4 AS n, 'x'::text AS s, NULL::int8 AS missing, $1::uuid AS u",
            &[&uuid],
        )?
        .remove(0);
    let getters = json!({
        "n_as_i64": row.get::<i64>("n")?,
        "s": row.get::<String>("s")?,
        "missing": row.get::<Option<i64>>("missing")?,
        "u": row.get::<Uuid>("u")?.to_string(),
        "missing_as_i64": row.get::<i64>("missing").err().map(|e| e.to_string()),
        "no_column": row.get::<i64>("nope").err().map(|e| e.to_string()),
    });
    Ok(json!({ "all_match": all_match, "results": results, "getters": getters }))
}

/// What the host refuses, each with its message.
fn conversions() -> Result<JsonValue, pg::Error> {
    let db = db()?;
    let attempts: Vec<(&str, &str, Vec<Value>)> = vec![
        (
            "int4_overflow",
            "SELECT $1::int4",
            vec![(1_i64 << 40).into()],
        ),
        ("text_into_int", "SELECT $1::int8", vec!["12".into()]),
        ("numeric_param", "SELECT $1::numeric", vec![1_i64.into()]),
        ("numeric_column", "SELECT 1.5::numeric AS price", vec![]),
        ("param_count", "SELECT $1::int4", vec![]),
    ];
    let mut out = serde_json::Map::new();
    for (name, sql, params) in attempts {
        let params: Vec<&dyn ToValue> = params.iter().map(|p| p as &dyn ToValue).collect();
        let outcome = match db.query(sql, &params) {
            Ok(_) => json!("accepted"),
            Err(e) => describe(&e),
        };
        out.insert(name.into(), outcome);
    }
    // The connection is still usable after refusals.
    let after = db.query("SELECT 1::int4 AS one", &[])?[0].get::<i32>("one")?;
    out.insert("after".into(), json!(after));
    Ok(JsonValue::Object(out))
}

hostel_guest::http_handler!(probe);
