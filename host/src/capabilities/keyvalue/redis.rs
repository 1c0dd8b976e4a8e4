//! The Redis backend of `wasi:keyvalue`: plain commands on the pool's shared multiplexed
//! connection (no per-request checkout). Keys are prefixed with the tenant's namespace by the
//! host, so a guest can neither name nor list another tenant's keys.

use crate::capabilities::redis::RedisPool;
use anyhow::{Result, bail};
use redis::AsyncCommands;

fn key(namespace: &str, key: &str) -> String {
    format!("{namespace}:{key}")
}

pub async fn get(pool: &RedisPool, ns: &str, k: &str) -> Result<Option<Vec<u8>>> {
    Ok(pool.shared().await?.get(key(ns, k)).await?)
}

pub async fn delete(pool: &RedisPool, ns: &str, keys: &[String]) -> Result<()> {
    if keys.is_empty() {
        return Ok(());
    }
    let keys: Vec<String> = keys.iter().map(|k| key(ns, k)).collect();
    let _: i64 = pool.shared().await?.del(keys).await?;
    Ok(())
}

pub async fn exists(pool: &RedisPool, ns: &str, k: &str) -> Result<bool> {
    Ok(pool.shared().await?.exists(key(ns, k)).await?)
}

pub async fn increment(pool: &RedisPool, ns: &str, k: &str, delta: i64) -> Result<i64> {
    Ok(pool.shared().await?.incr(key(ns, k), delta).await?)
}

/// SET if the value is still `expected` (`None`: absent), atomically on the server.
pub async fn swap(
    pool: &RedisPool,
    ns: &str,
    k: &str,
    expected: Option<&[u8]>,
    value: &[u8],
) -> Result<bool> {
    static SWAP: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
        redis::Script::new(
            "local current = redis.call('GET', KEYS[1]) \
             if (ARGV[1] == 'absent' and current == false) or \
                (ARGV[1] == 'present' and current == ARGV[2]) then \
               redis.call('SET', KEYS[1], ARGV[3]) return 1 \
             end return 0",
        )
    });
    let mut invocation = SWAP.key(key(ns, k));
    match expected {
        None => invocation.arg("absent").arg(""),
        Some(old) => invocation.arg("present").arg(old),
    };
    let swapped: i64 = invocation
        .arg(value)
        .invoke_async(&mut pool.shared().await?)
        .await?;
    Ok(swapped == 1)
}

pub async fn get_many(
    pool: &RedisPool,
    ns: &str,
    keys: Vec<String>,
) -> Result<Vec<(String, Option<Vec<u8>>)>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let full: Vec<String> = keys.iter().map(|k| key(ns, k)).collect();
    let values: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
        .arg(full)
        .query_async(&mut pool.shared().await?)
        .await?;
    Ok(keys.into_iter().zip(values).collect())
}

pub async fn set_many(pool: &RedisPool, ns: &str, entries: Vec<(String, Vec<u8>)>) -> Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let mut cmd = redis::cmd("MSET");
    for (k, value) in &entries {
        cmd.arg(key(ns, k)).arg(value);
    }
    let () = cmd.query_async(&mut pool.shared().await?).await?;
    Ok(())
}

/// One page of keys via SCAN over the tenant's prefix; the cursor is Redis's own.
pub async fn list_keys(
    pool: &RedisPool,
    ns: &str,
    cursor: u64,
    page: usize,
) -> Result<(Vec<String>, Option<u64>)> {
    if ns.contains(['*', '?', '[', ']', '\\']) {
        bail!("namespace {ns:?} cannot be scanned safely");
    }
    let prefix = key(ns, "");
    let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
        .arg(cursor)
        .arg("MATCH")
        .arg(format!("{prefix}*"))
        .arg("COUNT")
        .arg(page)
        .query_async(&mut pool.shared().await?)
        .await?;
    let keys = keys
        .into_iter()
        .filter_map(|k| k.strip_prefix(&prefix).map(str::to_string))
        .collect();
    Ok((keys, (next != 0).then_some(next)))
}
