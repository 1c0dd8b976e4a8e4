// Redis through a pool the host holds (hostel:host/redis); keys are namespaced per tenant.
import * as redis from "hostel:host/redis@0.1.0";
import { bytes, call, decoder } from "./index.js";

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

