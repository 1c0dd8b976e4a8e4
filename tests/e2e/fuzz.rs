//! Fuzzing the host's two doors over real TCP: the apps' listener with random bytes and
//! mangled requests (every answer is a 4xx or a closed connection, and the host keeps
//! serving), and the admin API with random methods, paths, routes, tokens, headers and bodies
//! (never a 5xx, never a change without a token that may make it). Bounded here; `scripts/fuzz`
//! runs them longer. Failing cases are kept in `tests/proptest-regressions/`.

use hostel_tests::*;
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

/// Sends `bytes`, half-closes, and reads until the host closes: the statuses it answered
/// (several when it read several requests). `None` if it neither answered nor closed in time.
fn exchange(addr: &str, bytes: &[u8]) -> Option<Vec<u16>> {
    let mut stream = TcpStream::connect(addr).expect("the host accepts connections");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // The host may close before reading everything (a 400 on the first bad line).
    let _ = stream.write_all(bytes);
    let _ = stream.shutdown(Shutdown::Write);
    let mut answer = Vec::new();
    match stream.read_to_end(&mut answer) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(_) => return None,
    }
    let text = String::from_utf8_lossy(&answer);
    Some(
        text.match_indices("HTTP/1.1 ")
            .filter_map(|(at, _)| text.get(at + 9..at + 12)?.parse().ok())
            .collect(),
    )
}

const VALID: &[&str] = &[
    "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "GET /hello?x=1 HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n",
    "POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello",
    "POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "GET / HTTP/1.0\r\n\r\n",
    "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "GET http://localhost/hello HTTP/1.1\r\nHost: other\r\n\r\n",
];

/// Random bytes, valid requests with random edits, and requests built from random parts.
fn request() -> impl Strategy<Value = Vec<u8>> {
    let edit = (
        any::<prop::sample::Index>(),
        proptest::collection::vec(any::<u8>(), 0..6),
        0usize..4,
    );
    let mangled = (
        proptest::sample::select(VALID),
        proptest::collection::vec(edit, 1..5),
    )
        .prop_map(|(valid, edits)| {
            let mut bytes = valid.as_bytes().to_vec();
            for (at, insert, remove) in edits {
                let at = at.index(bytes.len() + 1);
                let end = (at + remove).min(bytes.len());
                bytes.splice(at..end, insert);
            }
            bytes
        });
    let token = "[A-Za-z!#$%&'*+.^_`|~-]{0,8}|\\PC{0,6}";
    let header = (
        token,
        "\\PC{0,20}|[\\x00-\\x1f]{0,3}|[0-9]{0,25}|-1|chunked",
    )
        .prop_map(|(name, value)| format!("{name}: {value}\r\n"));
    let built = (
        token,
        "/\\PC{0,40}|\\*|http://[a-z.]{0,10}/[a-z]{0,5}|\\PC{0,10}",
        "HTTP/1\\.[01]|HTTP/[0-9]\\.[0-9]|\\PC{0,8}",
        proptest::collection::vec(header, 0..6),
        proptest::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(method, target, version, headers, body)| {
            let mut bytes =
                format!("{method} {target} {version}\r\n{}\r\n", headers.concat()).into_bytes();
            bytes.extend(body);
            bytes
        });
    prop_oneof![
        1 => proptest::collection::vec(any::<u8>(), 0..512),
        3 => mangled,
        3 => built,
    ]
}

#[test]
fn the_front_door_answers_malformed_http_with_a_4xx_or_a_close_and_keeps_serving() {
    let config = format!(
        "[server]\ncode_cache = {cache}\n[defaults.limits]\nrequest_body = \"64KiB\"\n\
         [apps.hello]\nroute = \"/\"\ncomponent = {hello}\n\
         [apps.echo]\nroute = \"/echo\"\ncomponent = {echo}\n",
        cache = toml_path(&shared_code_cache()),
        hello = toml_path(&guest("hello")),
        echo = toml_path(&guest("guest-echo")),
    );
    let host = HostProcess::start(&config).unwrap();
    let mut runner = TestRunner::new(fuzz_config(1500, file!()));
    let seen = std::sync::Mutex::new(std::collections::BTreeMap::<u16, u32>::new());
    let outcome = runner.run(&request(), |bytes| {
        let statuses = exchange(&host.addr, &bytes);
        prop_assert!(
            statuses.is_some(),
            "neither answered nor closed within 10 s"
        );
        let statuses = statuses.unwrap();
        for &status in &statuses {
            let request = String::from_utf8_lossy(&bytes);
            prop_assert!(status < 500, "answered {} to {:?}", status, request);
        }
        // 0: closed without an answer.
        for status in if statuses.is_empty() {
            vec![0]
        } else {
            statuses
        } {
            *seen.lock().unwrap().entry(status).or_default() += 1;
        }
        Ok(())
    });
    let seen = seen.into_inner().unwrap();
    println!(
        "fuzz front door: {} cases, answers {seen:?} (0: closed)",
        runner.config().cases
    );
    outcome.unwrap();
    // Some mangled requests still reach the apps (most are refused at the door).
    assert!(
        seen.get(&200).copied().unwrap_or(0) * 100 >= runner.config().cases,
        "{seen:?}"
    );
    // Still serving, and nothing in the host panicked.
    assert_eq!(exchange(&host.addr, VALID[0].as_bytes()), Some(vec![200]));
    assert!(!host.log().contains("panicked"), "{}", host.log());
}

use crate::admin::{ACME, GLOBEX, OPERATOR};

