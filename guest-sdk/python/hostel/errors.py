"""Errors from the host, as one exception type the handler can catch."""

from typing import Any, Callable, TypeVar

from componentize_py_types import Err

T = TypeVar("T")


class HostError(Exception):
    """A host call failed. `kind` is the WIT error case in kebab case (`unavailable`,
    `not-granted`, `no-such-store`, `server`, ...); `detail` the host's explanation."""

    def __init__(self, kind: str, detail: str = ""):
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind
        self.detail = detail

    @property
    def unavailable(self) -> bool:
        """The server behind a pool is unreachable or the pool is exhausted: answer 503."""
        return self.kind == "unavailable"


def from_wit(error: Any) -> HostError:
    """`Error_NotGranted("...")` → HostError("not-granted", "...")."""
    name = type(error).__name__.split("_", 1)[-1]
    kind = "".join("-" + c.lower() if c.isupper() else c for c in name).lstrip("-")
    value = getattr(error, "value", "")
    return HostError(kind, value if isinstance(value, str) else repr(value))


def call(fn: Callable[..., T], *args: Any) -> T:
    """Calls a generated binding, turning its `Err` into a `HostError`."""
    try:
        return fn(*args)
    except Err as e:
        raise from_wit(e.value) from None
