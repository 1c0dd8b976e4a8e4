//! Fuzzing Redis namespacing with Redis itself as the oracle: for random allowed commands
//! with random arguments, every key a real `redis-server` finds in the prepared command
//! (`COMMAND GETKEYS`) carries the tenant's prefix.

use super::{COMMANDS, On, prefixed, prepare};
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use std::sync::atomic::{AtomicU32, Ordering};

const NAMESPACE: &str = "tenant:fuzz";

/// Arguments Redis gives a meaning to somewhere, next to keys that look like other tenants'.
const WORDS: &[&str] = &[
    "EX",
    "PX",
    "EXAT",
    "PXAT",
    "NX",
    "XX",
    "GT",
    "LT",
    "CH",
    "INCR",
    "GET",
    "KEEPTTL",
    "PERSIST",
    "WITHSCORES",
    "LIMIT",
    "BYSCORE",
    "BYLEX",
    "REV",
    "STORE",
    "STOREDIST",
    "LEFT",
    "RIGHT",
    "BEFORE",
    "AFTER",
    "COUNT",
    "MATCH",
    "RANK",
    "MAXLEN",
    "WEIGHTS",
    "AGGREGATE",
    "IDX",
    "LEN",
    "MINMATCHLEN",
    "-inf",
    "+inf",
    "(1",
    "[a",
    "-",
    "+",
    "0",
    "1",
    "-1",
    "2",
    "10",
    "1.5",
    "tenant:other:secret",
    "tenant:fuzz:",
    "*",
    "",
    "k",
    "key",
];

fn argument() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => proptest::sample::select(WORDS).prop_map(|w| w.as_bytes().to_vec()),
        1 => any::<i32>().prop_map(|n| n.to_string().into_bytes()),
        1 => proptest::collection::vec(any::<u8>(), 0..12),
    ]
}

fn command() -> impl Strategy<Value = (String, Vec<Vec<u8>>)> {
    (
        proptest::sample::select(COMMANDS).prop_map(|(name, _)| name.to_string()),
        proptest::collection::vec(argument(), 0..8),
    )
}

#[test]
fn every_key_redis_finds_in_a_prepared_command_carries_the_tenants_prefix() {
    let server = hostel_tests::RedisServer::start().unwrap();
    let client = redis::Client::open(server.url()).unwrap();
    let connection = std::cell::RefCell::new(client.get_connection().unwrap());
    let prefix = prefixed(NAMESPACE, b"");
    let (checked, keys_seen) = (AtomicU32::new(0), AtomicU32::new(0));
    let mut runner = TestRunner::new(hostel_tests::fuzz_config(20_000, file!()));
    let outcome = runner.run(&command(), |(name, args)| {
        let Ok(prepared) = prepare(NAMESPACE, &name, &args, On::Leased) else {
            return Ok(());
        };
        let mut getkeys = redis::cmd("COMMAND");
        getkeys.arg("GETKEYS");
        for arg in prepared.cmd.args_iter() {
            if let redis::Arg::Simple(bytes) = arg {
                getkeys.arg(bytes);
            }
        }
        // Redis refuses GETKEYS for arguments its parser rejects (wrong arity, no keys):
        // such a command would be refused by Redis itself too.
        let Ok(keys) = getkeys.query::<Vec<Vec<u8>>>(&mut *connection.borrow_mut()) else {
            return Ok(());
        };
        checked.fetch_add(1, Ordering::Relaxed);
        for key in keys {
            keys_seen.fetch_add(1, Ordering::Relaxed);
            prop_assert!(
                key.starts_with(&prefix),
                "{name} {:?}: Redis finds the key {:?} outside the namespace",
                args.iter()
                    .map(|a| String::from_utf8_lossy(a))
                    .collect::<Vec<_>>(),
                String::from_utf8_lossy(&key)
            );
        }
        Ok(())
    });
    let (checked, keys_seen) = (checked.into_inner(), keys_seen.into_inner());
    println!(
        "fuzz redis namespacing: {} cases, {checked} checked by Redis, {keys_seen} keys",
        runner.config().cases
    );
    outcome.unwrap();
    // Most random commands have a wrong arity; enough must still reach the oracle.
    assert!(
        checked * 10 >= runner.config().cases,
        "only {checked} of {} cases were valid commands",
        runner.config().cases
    );
}
