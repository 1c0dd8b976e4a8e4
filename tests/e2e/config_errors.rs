//! Bad configuration is refused at startup: exit code ≠ 0, and a message naming the file,
//! the key and the reason.

use hostel_tests::*;

/// Runs `hostel check` on `config` (written to `hostel.toml` in a fresh folder with `files`)
/// and returns its stderr, asserting it failed.
fn refused(config: &str, files: &[(&str, &[u8])]) -> String {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    std::fs::write(dir.path().join("hostel.toml"), config).unwrap();
    let (status, stderr) = run_hostel(&["check", "--config", "hostel.toml"], dir.path()).unwrap();
    assert!(!status.success(), "accepted a bad config:\n{config}");
    assert!(stderr.contains("hostel.toml"), "names the file: {stderr}");
    // `serve` refuses it the same way.
    let (status, serve_stderr) =
        run_hostel(&["serve", "--config", "hostel.toml"], dir.path()).unwrap();
    assert!(!status.success());
    assert!(serve_stderr.contains("hostel.toml"), "{serve_stderr}");
    stderr
}

#[test]
fn unknown_key_is_refused() {
    let stderr = refused("[server]\nlisten = \"127.0.0.1:0\"\ntimeout = 3\n", &[]);
    assert!(stderr.contains("unknown field `timeout`"), "{stderr}");
}

#[test]
fn wrong_type_is_refused() {
    let stderr = refused("[defaults.limits]\nmemory = true\n", &[]);
    assert!(stderr.contains("memory"), "{stderr}");
    assert!(stderr.contains("64MiB"), "says what it expected: {stderr}");
}

#[test]
fn missing_component_file_is_refused() {
    let stderr = refused(
        "[apps.api]\nroute = \"/\"\ncomponent = \"missing.wasm\"\n",
        &[],
    );
    assert!(stderr.contains("apps.api.component"), "{stderr}");
    assert!(stderr.contains("missing.wasm"), "{stderr}");
    assert!(stderr.contains("not found"), "{stderr}");
}

#[test]
fn file_that_is_not_wasm_is_refused() {
    let stderr = refused(
        "[apps.api]\nroute = \"/\"\ncomponent = \"api.wasm\"\n",
        &[("api.wasm", b"#!/bin/sh\necho hi\n")],
    );
    assert!(stderr.contains("apps.api.component"), "{stderr}");
    assert!(stderr.contains("not a WebAssembly file"), "{stderr}");
}

#[test]
fn core_module_is_refused_with_a_hint() {
    // The smallest valid core module: magic + version 1.
    let stderr = refused(
        "[apps.api]\nroute = \"/\"\ncomponent = \"core.wasm\"\n",
        &[("core.wasm", b"\0asm\x01\0\0\0")],
    );
    assert!(
        stderr.contains("core WebAssembly module, not a component"),
        "{stderr}"
    );
    assert!(stderr.contains("wasm32-wasip2"), "{stderr}");
}

#[test]
fn corrupt_component_is_refused() {
    let stderr = refused(
        "[apps.api]\nroute = \"/\"\ncomponent = \"bad.wasm\"\n",
        &[("bad.wasm", b"\0asm\x0d\0\x01\0\x07\x99garbage")],
    );
    assert!(
        stderr.contains("not a valid WebAssembly component"),
        "{stderr}"
    );
}

#[test]
fn duplicate_routes_are_refused() {
    let hello = toml_path(&guest("hello"));
    let stderr = refused(
        &format!(
            "[apps.a]\nroute = \"/x\"\ncomponent = {hello}\n[apps.b]\nroute = \"/x/\"\ncomponent = {hello}\n"
        ),
        &[],
    );
    assert!(stderr.contains("is held by app `a`"), "{stderr}");
}

#[test]
fn valid_config_passes_check() {
    let dir = folder_serving_hello();
    let (status, stderr) = run_hostel(&["check", "--config", "hostel.toml"], dir.path()).unwrap();
    assert!(status.success(), "{stderr}");
}

#[test]
fn the_repository_config_checks_with_every_example_built() {
    // What `scripts/run` serves: the Rust examples and a hello in each other language. Run
    // from a folder under target/, so that the compiled-code cache lands there (and is reused),
    // not in the repository.
    let scratch = target_dir().join("repo-config-check");
    std::fs::create_dir_all(&scratch).unwrap();
    let config = repo_root().join("hostel.toml");
    let (status, stderr) =
        run_hostel(&["check", "--config", config.to_str().unwrap()], &scratch).unwrap();
    assert!(status.success(), "{stderr}");
}

#[test]
fn a_secret_from_an_unset_environment_variable_is_refused() {
    let stderr = refused(
        "[grants]\nsecrets = { api-key = \"HOSTEL_TEST_SURELY_UNSET\" }\n\
         [apps.api]\nroute = \"/\"\ncomponent = \"api.wasm\"\n",
        &[("api.wasm", &std::fs::read(guest("hello")).unwrap())],
    );
    assert!(stderr.contains("grants.secrets.api-key"), "{stderr}");
    assert!(stderr.contains("HOSTEL_TEST_SURELY_UNSET"), "{stderr}");
}

#[test]
fn a_nats_store_with_a_bad_url_or_bucket_is_refused_naming_the_key() {
    let stderr = refused(
        "[stores.events]\nkind = \"nats\"\nurl = \"redis://127.0.0.1:4222\"\n",
        &[],
    );
    assert!(stderr.contains("stores.events.url"), "{stderr}");
    assert!(
        stderr.contains("nats://"),
        "says what it expected: {stderr}"
    );
    let stderr = refused(
        "[stores.events]\nkind = \"nats\"\nurl = \"nats://127.0.0.1:4222\"\nbucket = \"my.kv\"\n",
        &[],
    );
    assert!(stderr.contains("stores.events.bucket"), "{stderr}");
    assert!(stderr.contains("\"my.kv\""), "{stderr}");
}
