"""Hostel as a runtime of the WebAssembly/wasi-testsuite runner (scripts/wasi-testsuite).

The runner hands each test's component, environment and world to `compute_argv` and reads the
server's address from the first line the command writes to stderr. Hostel serves a component
from a config file, so this writes one per test: the component as the one app at `/`, the
test's environment as `grants.env`, and outbound calls granted to the test's own servers
only (their addresses are in that environment; they listen on loopback, which Hostel refuses
unless the grant names it).
"""
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Tuple

HOSTEL = os.environ.get("HOSTEL", "hostel")
# One folder for the run's configs and code cache (scripts/wasi-testsuite removes it).
WORK = Path(os.environ.get("HOSTEL_TESTSUITE_WORK") or tempfile.mkdtemp(prefix="hostel-wasi-testsuite-"))
CODE_CACHE = str(WORK / "code-cache")


def get_name() -> str:
    return "hostel"


def get_version() -> str:
    out = subprocess.run([HOSTEL, "--version"], capture_output=True, text=True, check=True)
    return out.stdout.split()[-1]


def get_wasi_versions() -> List[str]:
    return ["wasm32-wasip3"]


def get_wasi_worlds() -> List[str]:
    # Hostel serves HTTP handlers; `wasi:cli/command` programs are not what it runs.
    return ["wasi:http/service"]


def get_timeout_seconds() -> float:
    return 30.0


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def compute_argv(test_path: str,
                 args_env_root: Tuple[List[str], Dict[str, str], Optional[str]],
                 proposals: List[str],
                 wasi_world: str,
                 wasi_version: str) -> List[str]:
    del proposals, wasi_world, wasi_version
    args, env, root = args_env_root
    if args or root:
        raise ValueError("Hostel serves handlers: a test with arguments or a root folder "
                         "is a command, not a service")
    work = Path(tempfile.mkdtemp(dir=WORK, prefix=Path(test_path).stem + "-"))
    env_table = ", ".join(f"{_toml_string(k)} = {_toml_string(v)}" for k, v in env.items())
    servers = sorted(v for k, v in env.items() if k.startswith("HTTP_SERVER_"))
    outbound = ", ".join(_toml_string(f"http://{address}") for address in servers)
    config = work / "hostel.toml"
    config.write_text(
        "[server]\n"
        f"code_cache = {_toml_string(CODE_CACHE)}\n"
        "[apps.test]\n"
        'route = "/"\n'
        f"component = {_toml_string(os.path.abspath(test_path))}\n"
        "[grants]\n"
        f"env = {{ {env_table} }}\n"
        f"outbound = [{outbound}]\n"
        'outbound_networks = ["127.0.0.0/8"]\n'
    )
    # The runner reads the address from stderr; Hostel announces it on stdout.
    return ["sh", "-c", 'exec "$0" "$@" 1>&2', HOSTEL, "serve", "--config", str(config),
            "--listen", "127.0.0.1:0", "--log", "error"]
