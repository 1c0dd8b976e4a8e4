//! Tenant namespacing of Redis commands: the host prefixes every key (and pub/sub channel) a
//! guest names with its tenant's namespace, so a tenant can neither read, write nor list
//! another's data. A command is only sent when the host knows where its keys are; everything
//! else — KEYS, SCAN, FLUSHDB, EVAL, CONFIG, SELECT, CLIENT, ... — is refused.

#[cfg(test)]
mod fuzz;

/// Where a command's keys are among its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keys {
    /// No keys (PING, ECHO, TIME).
    None,
    /// The first argument (most commands; PUBLISH's channel).
    First,
    /// The first two arguments (RENAME, LMOVE, SMOVE, ...).
    FirstTwo,
    /// Every argument (DEL, EXISTS, MGET, WATCH, SINTER, ...).
    All,
    /// Every argument but the last, a timeout (BLPOP, BRPOP, ...).
    AllButLast,
    /// Every other argument, from the first (MSET key value key value ...).
    Pairs,
}

/// The commands guests may send, and where their keys are. Upper case.
const COMMANDS: &[(&str, Keys)] = &[
    ("PING", Keys::None),
    ("ECHO", Keys::None),
    ("TIME", Keys::None),
    // strings and counters
    ("GET", Keys::First),
    ("SET", Keys::First),
    ("SETNX", Keys::First),
    ("SETEX", Keys::First),
    ("PSETEX", Keys::First),
    ("GETSET", Keys::First),
    ("GETDEL", Keys::First),
    ("GETEX", Keys::First),
    ("GETRANGE", Keys::First),
    ("SETRANGE", Keys::First),
    ("APPEND", Keys::First),
    ("STRLEN", Keys::First),
    ("INCR", Keys::First),
    ("INCRBY", Keys::First),
    ("INCRBYFLOAT", Keys::First),
    ("DECR", Keys::First),
    ("DECRBY", Keys::First),
    ("MGET", Keys::All),
    ("MSET", Keys::Pairs),
    ("MSETNX", Keys::Pairs),
    // keys
    ("DEL", Keys::All),
    ("UNLINK", Keys::All),
    ("EXISTS", Keys::All),
    ("TOUCH", Keys::All),
    ("TYPE", Keys::First),
    ("EXPIRE", Keys::First),
    ("PEXPIRE", Keys::First),
    ("EXPIREAT", Keys::First),
    ("PEXPIREAT", Keys::First),
    ("TTL", Keys::First),
    ("PTTL", Keys::First),
    ("PERSIST", Keys::First),
    ("RENAME", Keys::FirstTwo),
    ("RENAMENX", Keys::FirstTwo),
    // hashes
    ("HGET", Keys::First),
    ("HSET", Keys::First),
    ("HSETNX", Keys::First),
    ("HMGET", Keys::First),
    ("HMSET", Keys::First),
    ("HDEL", Keys::First),
    ("HGETALL", Keys::First),
    ("HKEYS", Keys::First),
    ("HVALS", Keys::First),
    ("HLEN", Keys::First),
    ("HEXISTS", Keys::First),
    ("HINCRBY", Keys::First),
    ("HINCRBYFLOAT", Keys::First),
    ("HSTRLEN", Keys::First),
    // lists
    ("LPUSH", Keys::First),
    ("RPUSH", Keys::First),
    ("LPUSHX", Keys::First),
    ("RPUSHX", Keys::First),
    ("LPOP", Keys::First),
    ("RPOP", Keys::First),
    ("LRANGE", Keys::First),
    ("LLEN", Keys::First),
    ("LINDEX", Keys::First),
    ("LSET", Keys::First),
    ("LREM", Keys::First),
    ("LTRIM", Keys::First),
    ("LINSERT", Keys::First),
    ("LPOS", Keys::First),
    ("RPOPLPUSH", Keys::FirstTwo),
    ("LMOVE", Keys::FirstTwo),
    ("BLMOVE", Keys::FirstTwo),
    ("BLPOP", Keys::AllButLast),
    ("BRPOP", Keys::AllButLast),
    // sets
    ("SADD", Keys::First),
    ("SREM", Keys::First),
    ("SMEMBERS", Keys::First),
    ("SISMEMBER", Keys::First),
    ("SMISMEMBER", Keys::First),
    ("SCARD", Keys::First),
    ("SPOP", Keys::First),
    ("SRANDMEMBER", Keys::First),
    ("SMOVE", Keys::FirstTwo),
    ("SINTER", Keys::All),
    ("SUNION", Keys::All),
    ("SDIFF", Keys::All),
    ("SINTERSTORE", Keys::All),
    ("SUNIONSTORE", Keys::All),
    ("SDIFFSTORE", Keys::All),
    // sorted sets
    ("ZADD", Keys::First),
    ("ZREM", Keys::First),
    ("ZSCORE", Keys::First),
    ("ZMSCORE", Keys::First),
    ("ZINCRBY", Keys::First),
    ("ZCARD", Keys::First),
    ("ZCOUNT", Keys::First),
    ("ZRANK", Keys::First),
    ("ZREVRANK", Keys::First),
    ("ZRANGE", Keys::First),
    ("ZREVRANGE", Keys::First),
    ("ZRANGEBYSCORE", Keys::First),
    ("ZREVRANGEBYSCORE", Keys::First),
    ("ZREMRANGEBYRANK", Keys::First),
    ("ZREMRANGEBYSCORE", Keys::First),
    ("ZPOPMIN", Keys::First),
    ("ZPOPMAX", Keys::First),
    ("BZPOPMIN", Keys::AllButLast),
    ("BZPOPMAX", Keys::AllButLast),
    // hyperloglog
    ("PFADD", Keys::First),
    ("PFCOUNT", Keys::All),
    ("PFMERGE", Keys::All),
    // pub/sub (publish only: subscriptions outlive a request)
    ("PUBLISH", Keys::First),
    // transactions on a leased connection
    ("WATCH", Keys::All),
    ("UNWATCH", Keys::None),
];

