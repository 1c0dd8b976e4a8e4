"""PostgreSQL through a pool the host holds (`hostel:host/postgres@0.2.0`): every statement is
`async`, so a handler can await several at once; statements on a connection awaited together
run at once, each on a pooled connection of its own. Parameters, rows and errors are the WASI
0.2 SDK's (`hostel.pg`).

    db = hostel_service.pg.Connection.open("db")
    notes, users = await asyncio.gather(db.query("SELECT ..."), db.query("SELECT ..."))
"""

from typing import Any, Awaitable, List, Optional, TypeVar

from componentize_py_types import Err
from wit_world.imports import postgres_async as wit

from hostel.errors import call
from hostel.pg import DbError, Row, _error, _param, _rows

__all__ = ["Connection", "DbError", "Row", "Transaction"]

T = TypeVar("T")


async def _run(awaitable: Awaitable[T]) -> T:
    """Awaits a binding, raising its error as the WASI 0.2 SDK does."""
    try:
        return await awaitable
    except Err as e:
        raise _error(e) from None


class _Statements:
    """What a connection and a transaction both do."""

    _target: Any

    async def query(self, sql: str, *params: Any) -> List[Row]:
        return _rows(await _run(self._target.query(sql, [_param(p) for p in params])))

    async def query_one(self, sql: str, *params: Any) -> Optional[Row]:
        rows = await self.query(sql, *params)
        return rows[0] if rows else None

    async def execute(self, sql: str, *params: Any) -> int:
        """The number of rows the statement affected."""
        return await _run(self._target.execute(sql, [_param(p) for p in params]))


class Transaction(_Statements):
    """One leased connection from BEGIN to `commit` or `rollback`; one never committed is
    rolled back by the host."""

    def __init__(self, tx: wit.Transaction):
        self._target = tx

    async def commit(self) -> None:
        await _run(self._target.commit())

    async def rollback(self) -> None:
        await _run(self._target.rollback())


class Connection(_Statements):
    """A granted pool: each statement borrows a pooled connection for itself."""

    def __init__(self, connection: wit.Connection):
        self._target = connection

    @classmethod
    def open(cls, name: str) -> "Connection":
        return cls(call(wit.Connection.open, name))

    async def begin(self) -> Transaction:
        return Transaction(await _run(self._target.begin()))
