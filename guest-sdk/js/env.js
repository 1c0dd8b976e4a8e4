// Environment variables the tenant's grants give (`grants.env`), through wasi:cli/environment.
import { getEnvironment } from "wasi:cli/environment@0.2.12";

/** An environment variable granted to the tenant (`grants.env`), or undefined. */
export function env(name) {
  const found = getEnvironment().find(([key]) => key === name);
  return found?.[1];
}