/// Commands that hold their connection (blocking, or state for a later EXEC): sent only on a
/// leased connection, never on the one every tenant's plain commands share, where a
/// `BLPOP key 0` would stall everyone's commands behind it.
const LEASED_ONLY: &[&str] = &[
    "BLPOP", "BRPOP", "BLMOVE", "BZPOPMIN", "BZPOPMAX", "WATCH", "UNWATCH",
];

/// Which connection a command goes out on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum On {
    /// The pool's multiplexed connection, shared by every request of every tenant.
    Shared,
    /// A connection leased to this guest (a transaction).
    Leased,
}

/// A guest command turned into one the host may send.
#[derive(Debug)]
pub struct Prepared {
    pub cmd: redis::Cmd,
    /// Blocking pops reply with the key they popped from: the prefix comes off again.
    pub strip_key_from_reply: bool,
}

/// Prefixes the command's keys with `namespace:`; `Err` says why the command is refused.
pub fn prepare(namespace: &str, name: &str, args: &[Vec<u8>], on: On) -> Result<Prepared, String> {
    let upper = name.to_ascii_uppercase();
    let Some(&(_, keys)) = COMMANDS.iter().find(|(command, _)| *command == upper) else {
        return Err(format!(
            "{upper} is not available to guests: Hostel sends only commands whose keys it can \
             namespace per tenant (no KEYS, SCAN, FLUSHDB, EVAL, CONFIG, SELECT, ...)"
        ));
    };
    if on == On::Shared && LEASED_ONLY.contains(&upper.as_str()) {
        return Err(format!(
            "{upper} holds its connection: send it in a transaction (a leased connection), not \
             on the connection every request shares"
        ));
    }
    let is_key = |i: usize| match keys {
        Keys::None => false,
        Keys::First => i == 0,
        Keys::FirstTwo => i < 2,
        Keys::All => true,
        Keys::AllButLast => i + 1 < args.len(),
        Keys::Pairs => i.is_multiple_of(2),
    };
    let mut cmd = redis::cmd(&upper);
    for (i, arg) in args.iter().enumerate() {
        if is_key(i) {
            cmd.arg(prefixed(namespace, arg));
        } else {
            cmd.arg(arg.as_slice());
        }
    }
    Ok(Prepared {
        cmd,
        strip_key_from_reply: keys == Keys::AllButLast,
    })
}

