//! The aggregator (`components/aggregator`) as a WASI 0.3 service: fans out to every upstream
//! in `UPSTREAMS` (comma-separated URLs, granted through the tenant's `env` and `outbound`
//! grants) at once, awaiting all together, and answers one JSON document with each upstream's
//! status and body, in order. Upstream failures are reported, not fatal.

use hostel_service::outbound::{self, Fetch};
use hostel_service::{Request, Response};

async fn aggregate(_req: Request) -> Response {
    let upstreams: Vec<String> = std::env::var("UPSTREAMS")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(String::from)
        .collect();
    if upstreams.is_empty() {
        return Response::text(500, "no UPSTREAMS configured for this app\n");
    }
    let replies = outbound::send_all(upstreams.iter().map(Fetch::get).collect()).await;
    let parts: Vec<String> = upstreams
        .iter()
        .zip(replies)
        .map(|(url, reply)| match reply {
            Ok(reply) => format!(
                r#"{{"url":{},"status":{},"body":{}}}"#,
                json_string(url),
                reply.status,
                json_string(&reply.text())
            ),
            Err(e) => format!(
                r#"{{"url":{},"error":{}}}"#,
                json_string(url),
                json_string(&format!("{e:?}"))
            ),
        })
        .collect();
    Response::json(200, format!("[{}]\n", parts.join(",")))
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

hostel_service::service!(aggregate);