/// A random admin request; `true` when it carries a token that may change acme's apps.
fn admin_request(component: &'static [u8]) -> impl Strategy<Value = (Vec<u8>, bool)> {
    let segment = prop_oneof![
        proptest::sample::select(
            &[
                "v1", "tenants", "apps", "acme", "globex", "nobody", "web", "fixed", "..",
                "%2e%2e", "a%2Fb", "%00", ""
            ][..]
        )
        .prop_map(str::to_string),
        "\\PC{0,8}",
    ];
    let app_path = (
        proptest::sample::select(&["acme", "globex", "nobody", "ACME", ""][..]),
        proptest::sample::select(&["web", "fixed", "kept", "a-b_c", "..", "x y", "é", ""][..]),
    )
        .prop_map(|(tenant, app)| format!("/v1/tenants/{tenant}/apps/{app}"));
    let path = prop_oneof![
        proptest::collection::vec(segment, 0..7).prop_map(|s| format!("/{}", s.join("/"))),
        app_path,
        Just("/v1/apps".to_string()),
    ];
    let query = prop_oneof![
        Just(String::new()),
        "/[a-z/]{0,12}|/|\\PC{0,12}|%2F..%2F|/a/../b".prop_map(|r| format!("?route={r}")),
        "\\PC{0,20}".prop_map(|q| format!("?{q}")),
    ];
    let auth = prop_oneof![
        1 => Just(None),
        2 => Just(Some(ACME.to_string())),
        1 => proptest::sample::select(&["", "wrong", "operator-token-for-tests-2", "Bearer"][..])
            .prop_map(|t| Some(t.to_string())),
        1 => "\\PC{0,16}".prop_map(Some),
    ];
    let body = prop_oneof![
        3 => Just(Vec::new()),
        3 => proptest::collection::vec(any::<u8>(), 0..256),
        1 => Just(component.to_vec()),
    ];
    let method = proptest::sample::select(
        &[
            "GET", "PUT", "DELETE", "POST", "PATCH", "HEAD", "OPTIONS", "TRACE", "PUTT",
        ][..],
    );
    let header = ("[a-z-]{1,10}", "\\PC{0,16}").prop_map(|(n, v)| format!("{n}: {v}\r\n"));
    (
        method,
        path,
        query,
        auth,
        proptest::collection::vec(header, 0..3),
        body,
    )
        .prop_map(|(method, path, query, auth, headers, body)| {
            let may_change = auth.as_deref() == Some(ACME);
            let auth = auth
                .map(|t| format!("Authorization: Bearer {t}\r\n"))
                .unwrap_or_default();
            let mut bytes = format!(
                "{method} {path}{query} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n{auth}{}\
                 Content-Length: {}\r\n\r\n",
                headers.concat(),
                body.len()
            )
            .into_bytes();
            bytes.extend(body);
            (bytes, may_change)
        })
}

#[test]
fn the_admin_api_never_fails_and_changes_nothing_without_a_token_that_may() {
    // acme (with an app from the config) and globex, each with a token of its own.
    let config = crate::admin::config();
    let host = HostProcess::start(&config).unwrap();
    let admin = host.admin_addr.clone().unwrap();
    let component: &'static [u8] =
        Box::leak(std::fs::read(guest("hello")).unwrap().into_boxed_slice());
    let manifest = host.dir.path().join("state").join("manifest.json");
    // Globex's app, which nothing in the run may touch.
    let deploy = format!(
        "PUT /v1/tenants/globex/apps/kept?route=/kept HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\
         Authorization: Bearer {OPERATOR}\r\nContent-Length: {}\r\n\r\n",
        component.len()
    );
    let mut bytes = deploy.into_bytes();
    bytes.extend_from_slice(component);
    assert_eq!(exchange(&admin, &bytes), Some(vec![201]));
    let globex_apps = || {
        let listing = format!(
            "GET /v1/apps HTTP/1.1\r\nHost: admin\r\nConnection: close\r\nAuthorization: Bearer {GLOBEX}\r\n\r\n"
        );
        let mut stream = TcpStream::connect(&admin).unwrap();
        stream.write_all(listing.as_bytes()).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_string())
            .unwrap_or_default()
    };
    let globex_before = globex_apps();
    assert!(globex_before.contains("\"kept\""), "{globex_before}");

    let mut runner = TestRunner::new(fuzz_config(400, file!()));
    let seen = std::sync::Mutex::new(std::collections::BTreeMap::<u16, u32>::new());
    let outcome = runner.run(&admin_request(component), |(bytes, may_change)| {
        let before = std::fs::read(&manifest).unwrap_or_default();
        let statuses = exchange(&admin, &bytes);
        prop_assert!(statuses.is_some(), "neither answered nor closed");
        let statuses = statuses.unwrap();
        for &status in &statuses {
            *seen.lock().unwrap().entry(status).or_default() += 1;
        }
        for status in &statuses {
            prop_assert!(
                *status < 500,
                "{status} for {:?}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
            );
        }
        if !may_change {
            prop_assert_eq!(
                std::fs::read(&manifest).unwrap_or_default(),
                before,
                "changed without a token"
            );
            prop_assert!(
                statuses
                    .iter()
                    .all(|s| [400, 401, 404, 405, 413, 414, 431].contains(s)),
                "{:?}",
                statuses
            );
        }
        Ok(())
    });
    let seen = seen.into_inner().unwrap();
    println!(
        "fuzz admin API: {} cases, answers {seen:?}",
        runner.config().cases
    );
    outcome.unwrap();
    assert_eq!(
        globex_apps(),
        globex_before,
        "another tenant's apps are as they were"
    );
    assert!(!host.log().contains("panicked"), "{}", host.log());
}
