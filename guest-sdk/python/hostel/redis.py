"""Redis through a pool the host holds (`hostel:host/redis`).

    r = hostel.redis.Redis.open("cache")
    hits = r.incr("hits")
    top = r.execute("ZRANGE", "board", 0, 9)

Keys are namespaced per tenant by the host. `transaction()` leases a connection for
WATCH/MULTI/EXEC until the transaction is dropped (use it in a `with` block).
"""

from typing import Any, List, Optional, Tuple, Union

from wit_world.imports import redis as wit

from .errors import call

Arg = Union[str, bytes, int, float]


def _bytes(arg: Arg) -> bytes:
    if isinstance(arg, bytes):
        return arg
    return str(arg).encode()


def command(name: str, *args: Arg) -> wit.Command:
    return wit.Command(name, [_bytes(a) for a in args])


def _value(value: Any) -> Any:
    """A flattened reply element as a plain Python value."""
    return None if isinstance(value, wit.Value_Nil) else value.value


class Redis:
    def __init__(self, connection: wit.Connection):
        self._c = connection

    @classmethod
    def open(cls, name: str) -> "Redis":
        return cls(call(wit.Connection.open, name))

    def get(self, key: str) -> Optional[bytes]:
        return call(self._c.get, key)

    def set(self, key: str, value: Arg, expire_ms: Optional[int] = None) -> None:
        call(self._c.set, key, _bytes(value), expire_ms)

    def incr(self, key: str, delta: int = 1) -> int:
        return call(self._c.incr, key, delta)

    def delete(self, *keys: str) -> int:
        return call(self._c.del_, list(keys))

    def exists(self, *keys: str) -> int:
        return call(self._c.exists, list(keys))

    def expire(self, key: str, expire_ms: int) -> bool:
        return call(self._c.expire, key, expire_ms)

    def hget(self, key: str, field: str) -> Optional[bytes]:
        return call(self._c.hget, key, field)

    def hset(self, key: str, field: str, value: Arg) -> bool:
        return call(self._c.hset, key, field, _bytes(value))

    def hgetall(self, key: str) -> List[Tuple[str, bytes]]:
        return call(self._c.hgetall, key)

    def rpush(self, key: str, *values: Arg) -> int:
        return call(self._c.rpush, key, [_bytes(v) for v in values])

    def lrange(self, key: str, start: int, stop: int) -> List[bytes]:
        return call(self._c.lrange, key, start, stop)

    def sadd(self, key: str, *members: Arg) -> int:
        return call(self._c.sadd, key, [_bytes(m) for m in members])

    def smembers(self, key: str) -> List[bytes]:
        return call(self._c.smembers, key)

    def publish(self, channel: str, message: Arg) -> int:
        return call(self._c.publish, channel, _bytes(message))

    def execute(self, name: str, *args: Arg) -> List[Any]:
        """Any command the host can namespace; array replies come flattened."""
        return [_value(v) for v in call(self._c.execute, command(name, *args))]

    def transaction(self) -> wit.Transaction:
        return call(self._c.transaction)
