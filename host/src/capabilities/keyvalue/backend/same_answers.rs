//! The NATS store against real `nats-server`s: random sequences of operations give the same
//! answers as on the embedded store (the reference), and what only NATS has — revision
//! conflicts, markers, limits, outages, a cluster losing a node — behaves as documented.

use super::*;
use crate::capabilities::nats::NatsSection;
use crate::metrics::Metrics;
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use std::time::{Duration, Instant};

/// Keys that stress the encoding: empty, NATS wildcards and separators, spaces, Unicode.
const KEYS: &[&str] = &[
    "", "a", "a.b", "*", ">", " x ", "日本", "k", "x/y", ".", "a\0b",
];
const NAMESPACES: &[&str] = &["tenant:a", "tenant:b"];

fn nats_settings(url: &str) -> PoolConfig {
    let section = NatsSection {
        url: Secret::new(url.to_string()),
        creds_file: None,
        ca_file: None,
        connect: None,
    };
    section.resolve("stores.t", Path::new("/")).unwrap()
}

fn nats_store(url: &str, bucket: &str, replicas: usize) -> Backend {
    crate::tls::install_crypto_provider();
    let server = NatsServer::new("t", &nats_settings(url), &Metrics::new()).unwrap();
    Backend::Nats(NatsStore::new(server, bucket, replicas))
}

fn ns(i: usize) -> Arc<str> {
    NAMESPACES[i].into()
}

