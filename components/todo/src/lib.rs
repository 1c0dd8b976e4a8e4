//! A to-do list as a small REST API on the host's PostgreSQL pool `db`.
//!
//! Mounted at any route (say `/todo`):
//! - `POST /todo` with `{"title": "..."}` → 201 and the new item
//! - `GET /todo` → 200 and every item, oldest first
//! - `GET /todo/{id}` → 200 and the item, or 404
//! - `PATCH /todo/{id}` with `{"done": true}` and/or `{"title": "..."}` → 200 and the item, or 404
//! - `DELETE /todo/{id}` → 204, or 404
//!
//! An item is `{"id": 1, "title": "...", "done": false, "created_at": "RFC 3339"}`. The guest
//! does not know its route, so a path whose last segment is a number names an item and any
//! other path the list. The table is created the first time a statement finds it missing.
//! Errors are JSON `{"error": "..."}`: 503 while the database is unreachable, 500 otherwise.

use hostel_guest::pg::{self, Connection, Row, Timestamp};
use hostel_guest::{Request, Response};
use serde::Deserialize;
use serde_json::{Value as JsonValue, json};

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS todos (
    id bigserial PRIMARY KEY,
    title text NOT NULL,
    done boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now()
)";
const COLUMNS: &str = "id, title, done, created_at";

/// SQLSTATEs: the table is missing; another request created it at the same moment.
const UNDEFINED_TABLE: &str = "42P01";
const ALREADY_CREATED: [&str; 2] = ["42P07", "23505"];

fn todo(mut req: Request) -> Response {
    let last_segment = req.path().trim_end_matches('/').rsplit('/').next();
    let target = last_segment.and_then(|s| s.parse::<i64>().ok());
    let body = match req.method() {
        "POST" | "PATCH" => match req.body_bytes() {
            Ok(body) => body,
            Err(e) => return error(400, format!("cannot read the request body: {e}")),
        },
        _ => Vec::new(),
    };
    let db = match Connection::open("db") {
        Ok(db) => db,
        Err(e) => return db_error(e),
    };
    let result = match (req.method(), target) {
        ("GET", None) => list(&db),
        ("POST", None) => create(&db, &body),
        ("GET", Some(id)) => get(&db, id),
        ("PATCH", Some(id)) => update(&db, id, &body),
        ("DELETE", Some(id)) => delete(&db, id),
        (_, None) => Ok(error(405, "use GET or POST").header("allow", "GET, POST")),
        (_, Some(_)) => {
            Ok(error(405, "use GET, PATCH or DELETE").header("allow", "GET, PATCH, DELETE"))
        }
    };
    result.unwrap_or_else(db_error)
}

fn list(db: &Connection) -> Result<Response, pg::Error> {
    let sql = format!("SELECT {COLUMNS} FROM todos ORDER BY id");
    let rows = with_table(db, || db.query(&sql, &[]))?;
    let items = rows.iter().map(item).collect::<Result<Vec<_>, _>>()?;
    Ok(json_response(200, &JsonValue::Array(items)))
}

#[derive(Deserialize)]
struct NewTodo {
    title: String,
}

fn create(db: &Connection, body: &[u8]) -> Result<Response, pg::Error> {
    let new: NewTodo = match serde_json::from_slice(body) {
        Ok(new) => new,
        Err(e) => return Ok(error(400, format!("expected {{\"title\": \"...\"}}: {e}"))),
    };
    if new.title.trim().is_empty() {
        return Ok(error(400, "the title must not be empty"));
    }
    let sql = format!("INSERT INTO todos (title) VALUES ($1) RETURNING {COLUMNS}");
    let row = with_table(db, || db.query_opt(&sql, &[&new.title]))?;
    let row = row.ok_or_else(|| pg::Error::Conversion("INSERT returned no row".into()))?;
    let item = item(&row)?;
    let location = format!("{}", item["id"]);
    Ok(json_response(201, &item).header("location", location))
}

fn get(db: &Connection, id: i64) -> Result<Response, pg::Error> {
    let sql = format!("SELECT {COLUMNS} FROM todos WHERE id = $1");
    found(with_table(db, || db.query_opt(&sql, &[&id]))?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Change {
    done: Option<bool>,
    title: Option<String>,
}

fn update(db: &Connection, id: i64, body: &[u8]) -> Result<Response, pg::Error> {
    let change: Change = match serde_json::from_slice(body) {
        Ok(change) => change,
        Err(e) => return Ok(error(400, format!("expected {{\"done\": true}}: {e}"))),
    };
    if change.done.is_none() && change.title.is_none() {
        return Ok(error(
            400,
            "nothing to change: give \"done\" and/or \"title\"",
        ));
    }
    let sql = format!(
        "UPDATE todos SET done = coalesce($2, done), title = coalesce($3, title) \
         WHERE id = $1 RETURNING {COLUMNS}"
    );
    found(with_table(db, || {
        db.query_opt(&sql, &[&id, &change.done, &change.title])
    })?)
}

fn delete(db: &Connection, id: i64) -> Result<Response, pg::Error> {
    let deleted = with_table(db, || db.execute("DELETE FROM todos WHERE id = $1", &[&id]))?;
    Ok(match deleted {
        0 => error(404, format!("no item {id}")),
        _ => Response::new(204),
    })
}

fn found(row: Option<Row>) -> Result<Response, pg::Error> {
    Ok(match row {
        Some(row) => json_response(200, &item(&row)?),
        None => error(404, "no such item"),
    })
}

/// Runs `statement`; if the table does not exist yet, creates it and runs it again.
fn with_table<T>(
    db: &Connection,
    statement: impl Fn() -> Result<T, pg::Error>,
) -> Result<T, pg::Error> {
    match statement() {
        Err(e) if e.code() == Some(UNDEFINED_TABLE) => {
            match db.execute(SCHEMA, &[]) {
                Err(e) if !e.code().is_some_and(|c| ALREADY_CREATED.contains(&c)) => {
                    return Err(e);
                }
                _ => {}
            }
            statement()
        }
        outcome => outcome,
    }
}

fn item(row: &Row) -> Result<JsonValue, pg::Error> {
    Ok(json!({
        "id": row.get::<i64>("id")?,
        "title": row.get::<String>("title")?,
        "done": row.get::<bool>("done")?,
        "created_at": row.get::<Timestamp>("created_at")?.to_string(),
    }))
}

fn json_response(status: u16, body: &JsonValue) -> Response {
    Response::json(status, body.to_string())
}

fn error(status: u16, message: impl Into<String>) -> Response {
    json_response(status, &json!({ "error": message.into() }))
}

/// 503 while the database cannot be reached (the client may retry), 500 for anything else.
fn db_error(e: pg::Error) -> Response {
    let status = if e.is_unavailable() { 503 } else { 500 };
    eprintln!("todo: {e}");
    error(status, e.to_string())
}

hostel_guest::http_handler!(todo);
