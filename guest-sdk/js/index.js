// Write Hostel HTTP handlers in JavaScript (built into components with componentize-js).
//
//   import { serve, text } from "hostel";
//   serve((request) => text(200, `Hello from Hostel! You asked for ${new URL(request.url).pathname}\n`));
//
// The handler is a fetch-style function: a standard Request in, a Response (or a promise of
// one) out. Outbound calls use the standard global `fetch`, which goes through the tenant's
// pooled client. The host's stores and pools are plain calls from "hostel/kv" (`Bucket`),
// "hostel/redis" (`Redis`) and "hostel/pg" (`Postgres`), the tenant's variables and secrets
// from "hostel/config" (`config`), granted environment variables from "hostel/env" (`env`); a
// guest imports only the interfaces
// it uses, so one that needs none runs on any wasi:http host. Host failures are thrown as
// `HostError`s.

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
export function call(fn) {
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

export const encoder = new TextEncoder();
export const decoder = new TextDecoder();
export const bytes = (value) => (value instanceof Uint8Array ? value : encoder.encode(String(value)));

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

