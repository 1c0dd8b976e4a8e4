// PostgreSQL through a pool the host holds (hostel:host/postgres).
import * as postgres from "hostel:host/postgres@0.1.0";
import { call } from "./index.js";

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
