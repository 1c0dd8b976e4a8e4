// Types of the `hostel` modules for JavaScript and TypeScript guests. The WIT interfaces'
// own declarations (`hostel:host/redis@0.1.0`, `wasi:keyvalue/store@0.2.0-draft2`, ...) are
// generated from wit/ into types/ by `hostel build`; the error kinds below come from them, so
// a change to the WIT that these modules do not follow fails the type check.
/// <reference path="./types/handler.d.ts" />

declare module "hostel" {

/** The WIT error cases a host call fails with; `store-error` when a key-value update failed. */
export type HostErrorKind =
  | import("wasi:keyvalue/store@0.2.0-draft2").Error["tag"]
  | import("hostel:host/redis@0.1.0").Error["tag"]
  | import("hostel:host/postgres@0.1.0").Error["tag"]
  | import("wasi:config/store@0.2.0-rc.1").Error["tag"]
  | "store-error";

/** A failed host call: `kind` is the WIT error case (`unavailable`, `not-granted`, ...). */
export class HostError extends Error {
  readonly kind: HostErrorKind;
  readonly detail: unknown;
  /** The server behind a pool is unreachable or the pool is exhausted: answer 503. */
  readonly unavailable: boolean;
}

/** Serves every request with `handler`; a thrown error becomes a 500. */
export function serve(handler: (request: Request) => Response | Promise<Response>): void;

/** A text/plain response. */
export function text(status: number, body: string): Response;

/** An application/json response. */
export function json(status: number, value: unknown): Response;

export type Bytes = Uint8Array | string;
}

declare module "hostel/config" {
/** A variable or secret the tenant was given (`grants.variables`, `grants.secrets`), or undefined. */
export function config(key: string): string | undefined;
/** Every key and value the tenant was given. */
export function configAll(): Record<string, string>;
}

declare module "hostel/env" {
/** An environment variable granted to the tenant (`grants.env`), or undefined. */
export function env(name: string): string | undefined;
}

declare module "hostel/kv" {
import type { Bytes } from "hostel";

/** A key-value store held by the host (standard wasi:keyvalue); keys are kept per tenant. */
export class Bucket {
  static open(name: string): Bucket;
  get(key: string): Uint8Array | undefined;
  getText(key: string): string | undefined;
  set(key: string, value: Bytes): void;
  delete(key: string): void;
  exists(key: string): boolean;
  /** Adds `delta` (default 1) to the counter at `key` atomically; the new value. */
  increment(key: string, delta?: number): number;
  /** Replaces the value with `change(current)` by compare-and-swap, retried on conflict. */
  update(key: string, change: (current: Uint8Array | undefined) => Bytes): Uint8Array;
}

}

declare module "hostel/redis" {
import type { Bytes } from "hostel";
/** One element of a flattened Redis reply. */
export type RedisValue = null | number | string | boolean;

/** Redis through a pool the host holds; keys are namespaced per tenant by the host. */
export class Redis {
  static open(name: string): Redis;
  get(key: string): string | undefined;
  set(key: string, value: Bytes, expireMs?: number): void;
  incr(key: string, delta?: number): number;
  del(...keys: string[]): number;
  exists(...keys: string[]): number;
  hget(key: string, field: string): string | undefined;
  hset(key: string, field: string, value: Bytes): boolean;
  publish(channel: string, message: Bytes): number;
  /** Any command the host can namespace; array replies come flattened. */
  execute(name: string, ...args: (Bytes | number)[]): RedisValue[];
}

}

declare module "hostel/pg" {
/** A parameter: null, boolean, number (int8 when whole), bigint, string, bytes, Date, or JSON. */
export type SqlParam = null | undefined | boolean | number | bigint | string | Uint8Array | Date | object;

/** PostgreSQL through a pool the host holds. */
export class Postgres {
  static open(name: string): Postgres;
  /** Rows as plain objects keyed by column name. */
  query(sql: string, params?: SqlParam[]): Record<string, unknown>[];
  /** The number of rows the statement affected. */
  execute(sql: string, params?: SqlParam[]): number;
  /** A transaction on one leased connection; never committed means rolled back. */
  begin(): PostgresTransaction;
}

export interface PostgresTransaction {
  query(sql: string, params?: SqlParam[]): Record<string, unknown>[];
  execute(sql: string, params?: SqlParam[]): number;
  commit(): void;
  rollback(): void;
}
}
