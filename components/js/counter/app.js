// A visit counter on the host's key-value store, in JavaScript: the same behaviour as
// components/counter. GET adds `step` (the tenant's `step` variable, default 1) to the count of
// its path and answers it; `?peek` answers without counting; DELETE resets.
import { HostError, serve, text } from "hostel";
import { config } from "hostel/config";
import { Bucket } from "hostel/kv";

serve((request) => {
  const url = new URL(request.url);
  const key = `visits:${url.pathname}`;
  let bucket;
  try {
    bucket = Bucket.open("default");
  } catch (e) {
    return text(500, `cannot open the store: ${e.message}\n`);
  }
  try {
    if (request.method === "GET" && url.search === "?peek") {
      return text(200, `${bucket.getText(key) ?? "0"}\n`);
    }
    if (request.method === "GET") {
      return text(200, `${bucket.increment(key, Number(config("step") ?? 1))}\n`);
    }
    if (request.method === "DELETE") {
      bucket.delete(key);
      return text(200, "0\n");
    }
    return text(405, "use GET or DELETE\n");
  } catch (e) {
    if (e instanceof HostError) return text(500, `store error: ${e.message}\n`);
    throw e;
  }
});
