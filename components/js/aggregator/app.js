// Fans out to every URL in `UPSTREAMS` at once (the standard `fetch`, through the tenant's
// pooled client) and answers one JSON document with each upstream's status and body, in
// order: the same behaviour as components/aggregator.
import { json, serve, text } from "hostel";
import { env } from "hostel/env";

serve(async () => {
  const upstreams = (env("UPSTREAMS") ?? "")
    .split(",")
    .map((u) => u.trim())
    .filter((u) => u);
  if (upstreams.length === 0) {
    return text(500, "no UPSTREAMS configured for this app\n");
  }
  const replies = await Promise.all(
    upstreams.map(async (url) => {
      try {
        const reply = await fetch(url);
        return { url, status: reply.status, body: await reply.text() };
      } catch (e) {
        return { url, error: String(e) };
      }
    }),
  );
  return json(200, replies);
});
