"""Key-value stores held by the host, through the standard `wasi:keyvalue` (0.2.0-draft2).

    bucket = hostel.kv.Bucket.open("default")
    visits = bucket.increment("visits", 1)
"""

from typing import Callable, List, Optional

from componentize_py_types import Err
from wit_world.imports import atomics, batch

# componentize-py names the module after the whole interface: wasi:config has a `store` too.
from wit_world.imports import wasi_keyvalue_store as store

from .errors import HostError, call


class Bucket:
    """An open store; the host keeps each tenant's keys apart."""

    def __init__(self, bucket: store.Bucket):
        self._bucket = bucket

    @classmethod
    def open(cls, name: str) -> "Bucket":
        return cls(call(store.open, name))

    def get(self, key: str) -> Optional[bytes]:
        return call(self._bucket.get, key)

    def set(self, key: str, value: bytes) -> None:
        call(self._bucket.set, key, value)

    def delete(self, key: str) -> None:
        call(self._bucket.delete, key)

    def exists(self, key: str) -> bool:
        return call(self._bucket.exists, key)

    def keys(self) -> List[str]:
        """Every key, following the host's pages."""
        keys: List[str] = []
        cursor: Optional[str] = None
        while True:
            page = call(self._bucket.list_keys, cursor)
            keys.extend(page.keys)
            if page.cursor is None:
                return keys
            cursor = page.cursor

    def increment(self, key: str, delta: int) -> int:
        """Adds `delta` to the counter at `key` (missing counts as 0) atomically."""
        return call(atomics.increment, self._bucket, key, delta)

    def update(self, key: str, change: Callable[[Optional[bytes]], bytes]) -> bytes:
        """Replaces the value at `key` with `change(current)` without losing another writer's
        update: compare-and-swap, run again with the newer value on conflict."""
        cas = call(atomics.Cas.new, self._bucket, key)
        while True:
            new = change(call(cas.current))
            try:
                atomics.swap(cas, new)
                return new
            except Err as e:
                if isinstance(e.value, atomics.CasError_CasFailed):
                    cas = e.value.value
                    continue
                raise HostError("store-error", repr(e.value.value)) from None

    def get_many(self, keys: List[str]) -> List[Optional[bytes]]:
        return [value for _, value in call(batch.get_many, self._bucket, keys)]
