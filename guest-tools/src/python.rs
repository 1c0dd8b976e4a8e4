//! Python guests: componentize-py (CPython inside the component) at a pinned version, in a
//! virtualenv of its own.

use crate::fresh::up_to_date;
use crate::sdk::{sdk_dir, tools_dir};
use crate::steps::{run, say};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The componentize-py release Python guests are built with.
pub const COMPONENTIZE_PY_VERSION: &str = "0.25.1";

/// Module names for Hostel's interfaces in a WASI 0.3 build, where both versions of
/// `hostel:host` are present: the 0.1.0 types keep the names the WASI 0.2 SDK imports them by.
const SERVICE_MODULES: [&str; 4] = [
    "hostel:host/redis@0.1.0=redis",
    "hostel:host/postgres@0.1.0=postgres",
    "hostel:host/redis@0.2.0=redis_async",
    "hostel:host/postgres@0.2.0=postgres_async",
];

/// Whether the Python guest in `dir` is a WASI 0.3 service: its `app.py` defines `Handler`
/// (what componentize-py exports as `wasi:http/handler@0.3`) and not `IncomingHandler` (the
/// WASI 0.2 export, which wins: a 0.2 module may name a type alias `Handler`).
pub(crate) fn is_service(dir: &Path) -> Result<bool> {
    let app = std::fs::read_to_string(dir.join("app.py"))
        .with_context(|| format!("cannot read {}", dir.join("app.py").display()))?;
    Ok(defines_service(&app))
}

/// [`is_service`] on the source of `app.py`.
fn defines_service(app: &str) -> bool {
    let defines = |name: &str| {
        app.lines().any(|line| {
            let line = line.strip_prefix("class ").unwrap_or(line);
            line.strip_prefix(name)
                .is_some_and(|rest| rest.trim_start().starts_with(['=', '(', ':']))
        })
    };
    defines("Handler") && !defines("IncomingHandler")
}

pub(crate) fn build(dir: &Path, out: &Path, world: &str) -> Result<()> {
    if up_to_date(dir, out) {
        return Ok(());
    }
    let componentize = need_componentize_py()?;
    let sdk = sdk_dir()?;
    say(&format!(
        "componentizing {} (Python, componentize-py; ~10 s)",
        dir.display()
    ));
    let mut command = Command::new(componentize);
    command.arg("-d").arg(sdk.join("wit"));
    if is_service(dir)? {
        command.arg("-d").arg(sdk.join("wit/service"));
        for name in SERVICE_MODULES {
            command.args(["--import-interface-name", name]);
        }
    }
    run(
        command
            .args(["-w", world, "componentize", "app", "-p"])
            .arg(dir)
            .arg("-p")
            .arg(sdk.join("guest-sdk/python"))
            .arg("-o")
            .arg(out)
            .stdout(std::process::Stdio::null()),
        "componentize-py",
    )
}

/// componentize-py at the pinned version, in a virtualenv of its own.
fn need_componentize_py() -> Result<PathBuf> {
    let venv = tools_dir()?.join("python");
    let bin = venv.join("bin/componentize-py");
    let version = Command::new(&bin).arg("--version").output();
    if version.is_ok_and(|v| {
        String::from_utf8_lossy(&v.stdout).trim()
            == format!("componentize-py {COMPONENTIZE_PY_VERSION}")
    }) {
        return Ok(bin);
    }
    say(&format!(
        "installing componentize-py {COMPONENTIZE_PY_VERSION} (PyPI) into {}",
        venv.display()
    ));
    run(
        Command::new("python3").args(["-m", "venv"]).arg(&venv),
        "python3 -m venv (install Python 3.10+; Debian: apt-get install python3 python3-venv)",
    )?;
    run(
        Command::new(venv.join("bin/pip")).args([
            "install",
            "-q",
            &format!("componentize-py=={COMPONENTIZE_PY_VERSION}"),
        ]),
        "pip install componentize-py",
    )?;
    Ok(bin)
}

#[cfg(test)]
mod tests {
    use super::defines_service as with_app;

    #[test]
    fn a_module_defining_handler_is_a_wasi_0_3_service_unless_it_defines_incoming_handler() {
        assert!(with_app("Handler = hostel_service.service(hello)\n"));
        assert!(with_app("class Handler(exports.Handler):\n    pass\n"));
        assert!(!with_app("IncomingHandler = hostel.handler(hello)\n"));
        assert!(!with_app(
            "Handler = Callable[[Request], Response]\nIncomingHandler = hostel.handler(h)\n"
        ));
        assert!(!with_app("MyHandler = 1\nhandler = 2\n"));
        assert!(
            !with_app("    Handler = 1\n"),
            "only top-level definitions count"
        );
    }
}
