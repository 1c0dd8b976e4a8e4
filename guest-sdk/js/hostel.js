// Write Hostel HTTP handlers in JavaScript (built into components with componentize-js).
//
//   import { serve } from "hostel";
//   serve(async (request) => new Response(`Hello from Hostel! You asked for ${new URL(request.url).pathname}\n`));
//
// The handler is a fetch-style function: a standard Request in, a Response (or a promise of
// one) out. Outbound calls use the standard global `fetch`, which goes through the tenant's
// pooled client. The host's stores and pools are plain calls: `Bucket` (wasi:keyvalue),
// `Redis` and `Postgres` below. Host failures are thrown as `HostError`s.

import * as store from "wasi:keyvalue/store@0.2.0-draft2";
import * as atomics from "wasi:keyvalue/atomics@0.2.0-draft2";
import * as redis from "hostel:host/redis@0.1.0";
import * as postgres from "hostel:host/postgres@0.1.0";
import { getEnvironment } from "wasi:cli/environment@0.2.12";

/** A failed host call: `kind` is the WIT error case (`unavailable`, `not-granted`, ...). */
export class HostError extends Error {
  constructor(kind, detail) {
    super(detail === undefined ? kind : `${kind}: ${typeof detail === "string" ? detail : JSON.stringify(detail, bigints)}`);
    this.kind = kind;
    this.detail = detail;
  }

  /** The server behind a pool is unreachable or the pool is exhausted: answer 503. */
  get unavailable() {
    return this.kind === "unavailable";
  }
}

function bigints(_key, value) {
  return typeof value === "bigint" ? Number(value) : value;
}

