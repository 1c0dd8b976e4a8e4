//! `hostel new`: a hello guest in any supported language, with a `hostel.toml` that serves it
//! and editor settings that point at the SDK.

use crate::guest::{Language, Wasi, guest_name};
use crate::js::editor_config;
use crate::sdk::sdk_dir;
use anyhow::{Context, Result, bail};
use std::path::Path;

/// Creates `dir` with a hello guest in `language` for `wasi` and a `hostel.toml` that serves
/// it.
pub fn new(language: Language, wasi: Wasi, dir: &Path) -> Result<()> {
    if dir.exists() {
        bail!("{} already exists: choose a new name", dir.display());
    }
    if wasi == Wasi::V0_3 && !matches!(language, Language::Rust | Language::Python) {
        bail!(
            "{} guests are WASI 0.2 handlers: its toolchain cannot build WASI 0.3 components \
             yet (Hostel's WASI 0.3 SDKs are for Rust and Python); leave out `--wasi 0.3` for \
             a WASI 0.2 {} guest, which Hostel serves alike",
            language.name(),
            language.name()
        );
    }
    let name = guest_name(dir)?;
    let sdk = sdk_dir()?;
    // The Rust SDK of each WASI release: a crate and its hello.
    let (rust_sdk, rust_sdk_dir, rust_hello) = match wasi {
        Wasi::V0_2 => ("hostel-guest", "guest-sdk/rust", RUST_HELLO),
        Wasi::V0_3 => (
            "hostel-service",
            "guest-sdk/rust-service",
            RUST_SERVICE_HELLO,
        ),
    };
    let files: Vec<(&str, String)> = match language {
        Language::Rust => vec![
            (
                "Cargo.toml",
                format!(
                    "[package]\nname = \"{name}\"\nedition = \"2024\"\nversion = \"0.1.0\"\n\
                     publish = false\n\n[lib]\ncrate-type = [\"cdylib\"]\n\n[dependencies]\n\
                     {rust_sdk} = {{ path = {:?} }}\n\n[profile.release]\nstrip = \"debuginfo\"\n",
                    sdk.join(rust_sdk_dir).display().to_string()
                ),
            ),
            ("src/lib.rs", rust_hello.into()),
            (
                ".cargo/config.toml",
                "# A small stack: every resident page of a sandbox is reset after each request.\n\
                 [target.wasm32-wasip2]\nrustflags = [\"-C\", \"link-arg=-zstack-size=262144\"]\n"
                    .into(),
            ),
            (".gitignore", "target/\nbuild/\n".into()),
        ],
        Language::Python => vec![
            (
                "app.py",
                match wasi {
                    Wasi::V0_2 => PYTHON_HELLO,
                    Wasi::V0_3 => PYTHON_SERVICE_HELLO,
                }
                .into(),
            ),
            (".gitignore", "build/\n__pycache__/\n".into()),
        ],
        Language::Js => vec![
            ("app.js", JS_HELLO.into()),
            (".gitignore", "build/\n".into()),
            ("jsconfig.json", editor_config("app.js", &sdk)),
        ],
        Language::Ts => vec![
            ("app.ts", TS_HELLO.into()),
            (".gitignore", "build/\n".into()),
            ("tsconfig.json", editor_config("app.ts", &sdk)),
        ],
        Language::C => vec![
            ("app.c", C_HELLO.into()),
            (".gitignore", "build/\n".into()),
            // clangd finds the SDK header and the bindings `hostel build` generates.
            (
                "compile_flags.txt",
                format!(
                    "--target=wasm32-wasi\n-I{}\n-Ibuild/bindings\n",
                    sdk.join("guest-sdk/c").display()
                ),
            ),
        ],
    };
    for (path, text) in files {
        let target = dir.join(path);
        std::fs::create_dir_all(target.parent().expect("inside the guest folder"))?;
        std::fs::write(&target, text)
            .with_context(|| format!("cannot write {}", target.display()))?;
    }
    std::fs::write(
        dir.join("hostel.toml"),
        format!(
            "# Serve this guest: hostel build . && hostel serve (which reads ./hostel.toml)\n\
             [apps.{name}]\nroute = \"/\"\ncomponent = \"build/{name}.wasm\"\n{GRANTS_EXAMPLE}"
        ),
    )?;
    println!(
        "created {0} ({1} guest); next: hostel build {0} && hostel serve --config {0}/hostel.toml",
        dir.display(),
        language.name()
    );
    Ok(())
}

/// The scaffolded config grants nothing; this shows how to grant a store and a pool.
const GRANTS_EXAMPLE: &str = r#"
# Guests reach only what is granted. To use the embedded key-value store ("default") and a
# Redis pool ("cache") from this guest, uncomment:
# [stores.default]
# kind = "embedded"
# path = "data/kv.redb"
#
# [pools.cache]
# kind = "redis"
# url = "redis://127.0.0.1:6379"
#
# [grants]
# stores = ["default"]
# pools = ["cache"]
"#;

const RUST_HELLO: &str = r#"use hostel_guest::{Request, Response};

fn hello(req: Request) -> Response {
    Response::text(200, format!("Hello from Hostel! You asked for {}\n", req.path()))
}

hostel_guest::http_handler!(hello);
"#;

const RUST_SERVICE_HELLO: &str = r#"use hostel_service::{Request, Response};

async fn hello(req: Request) -> Response {
    Response::text(200, format!("Hello from Hostel! You asked for {}\n", req.path()))
}

hostel_service::service!(hello);
"#;

const PYTHON_HELLO: &str = r#"import hostel


def hello(req: hostel.Request) -> hostel.Response:
    return hostel.Response.text(200, f"Hello from Hostel! You asked for {req.path}\n")


IncomingHandler = hostel.handler(hello)
"#;

const PYTHON_SERVICE_HELLO: &str = r#"import hostel_service


async def hello(req: hostel_service.Request) -> hostel_service.Response:
    return hostel_service.Response.text(200, f"Hello from Hostel! You asked for {req.path}\n")


Handler = hostel_service.service(hello)
"#;

const JS_HELLO: &str = r#"import { serve, text } from "hostel";

serve((request) => text(200, `Hello from Hostel! You asked for ${new URL(request.url).pathname}\n`));
"#;

const TS_HELLO: &str = r#"import { serve, text } from "hostel";

serve((request: Request): Response =>
  text(200, `Hello from Hostel! You asked for ${new URL(request.url).pathname}\n`));
"#;

const C_HELLO: &str = r#"#include "hostel.h"

static hostel_response hello(const hostel_request *req) {
    return hostel_text(200, "Hello from Hostel! You asked for %s\n", req->path);
}

HOSTEL_HANDLER(hello)
"#;
