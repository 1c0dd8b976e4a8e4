"""The tenant's variables and secrets (`grants.variables`, `grants.secrets` in the host config),
read-only, through the standard wasi:config/store."""

from typing import Dict, Optional

# componentize-py names the module after the whole interface: wasi:keyvalue has a `store` too.
from wit_world.imports import wasi_config_store as store

from .errors import call


def get(key: str) -> Optional[str]:
    """The value of `key`, or None when the tenant was given no such key."""
    return call(store.get, key)


def get_all() -> Dict[str, str]:
    """Every key and value the tenant was given."""
    return dict(call(store.get_all))
