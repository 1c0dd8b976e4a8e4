//! `hostel new` and `hostel build`: a new guest in each language builds and serves as is.

use hostel_tests::*;
use std::path::Path;
use std::process::Command;

/// Runs `hostel ARGS` in `dir`, expecting success; returns stdout + stderr.
fn hostel(dir: &Path, args: &[&str]) -> String {
    let output = Command::new(hostel_bin())
        .args(args)
        .current_dir(dir)
        // Rust guests reuse the suite's compiled dependencies.
        .env("CARGO_TARGET_DIR", target_dir())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "hostel {args:?} failed:\n{text}");
    text
}

/// The files `hostel new` writes with the SDK folder's path in them.
const SDK_REFERENCES: [&str; 4] = [
    "Cargo.toml",
    "jsconfig.json",
    "tsconfig.json",
    "compile_flags.txt",
];
/// An SDK folder of some other hostel, one that does not exist.
const STALE_SDK: &str = "/sdk/0000000000000000/";

/// Makes the files `hostel new` wrote say what an older hostel would have written; returns how
/// many files changed.
fn make_sdk_references_stale(app: &Path) -> usize {
    let mut changed = 0;
    for name in SDK_REFERENCES {
        let path = app.join(name);
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let Some(at) = text.find("/sdk/") else {
            continue;
        };
        let stale = format!(
            "{}{STALE_SDK}{}",
            &text[..at],
            &text[at + STALE_SDK.len()..]
        );
        std::fs::write(&path, stale).unwrap();
        changed += 1;
    }
    changed
}

/// How many of the scaffolded files still name the stale SDK folder.
fn stale_sdk_references(app: &Path) -> usize {
    SDK_REFERENCES
        .iter()
        .filter_map(|name| std::fs::read_to_string(app.join(name)).ok())
        .filter(|text| text.contains(STALE_SDK))
        .count()
}

async fn new_guest_builds_and_serves(language: &str) {
    new_guest_for_wasi_builds_and_serves(language, &[], "wasi:http/proxy (WASI 0.2)").await;
}

