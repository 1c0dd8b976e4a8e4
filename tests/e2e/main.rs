//! End-to-end tests: the real `hostel` binary, real components, real HTTP.
//!
//! One test binary (as wasmtime does for wasi-http), one module per concern.

mod admin;
mod balancer;
mod cluster;
mod compat;
mod config_errors;
mod conformance;
mod fuzz;
mod guest_tools;
mod hostile;
mod keyvalue;
mod kubernetes;
mod lifecycle;
mod limits;
mod metrics;
mod nats_kv;
mod operability;
mod outbound;
mod postgres;
mod privilege;
mod protocol;
mod redis;
mod serving;
mod traces;
mod usage;
mod wasi_p3;

use hostel_tests::{guest, shared_code_cache, toml_path};

/// The config most tests use: one default tenant with every test guest mounted, plus a
/// `slow.test` tenant with a longer deadline for the spinning guest.
pub fn standard_config() -> String {
    format!(
        r#"
[server]
code_cache = {cache}
shutdown_grace = "10s"

[defaults.limits]
timeout = "2s"
memory = "32MiB"
request_body = "1MiB"

[tenants.main.apps]
hello = {{ route = "/hello", component = {hello} }}
counter = {{ route = "/counter", component = {counter} }}
spin = {{ route = "/spin", component = {spin} }}
bomb = {{ route = "/bomb", component = {bomb} }}
panic = {{ route = "/panic", component = {panic} }}
echo = {{ route = "/echo", component = {echo} }}
probe = {{ route = "/probe", component = {probe} }}

[tenants.slow]
hosts = ["slow.test"]
limits = {{ timeout = "8s" }}
apps.spin = {{ route = "/", component = {spin} }}
"#,
        cache = toml_path(&shared_code_cache()),
        hello = toml_path(&guest("hello")),
        counter = toml_path(&guest("guest-global-counter")),
        spin = toml_path(&guest("guest-spin")),
        bomb = toml_path(&guest("guest-memory-bomb")),
        panic = toml_path(&guest("guest-panic")),
        echo = toml_path(&guest("guest-echo")),
        probe = toml_path(&guest("guest-probe")),
    )
}