/// `namespace:key`, as bytes (keys are binary-safe in Redis).
pub fn prefixed(namespace: &str, key: &[u8]) -> Vec<u8> {
    let mut full = Vec::with_capacity(namespace.len() + 1 + key.len());
    full.extend_from_slice(namespace.as_bytes());
    full.push(b':');
    full.extend_from_slice(key);
    full
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packed(namespace: &str, name: &str, args: &[&str]) -> Result<Vec<Vec<u8>>, String> {
        let args: Vec<Vec<u8>> = args.iter().map(|a| a.as_bytes().to_vec()).collect();
        let prepared = prepare(namespace, name, &args, On::Leased)?;
        Ok(prepared
            .cmd
            .args_iter()
            .map(|arg| match arg {
                redis::Arg::Simple(bytes) => bytes.to_vec(),
                _ => b"<cursor>".to_vec(),
            })
            .collect())
    }

    fn strings(items: Vec<Vec<u8>>) -> Vec<String> {
        items
            .into_iter()
            .map(|i| String::from_utf8(i).unwrap())
            .collect()
    }

    #[test]
    fn keys_are_prefixed_wherever_the_command_keeps_them() {
        let ns = "tenant:a";
        let got = |name, args| strings(packed(ns, name, args).unwrap());
        assert_eq!(got("get", &["k"]), ["GET", "tenant:a:k"]);
        assert_eq!(
            got("SET", &["k", "v", "PX", "100"]),
            ["SET", "tenant:a:k", "v", "PX", "100"]
        );
        assert_eq!(
            got("MSET", &["a", "1", "b", "2"]),
            ["MSET", "tenant:a:a", "1", "tenant:a:b", "2"]
        );
        assert_eq!(got("DEL", &["a", "b"]), ["DEL", "tenant:a:a", "tenant:a:b"]);
        assert_eq!(
            got("BLPOP", &["a", "b", "5"]),
            ["BLPOP", "tenant:a:a", "tenant:a:b", "5"]
        );
        assert_eq!(
            got("RENAME", &["a", "b"]),
            ["RENAME", "tenant:a:a", "tenant:a:b"]
        );
        assert_eq!(
            got("publish", &["ch", "m"]),
            ["PUBLISH", "tenant:a:ch", "m"]
        );
        assert_eq!(got("PING", &["x"]), ["PING", "x"]);
    }

    #[test]
    fn commands_that_reach_beyond_the_namespace_are_refused() {
        for name in [
            "KEYS",
            "SCAN",
            "FLUSHDB",
            "FLUSHALL",
            "EVAL",
            "CONFIG",
            "SELECT",
            "CLIENT",
            "MOVE",
            "COPY",
            "SUBSCRIBE",
            "DEBUG",
            "SHUTDOWN",
            "OBJECT",
            "MIGRATE",
            "RANDOMKEY",
        ] {
            let err = packed("tenant:a", name, &["x"]).unwrap_err();
            assert!(err.contains("not available"), "{name}: {err}");
        }
    }

    #[test]
    fn blocking_commands_and_watch_need_a_leased_connection() {
        for name in ["BLPOP", "brpop", "BLMOVE", "BZPOPMIN", "WATCH", "UNWATCH"] {
            let args = vec![b"k".to_vec(), b"0".to_vec()];
            let err = prepare("tenant:a", name, &args, On::Shared).unwrap_err();
            assert!(err.contains("transaction"), "{name}: {err}");
            assert!(
                prepare("tenant:a", name, &args, On::Leased).is_ok(),
                "{name}"
            );
        }
    }
}