/** Calls a binding, turning the thrown WIT error (`{ tag, val }`) into a HostError. */
function call(fn) {
  try {
    return fn();
  } catch (e) {
    const payload = e?.payload;
    if (payload && typeof payload === "object" && "tag" in payload) {
      throw new HostError(payload.tag, payload.val);
    }
    throw e;
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const bytes = (value) => (value instanceof Uint8Array ? value : encoder.encode(String(value)));

/** Serves every request with `handler(request) -> Response`; a thrown error becomes a 500. */
export function serve(handler) {
  addEventListener("fetch", (event) =>
    event.respondWith(
      (async () => {
        try {
          return await handler(event.request);
        } catch (e) {
          console.error(e?.stack ?? String(e));
          return new Response(`handler failed: ${e}\n`, {
            status: 500,
            headers: { "content-type": "text/plain; charset=utf-8" },
          });
        }
      })(),
    ),
  );
}

/** An environment variable granted to the tenant (`grants.env`), or undefined. */
export function env(name) {
  const found = getEnvironment().find(([key]) => key === name);
  return found?.[1];
}

/** A text/plain response. */
export function text(status, body) {
  return new Response(body, { status, headers: { "content-type": "text/plain; charset=utf-8" } });
}

/** An application/json response. */
export function json(status, value) {
  return new Response(`${JSON.stringify(value)}\n`, {
    status,
    headers: { "content-type": "application/json" },
  });
}

/** A key-value store held by the host (standard wasi:keyvalue); keys are kept per tenant. */
export class Bucket {
  constructor(bucket) {
    this.bucket = bucket;
  }

  static open(name) {
    return new Bucket(call(() => store.open(name)));
  }

  get(key) {
    return call(() => this.bucket.get(key));
  }

  getText(key) {
    const value = this.get(key);
    return value === undefined ? undefined : decoder.decode(value);
  }

  set(key, value) {
    call(() => this.bucket.set(key, bytes(value)));
  }

  delete(key) {
    call(() => this.bucket.delete(key));
  }

  exists(key) {
    return call(() => this.bucket.exists(key));
  }

  /** Adds `delta` to the counter at `key` atomically; the new value. */
  increment(key, delta = 1) {
    return Number(call(() => atomics.increment(this.bucket, key, BigInt(delta))));
  }

  /** Replaces the value at `key` with `change(current)` by compare-and-swap, retried on conflict. */
  update(key, change) {
    let cas = call(() => atomics.Cas.new(this.bucket, key));
    for (;;) {
      const next = bytes(change(call(() => cas.current())));
      try {
        atomics.swap(cas, next);
        return next;
      } catch (e) {
        if (e?.payload?.tag === "cas-failed") {
          cas = e.payload.val;
          continue;
        }
        throw new HostError("store-error", e?.payload?.val ?? String(e));
      }
    }
  }
}

const command = (name, args) => ({ name, args: args.map(bytes) });
const value = (v) => (v.tag === "nil" ? null : v.tag === "data" ? decoder.decode(v.val) : typeof v.val === "bigint" ? Number(v.val) : v.val);

/** Redis through a pool the host holds; keys are namespaced per tenant by the host. */
export class Redis {
  constructor(connection) {
    this.c = connection;
  }

  static open(name) {
    return new Redis(call(() => redis.Connection.open(name)));
  }

  get(key) {
    const v = call(() => this.c.get(key));
    return v === undefined ? undefined : decoder.decode(v);
  }

  set(key, value, expireMs) {
    call(() => this.c.set(key, bytes(value), expireMs === undefined ? undefined : BigInt(expireMs)));
  }

  incr(key, delta = 1) {
    return Number(call(() => this.c.incr(key, BigInt(delta))));
  }

  del(...keys) {
    return call(() => this.c.del(keys));
  }

  exists(...keys) {
    return call(() => this.c.exists(keys));
  }

  hget(key, field) {
    const v = call(() => this.c.hget(key, field));
    return v === undefined ? undefined : decoder.decode(v);
  }

  hset(key, field, value) {
    return call(() => this.c.hset(key, field, bytes(value)));
  }

  publish(channel, message) {
    return call(() => this.c.publish(channel, bytes(message)));
  }

  /** Any command the host can namespace; array replies come flattened. */
  execute(name, ...args) {
    return call(() => this.c.execute(command(name, args))).map(value);
  }
}

const toParam = (v) => {
  if (v === null || v === undefined) return { tag: "null" };
  if (typeof v === "boolean") return { tag: "boolean", val: v };
  if (typeof v === "bigint") return { tag: "int64", val: v };
  if (typeof v === "number") return Number.isInteger(v) ? { tag: "int64", val: BigInt(v) } : { tag: "float64", val: v };
  if (typeof v === "string") return { tag: "text", val: v };
  if (v instanceof Uint8Array) return { tag: "bytes", val: v };
  if (v instanceof Date) {
    const ms = v.getTime();
    return { tag: "timestamp", val: { seconds: BigInt(Math.floor(ms / 1000)), nanoseconds: (ms % 1000) * 1e6 } };
  }
  return { tag: "json", val: JSON.stringify(v) };
};

const fromColumn = (v) => {
  switch (v.tag) {
    case "null": return null;
    case "int64": return Number(v.val);
    case "json": return JSON.parse(v.val);
    case "timestamp": return new Date(Number(v.val.seconds) * 1000 + Math.floor(v.val.nanoseconds / 1e6));
    default: return v.val;
  }
};

const rows = (result) =>
  result.rows.map((row) => Object.fromEntries(row.map((v, i) => [result.columns[i].name, fromColumn(v)])));

/** PostgreSQL through a pool the host holds: `query` answers rows as plain objects. */
export class Postgres {
  constructor(target) {
    this.target = target;
  }

  static open(name) {
    return new Postgres(call(() => postgres.Connection.open(name)));
  }

  query(sql, params = []) {
    return rows(call(() => this.target.query(sql, params.map(toParam))));
  }

  execute(sql, params = []) {
    return Number(call(() => this.target.execute(sql, params.map(toParam))));
  }

  /** A transaction on one leased connection; never committed means rolled back. */
  begin() {
    const tx = new Postgres(call(() => this.target.begin()));
    tx.commit = () => call(() => tx.target.commit());
    tx.rollback = () => call(() => tx.target.rollback());
    return tx;
  }
}