/// `hostel new LANGUAGE my-app EXTRA..`, then build and serve it: a hello of `world`.
async fn new_guest_for_wasi_builds_and_serves(language: &str, extra: &[&str], world: &str) {
    let work = tempfile::tempdir().unwrap();
    let mut args = vec!["new", language, "my-app"];
    args.extend(extra);
    let created = hostel(work.path(), &args);
    assert!(created.contains("created my-app"), "{created}");
    // Built by a newer hostel than the one that scaffolded it: the build points the
    // scaffolded files at its own SDK (for Rust, the old folder would not even build).
    let app = work.path().join("my-app");
    let stale = make_sdk_references_stale(&app);
    assert_eq!(stale > 0, language != "python", "{language}");
    let built = hostel(work.path(), &["build", "my-app"]);
    assert!(built.contains("built my-app/build/my-app.wasm"), "{built}");
    assert_eq!(stale_sdk_references(&app), 0, "{built}");

    // The scaffolded config serves the built component.
    let config = std::fs::read_to_string(app.join("hostel.toml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("build")).unwrap();
    std::fs::copy(
        app.join("build/my-app.wasm"),
        dir.path().join("build/my-app.wasm"),
    )
    .unwrap();
    std::fs::write(dir.path().join("hostel.toml"), &config).unwrap();
    let checked = hostel(dir.path(), &["check", "--config", "hostel.toml"]);
    assert!(checked.contains(world), "{checked}");
    let host = HostProcess::start_in(dir, &config).unwrap();
    let reply = get(&http1_client(), &host.url("/hi")).await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), "Hello from Hostel! You asked for /hi\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_python_guest_builds_and_serves() {
    new_guest_builds_and_serves("python").await;
}

#[test]
fn the_proxy_world_builds_a_separate_portable_component() {
    let work = tempfile::tempdir().unwrap();
    hostel(work.path(), &["new", "python", "portable"]);
    let built = hostel(work.path(), &["build", "portable", "--world", "proxy"]);
    assert!(
        built.contains("built portable/build/portable.proxy.wasm"),
        "{built}"
    );
    // The proxy build does not pass for the Hostel-world one.
    assert!(!work.path().join("portable/build/portable.wasm").exists());
    let check =
        "[apps.portable]\nroute = \"/\"\ncomponent = \"portable/build/portable.proxy.wasm\"\n";
    std::fs::write(work.path().join("hostel.toml"), check).unwrap();
    hostel(work.path(), &["check", "--config", "hostel.toml"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_rust_guest_builds_and_serves() {
    new_guest_builds_and_serves("rust").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_rust_wasi_0_3_service_builds_and_serves() {
    new_guest_for_wasi_builds_and_serves(
        "rust",
        &["--wasi", "0.3"],
        "wasi:http/service (WASI 0.3)",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_python_wasi_0_3_service_builds_and_serves() {
    new_guest_for_wasi_builds_and_serves(
        "python",
        &["--wasi", "0.3"],
        "wasi:http/service (WASI 0.3)",
    )
    .await;
}

#[test]
fn build_and_new_refuse_what_they_cannot_do() {
    let work = tempfile::tempdir().unwrap();
    let (status, stderr) = run_hostel(&["build", "."], work.path()).unwrap();
    assert!(!status.success());
    assert!(stderr.contains("no guest hostel can build"), "{stderr}");
    assert!(stderr.contains("hostel new"), "says what to do: {stderr}");

    std::fs::create_dir(work.path().join("taken")).unwrap();
    let (status, stderr) = run_hostel(&["new", "python", "taken"], work.path()).unwrap();
    assert!(!status.success());
    assert!(stderr.contains("already exists"), "{stderr}");

    let (status, stderr) =
        run_hostel(&["new", "js", "async", "--wasi", "0.3"], work.path()).unwrap();
    assert!(!status.success());
    assert!(
        stderr.contains("JavaScript guests are WASI 0.2 handlers"),
        "{stderr}"
    );
    assert!(!work.path().join("async").exists(), "nothing written");
    let (status, stderr) = run_hostel(&["new", "cobol", "x"], work.path()).unwrap();
    assert!(!status.success());
    assert!(
        stderr.contains("rust") && stderr.contains("python"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_javascript_guest_builds_and_serves() {
    new_guest_builds_and_serves("js").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_c_guest_builds_and_serves() {
    new_guest_builds_and_serves("c").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_typescript_guest_builds_and_serves() {
    new_guest_builds_and_serves("ts").await;
}

#[test]
fn typescript_guests_are_type_checked_against_declarations_generated_from_the_wit() {
    let work = tempfile::tempdir().unwrap();
    hostel(work.path(), &["new", "ts", "typed"]);
    // A handler that treats a host error's kind as something the WIT does not have.
    std::fs::write(
        work.path().join("typed/app.ts"),
        r#"import { serve, text, HostError } from "hostel";
import { Bucket } from "hostel/kv";

serve((request: Request): Response => {
  try {
    return text(200, String(Bucket.open("default").increment("n")));
  } catch (e) {
    if (e instanceof HostError && e.kind === "no-such-bucket") return text(404, "none\n");
    throw e;
  }
});
"#,
    )
    .unwrap();
    let (status, stderr) = run_hostel(&["build", "typed"], work.path()).unwrap();
    assert!(!status.success(), "a type error fails the build");
    assert!(stderr.contains("app.ts"), "{stderr}");
    assert!(
        stderr.contains("no-such-bucket"),
        "tsc names the bad kind: {stderr}"
    );
    assert!(!work.path().join("typed/build/typed.wasm").exists());

    // The kinds the WIT does have check, and the raw interfaces are typed too.
    let fixed = std::fs::read_to_string(work.path().join("typed/app.ts"))
        .unwrap()
        .replace("no-such-bucket", "no-such-store")
        .replace(
            "serve((",
            "import type { Value } from \"hostel:host/redis@0.1.0\";\n\
             export const nil: Value = { tag: \"nil\" };\n\nserve((",
        );
    std::fs::write(work.path().join("typed/app.ts"), fixed).unwrap();
    let built = hostel(work.path(), &["build", "typed"]);
    assert!(built.contains("built typed/build/typed.wasm"), "{built}");
}

#[test]
fn c_guests_are_built_for_the_hostel_world_only() {
    let work = tempfile::tempdir().unwrap();
    hostel(work.path(), &["new", "c", "native"]);
    let (status, stderr) =
        run_hostel(&["build", "native", "--world", "proxy"], work.path()).unwrap();
    assert!(!status.success());
    assert!(
        stderr.contains("C guests are built for the hostel world"),
        "{stderr}"
    );
}
