"""PostgreSQL through a pool the host holds (`hostel:host/postgres`).

    db = hostel.pg.Connection.open("db")
    rows = db.query("SELECT id, title FROM todos WHERE done = $1", False)   # list of dicts
    with db.begin() as tx:                 # commits at the end of the block,
        tx.execute("INSERT INTO todos (title) VALUES ($1)", "write docs")   # rolls back on error

Parameters: None, bool, int, float, str, bytes, datetime, uuid.UUID, and dict/list (as JSON).
Columns come back as the same Python types. Each statement takes one round trip to the server.
"""

import datetime
import json
import uuid
from typing import Any, Dict, List, Optional

from componentize_py_types import Err
from wit_world.imports import postgres as wit

from .errors import HostError, call, from_wit

Row = Dict[str, Any]
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def _param(value: Any) -> wit.Value:
    if value is None:
        return wit.Value_Null()
    if isinstance(value, bool):
        return wit.Value_Boolean(value)
    if isinstance(value, int):
        return wit.Value_Int64(value)
    if isinstance(value, float):
        return wit.Value_Float64(value)
    if isinstance(value, str):
        return wit.Value_Text(value)
    if isinstance(value, (bytes, bytearray)):
        return wit.Value_Bytes(bytes(value))
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        delta = value - EPOCH
        seconds = delta.days * 86400 + delta.seconds
        return wit.Value_Timestamp(wit.Timestamp(seconds, delta.microseconds * 1000))
    if isinstance(value, uuid.UUID):
        return wit.Value_Uuid((value.int >> 64, value.int & (2**64 - 1)))
    if isinstance(value, (dict, list)):
        return wit.Value_Json(json.dumps(value))
    raise TypeError(f"cannot send a {type(value).__name__} to PostgreSQL")


def _column(value: wit.Value) -> Any:
    if isinstance(value, wit.Value_Null):
        return None
    if isinstance(value, wit.Value_Timestamp):
        ts = value.value
        return EPOCH + datetime.timedelta(seconds=ts.seconds, microseconds=ts.nanoseconds // 1000)
    if isinstance(value, wit.Value_Uuid):
        high, low = value.value
        return uuid.UUID(int=(high << 64) | low)
    if isinstance(value, wit.Value_Json):
        return json.loads(value.value)
    return value.value


def _rows(rows: wit.Rows) -> List[Row]:
    names = [c.name for c in rows.columns]
    return [dict(zip(names, map(_column, row))) for row in rows.rows]


class DbError(HostError):
    """The statement failed on the server; `code` is its SQLSTATE (`23505`, `42P01`, ...)."""

    def __init__(self, error: wit.DbError):
        super().__init__("db", error.message)
        self.code = error.code
        self.extra = error.detail


def _error(error: Err) -> HostError:
    """A binding's error: a server-side failure as a `DbError`, others as a `HostError`."""
    if isinstance(error.value, wit.Error_Db):
        return DbError(error.value.value)
    return from_wit(error.value)


def _run(fn: Any, *args: Any) -> Any:
    """Calls a binding, raising its error as `_error` says."""
    try:
        return fn(*args)
    except Err as e:
        raise _error(e) from None


class _Statements:
    """What a connection and a transaction both do."""

    _target: Any

    def query(self, sql: str, *params: Any) -> List[Row]:
        return _rows(_run(self._target.query, sql, [_param(p) for p in params]))

    def query_one(self, sql: str, *params: Any) -> Optional[Row]:
        rows = self.query(sql, *params)
        return rows[0] if rows else None

    def execute(self, sql: str, *params: Any) -> int:
        """The number of rows the statement affected."""
        return _run(self._target.execute, sql, [_param(p) for p in params])


class Transaction(_Statements):
    """One leased connection from BEGIN to `commit` or `rollback`; one never committed is
    rolled back by the host. As a context manager it commits, or rolls back on an exception."""

    def __init__(self, tx: wit.Transaction):
        self._target = tx

    def commit(self) -> None:
        _run(self._target.commit)

    def rollback(self) -> None:
        _run(self._target.rollback)

    def __enter__(self) -> "Transaction":
        return self

    def __exit__(self, kind: Any, value: Any, tb: Any) -> None:
        if kind is None:
            self.commit()
        else:
            self.rollback()


class Connection(_Statements):
    """A granted pool: each statement borrows a pooled connection for itself."""

    def __init__(self, connection: wit.Connection):
        self._target = connection

    @classmethod
    def open(cls, name: str) -> "Connection":
        return cls(call(wit.Connection.open, name))

    def begin(self) -> Transaction:
        return Transaction(_run(self._target.begin))