#[derive(Debug, Clone)]
enum Op {
    Get(usize, &'static str),
    Exists(usize, &'static str),
    Set(usize, &'static str, Vec<u8>),
    Delete(usize, &'static str),
    Increment(usize, &'static str, i64),
    /// A compare-and-swap read and swapped at once: always succeeds, on both.
    Swap(usize, &'static str, Vec<u8>),
    GetMany(usize, Vec<&'static str>),
    SetMany(usize, Vec<(&'static str, Vec<u8>)>),
    DeleteMany(usize, Vec<&'static str>),
    /// A page of 3 after `skip`, straight from each store.
    ListPage(usize, usize),
    ListAll(usize),
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        (-5i64..5).prop_map(|n| n.to_string().into_bytes()),
        proptest::collection::vec(any::<u8>(), 0..6),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let key = || proptest::sample::select(KEYS);
    let n = || 0..NAMESPACES.len();
    prop_oneof![
        1 => (n(), key()).prop_map(|(n, k)| Op::Get(n, k)),
        1 => (n(), key()).prop_map(|(n, k)| Op::Exists(n, k)),
        3 => (n(), key(), value()).prop_map(|(n, k, v)| Op::Set(n, k, v)),
        1 => (n(), key()).prop_map(|(n, k)| Op::Delete(n, k)),
        2 => (n(), key(), -3i64..4).prop_map(|(n, k, d)| Op::Increment(n, k, d)),
        1 => (n(), key(), value()).prop_map(|(n, k, v)| Op::Swap(n, k, v)),
        1 => (n(), proptest::collection::vec(key(), 0..4)).prop_map(|(n, k)| Op::GetMany(n, k)),
        1 => (n(), proptest::collection::vec((key(), value()), 0..4))
            .prop_map(|(n, e)| Op::SetMany(n, e)),
        1 => (n(), proptest::collection::vec(key(), 0..4)).prop_map(|(n, k)| Op::DeleteMany(n, k)),
        1 => (n(), 0..8usize).prop_map(|(n, s)| Op::ListPage(n, s)),
        1 => (n()).prop_map(Op::ListAll),
    ]
}

/// What an operation answered, errors reduced to the fact of one (their texts differ).
async fn run(store: &Backend, op: &Op) -> Result<String, ()> {
    let owned = |keys: &[&str]| keys.iter().map(|k| k.to_string()).collect::<Vec<_>>();
    let s = store.clone();
    let answer = match op.clone() {
        Op::Get(n, k) => s.get(ns(n), k.into()).await.map(|v| format!("{v:?}")),
        Op::Exists(n, k) => s.exists(ns(n), k.into()).await.map(|v| v.to_string()),
        Op::Set(n, k, v) => s.set(ns(n), k.into(), v).await.map(|()| String::new()),
        Op::Delete(n, k) => (s.delete_many(ns(n), vec![k.into()]).await).map(|()| String::new()),
        Op::Increment(n, k, d) => s.increment(ns(n), k.into(), d).await.map(|v| v.to_string()),
        Op::Swap(n, k, v) => {
            let current = store.clone().read_for_swap(ns(n), k.into()).await;
            match current {
                Ok(current) => {
                    let read = format!("{:?}", current.value);
                    (s.swap(ns(n), k.into(), current, v).await).map(|ok| format!("{read} {ok}"))
                }
                Err(e) => Err(e),
            }
        }
        Op::GetMany(n, keys) => (s.get_many(ns(n), owned(&keys)).await).map(|v| format!("{v:?}")),
        Op::SetMany(n, entries) => {
            let entries = entries
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
            s.set_many(ns(n), entries).await.map(|()| String::new())
        }
        Op::DeleteMany(n, keys) => {
            (s.delete_many(ns(n), owned(&keys)).await).map(|()| String::new())
        }
        Op::ListPage(n, skip) => {
            let page = match s {
                Backend::Embedded(e) => blocking(move || e.list_keys(NAMESPACES[n], skip, 3)).await,
                Backend::Nats(nats) => nats.list_keys(NAMESPACES[n], skip, 3).await,
                Backend::Redis(_) => unreachable!("not compared"),
            };
            page.map(|page| format!("{page:?}"))
        }
        Op::ListAll(n) => {
            let mut keys = Vec::new();
            let mut cursor = None;
            loop {
                match store.clone().list_keys(ns(n), cursor).await {
                    Ok((page, next)) => {
                        keys.extend(page);
                        cursor = next;
                        if cursor.is_none() {
                            break Ok(format!("{keys:?}"));
                        }
                    }
                    Err(e) => break Err(e),
                }
            }
        }
    };
    answer.map_err(drop)
}

#[test]
fn random_operations_answer_as_on_the_embedded_store() {
    let server = hostel_tests::NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let embedded = Backend::Embedded(EmbeddedStore::open(&dir.path().join("kv.redb")).unwrap());
    let nats = runtime.block_on(async { nats_store(&server.url(), "same-answers", 1) });
    let mut runner = TestRunner::new(hostel_tests::fuzz_config(48, file!()));
    let ops = proptest::collection::vec(op(), 1..24);
    runner
        .run(&ops, |ops| {
            runtime.block_on(async {
                for op in &ops {
                    let (want, got) = (run(&embedded, op).await, run(&nats, op).await);
                    prop_assert_eq!(&got, &want, "{:?}", op);
                }
                // The states agree too, in every namespace.
                for n in 0..NAMESPACES.len() {
                    let (want, got) = (
                        run(&embedded, &Op::ListAll(n)).await,
                        run(&nats, &Op::ListAll(n)).await,
                    );
                    prop_assert_eq!(got, want);
                }
                Ok(())
            })
        })
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_swap_fails_if_the_key_was_written_since_it_was_read_even_with_the_same_bytes() {
    let server = hostel_tests::NatsServer::start().unwrap();
    let store = nats_store(&server.url(), "conflicts", 1);
    let (a, key) = (ns(0), "k".to_string());
    let swap = |current: Current, value: &str| {
        store
            .clone()
            .swap(a.clone(), key.clone(), current, value.into())
    };
    let read = || store.clone().read_for_swap(a.clone(), key.clone());

    // Absent: a create; a second one made from the same read loses.
    let absent = read().await.unwrap();
    assert_eq!(absent, Current::default());
    assert!(swap(absent.clone(), "1").await.unwrap());
    assert!(
        !swap(absent.clone(), "2").await.unwrap(),
        "created meanwhile"
    );

    let one = read().await.unwrap();
    assert_eq!(one.value.as_deref(), Some(&b"1"[..]));
    assert!(one.revision.is_some(), "a NATS read carries the revision");
    // Written since, with the very same bytes: the revision moved on, the swap fails.
    (store.clone().set(a.clone(), key.clone(), b"1".to_vec()))
        .await
        .unwrap();
    assert!(!swap(one, "3").await.unwrap());
    let again = read().await.unwrap();
    assert!(swap(again, "4").await.unwrap());

    // Deleted after the read: the swap fails; read as absent after the delete (a purge marker
    // is there), it is a create over the marker and succeeds.
    let four = read().await.unwrap();
    (store.clone().delete_many(a.clone(), vec![key.clone()]))
        .await
        .unwrap();
    assert!(!swap(four, "5").await.unwrap());
    let deleted = read().await.unwrap();
    assert_eq!(deleted, Current::default());
    assert!(swap(deleted, "6").await.unwrap());
    assert_eq!(
        store.clone().get(a.clone(), key.clone()).await.unwrap(),
        Some(b"6".to_vec())
    );
    // An increment over a marker starts from 0.
    (store.clone().delete_many(a.clone(), vec![key.clone()]))
        .await
        .unwrap();
    assert_eq!(store.clone().increment(a, key, 7).await.unwrap(), 7);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_increments_from_two_clients_lose_nothing() {
    let server = hostel_tests::NatsServer::start().unwrap();
    // Two clients (as two hosts would have), one bucket.
    let stores = [
        nats_store(&server.url(), "counters", 1),
        nats_store(&server.url(), "counters", 1),
    ];
    let tasks: Vec<_> = (0..60)
        .map(|i| {
            let store = stores[i % 2].clone();
            tokio::spawn(async move { store.increment(ns(0), "hits".into(), 1).await })
        })
        .collect();
    let mut seen = Vec::new();
    for task in tasks {
        seen.push(task.await.unwrap().unwrap());
    }
    seen.sort_unstable();
    assert_eq!(seen, (1..=60).collect::<Vec<_>>());
    let stored = stores[0].clone().get(ns(0), "hits".into()).await.unwrap();
    assert_eq!(
        stored,
        Some(b"60".to_vec()),
        "decimal text, as embedded and Redis"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn limits_and_outages_are_clear_errors_and_listing_an_empty_namespace_does_not_wait() {
    let mut server = hostel_tests::NatsServer::start().unwrap();
    let store = nats_store(&server.url(), "limits", 1);
    // A listing that waited for keys to come would end in the call timeout's error instead.
    let (keys, cursor) = store.clone().list_keys(ns(1), None).await.unwrap();
    assert!(keys.is_empty() && cursor.is_none());

    let big = vec![b'x'; 2 << 20];
    let e = format!(
        "{:#}",
        (store.clone().set(ns(0), "big".into(), big))
            .await
            .unwrap_err()
    );
    assert!(
        e.contains("value too large") && e.contains("max_payload"),
        "{e}"
    );
    let long = "x".repeat(nats::MAX_KEY_BYTES + 1);
    let e = format!("{:#}", store.clone().get(ns(0), long).await.unwrap_err());
    assert!(e.contains("longer"), "{e}");
    let longest = "é".repeat(nats::MAX_KEY_BYTES / 2);
    (store.clone().set(ns(0), longest.clone(), b"v".to_vec()))
        .await
        .unwrap();
    let (keys, _) = store.clone().list_keys(ns(0), None).await.unwrap();
    assert_eq!(keys, [longest]);

    server.kill();
    // Calls wait up to RECONNECT_WAIT for the client to reach another node (there is none);
    // after that every call fails at once with `unavailable` — refused for the disconnection,
    // not after a timeout of its own.
    let e = format!(
        "{:#}",
        store.clone().get(ns(0), "k".into()).await.unwrap_err()
    );
    assert!(e.starts_with("unavailable:"), "{e}");
    for _ in 0..3 {
        let e = format!(
            "{:#}",
            store.clone().get(ns(0), "k".into()).await.unwrap_err()
        );
        assert!(
            e.starts_with("unavailable:") && e.contains("not connected"),
            "{e}"
        );
    }
    server.restart().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match store.clone().increment(ns(0), "after".into(), 1).await {
            Ok(n) => break assert_eq!(n, 1),
            Err(e) => assert!(Instant::now() < deadline, "not back: {e:#}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replicated_bucket_keeps_counting_when_a_node_dies_and_comes_back() {
    let mut cluster = hostel_tests::NatsCluster::start(3).unwrap();
    let store = nats_store(&cluster.urls(), "replicated", 3);
    // Retried (bounded) while the client moves to another node or JetStream elects a new
    // stream leader: those calls fail, with `unavailable`. A write whose acknowledgement was
    // lost with a node may have counted, so each count only has to be above the last.
    async fn increment(store: &Backend, last: &mut i64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match store.clone().increment(ns(0), "n".into(), 1).await {
                Ok(n) => {
                    assert!(n > *last, "{n} after {last}");
                    *last = n;
                    return;
                }
                Err(e) => assert!(Instant::now() < deadline, "still failing: {e:#}"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let mut last = 0;
    for _ in 0..3 {
        increment(&store, &mut last).await;
    }
    assert_eq!(last, 3, "no failure, no doubt");
    for node in [0, 1] {
        cluster.kill(node);
        for _ in 0..3 {
            increment(&store, &mut last).await;
        }
        cluster.restart(node).unwrap();
    }
    let value = store.clone().get(ns(0), "n".into()).await.unwrap();
    assert_eq!(
        value,
        Some(last.to_string().into_bytes()),
        "the last count is what is stored"
    );
}
