// Key-value stores held by the host, through the standard wasi:keyvalue (0.2.0-draft2).
import * as store from "wasi:keyvalue/store@0.2.0-draft2";
import * as atomics from "wasi:keyvalue/atomics@0.2.0-draft2";
import { HostError, bytes, call, decoder } from "./index.js";

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

