//! Test guest: reports what the sandbox lets it reach — environment, files, config values,
//! outbound HTTP — and writes to stdout/stderr, for the least-privilege tests.

use hostel_guest::bindings::wasi::http::outgoing_handler;
use hostel_guest::bindings::wasi::http::types::{Fields, OutgoingRequest, Scheme};
use hostel_guest::{Request, Response};

fn probe(req: Request) -> Response {
    // Match the last path segment so the probe works under any route.
    match req.path().rsplit('/').next().unwrap_or("") {
        "env" => {
            let vars: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
            Response::text(200, vars.join("\n"))
        }
        "files" => match std::fs::read_dir("/") {
            Ok(entries) => Response::text(200, format!("{} entries", entries.count())),
            Err(e) => Response::text(403, format!("no files: {e}")),
        },
        "log" => {
            println!("probe says hello on stdout");
            eprintln!("probe says hello on stderr");
            Response::text(200, "logged")
        }
        "config" => match hostel_guest::config::get_all() {
            Ok(mut all) => {
                all.sort();
                let lines: Vec<String> = all.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let missing = hostel_guest::config::get("not-given");
                Response::text(200, format!("{}\nnot-given: {missing:?}", lines.join("\n")))
            }
            Err(e) => Response::text(500, e),
        },
        "outbound" => {
            let target = req.query().unwrap_or("127.0.0.1:9");
            Response::text(200, fetch(target))
        }
        _ => Response::text(404, "unknown probe"),
    }
}

/// GET http://{authority}/ and report the status or the error.
fn fetch(authority: &str) -> String {
    let request = OutgoingRequest::new(Fields::new());
    let _ = request.set_scheme(Some(&Scheme::Http));
    let _ = request.set_authority(Some(authority));
    let _ = request.set_path_with_query(Some("/"));
    match outgoing_handler::handle(request, None) {
        Err(e) => format!("error: {e:?}"),
        Ok(future) => {
            future.subscribe().block();
            match future.get() {
                Some(Ok(Ok(response))) => format!("status: {}", response.status()),
                Some(Ok(Err(e))) => format!("error: {e:?}"),
                other => format!("error: {other:?}"),
            }
        }
    }
}

hostel_guest::http_handler!(probe);
