"""Redis through a pool the host holds (`hostel:host/redis@0.2.0`): every call that waits on
the server is `async`, so a handler can await several at once.

    r = hostel_service.redis.Redis.open("cache")
    hits, last = await asyncio.gather(r.incr("hits"), r.get("last"))

The same calls as the WASI 0.2 SDK's `hostel.redis`, whose commands, arguments and reply
values these are. Keys are namespaced per tenant by the host. `transaction()` leases a
connection for WATCH/MULTI/EXEC (or blocking commands) until it is dropped; it runs one call
at a time.
"""

from typing import Any, Awaitable, List, Optional, Tuple, TypeVar

from componentize_py_types import Err
from wit_world.imports import redis_async as wit

from hostel.errors import call, from_wit
from hostel.redis import Arg, _bytes, _value, command

T = TypeVar("T")


async def _call(awaitable: Awaitable[T]) -> T:
    try:
        return await awaitable
    except Err as e:
        raise from_wit(e.value) from None


class Redis:
    def __init__(self, connection: wit.Connection):
        self._c = connection

    @classmethod
    def open(cls, name: str) -> "Redis":
        return cls(call(wit.Connection.open, name))

    async def get(self, key: str) -> Optional[bytes]:
        return await _call(self._c.get(key))

    async def set(self, key: str, value: Arg, expire_ms: Optional[int] = None) -> None:
        await _call(self._c.set(key, _bytes(value), expire_ms))

    async def incr(self, key: str, delta: int = 1) -> int:
        return await _call(self._c.incr(key, delta))

    async def delete(self, *keys: str) -> int:
        return await _call(self._c.del_(list(keys)))

    async def exists(self, *keys: str) -> int:
        return await _call(self._c.exists(list(keys)))

    async def expire(self, key: str, expire_ms: int) -> bool:
        return await _call(self._c.expire(key, expire_ms))

    async def hget(self, key: str, field: str) -> Optional[bytes]:
        return await _call(self._c.hget(key, field))

    async def hset(self, key: str, field: str, value: Arg) -> bool:
        return await _call(self._c.hset(key, field, _bytes(value)))

    async def hgetall(self, key: str) -> List[Tuple[str, bytes]]:
        return await _call(self._c.hgetall(key))

    async def rpush(self, key: str, *values: Arg) -> int:
        return await _call(self._c.rpush(key, [_bytes(v) for v in values]))

    async def lrange(self, key: str, start: int, stop: int) -> List[bytes]:
        return await _call(self._c.lrange(key, start, stop))

    async def sadd(self, key: str, *members: Arg) -> int:
        return await _call(self._c.sadd(key, [_bytes(m) for m in members]))

    async def smembers(self, key: str) -> List[bytes]:
        return await _call(self._c.smembers(key))

    async def publish(self, channel: str, message: Arg) -> int:
        return await _call(self._c.publish(channel, _bytes(message)))

    async def execute(self, name: str, *args: Arg) -> List[Any]:
        """Any command the host can namespace; the reply flattened into plain values."""
        return [_value(v) for v in await _call(self._c.execute(command(name, *args)))]

    async def transaction(self) -> wit.Transaction:
        """A leased connection (the raw binding: `watch`, `execute`, `exec`, all async)."""
        return await _call(self._c.transaction())
