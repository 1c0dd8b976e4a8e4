// The tenant's variables and secrets (`grants.variables`, `grants.secrets` in the host
// config), read-only, through the standard wasi:config/store.
import { get as getValue, getAll } from "wasi:config/store@0.2.0-rc.1";
import { call } from "./index.js";

/** The value of `key`, or undefined when the tenant was given no such key. */
export function config(key) {
  return call(() => getValue(key)) ?? undefined;
}

/** Every key and value the tenant was given. */
export function configAll() {
  return Object.fromEntries(call(() => getAll()));
}
