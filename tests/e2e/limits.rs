//! Limits enforced per request: deadline, memory, traps, body size, concurrency.

use crate::standard_config;
use hostel_tests::*;

#[tokio::test(flavor = "multi_thread")]
async fn infinite_loop_gets_504_while_others_are_served() {
    let host = HostProcess::start(&standard_config()).unwrap();
    let client = http1_client();
    // Two spinners: as many as the host has worker threads, so without time slicing nothing
    // else could run until their deadline.
    let spinners: Vec<_> = (0..2)
        .map(|_| {
            let client = client.clone();
            let url = host.url("/");
            tokio::spawn(async move {
                let request = http::Request::get(url)
                    .header("host", "slow.test")
                    .body(Default::default())
                    .unwrap();
                send(&client, request).await
            })
        })
        .collect();
    assert!(
        host.wait_for_log("app=spin"),
        "the spinners reached their guest"
    );
    // A few requests are enough to show the workers are not held, and leave the spinners'
    // deadline ample room on a loaded machine.
    for _ in 0..5 {
        let reply = get(&client, &host.url("/hello")).await.unwrap();
        assert_eq!(reply.status, 200);
    }
    assert!(
        spinners.iter().all(|s| !s.is_finished()),
        "hello requests were answered while the spinners were still running"
    );
    for spinner in spinners {
        let reply = spinner.await.unwrap().unwrap();
        assert_eq!(reply.status, 504, "{}", reply.text());
        let id = reply.request_id().unwrap().to_string();
        assert!(reply.text().contains(&id));
        assert!(reply.text().contains("time limit"), "{}", reply.text());
    }
    // The host is fine afterwards.
    assert_eq!(get(&client, &host.url("/hello")).await.unwrap().status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_bomb_gets_500_and_the_next_instance_is_fresh() {
    let host = HostProcess::start(&standard_config()).unwrap();
    let client = http1_client();
    for _ in 0..3 {
        let reply = get(&client, &host.url("/bomb")).await.unwrap();
        assert_eq!(reply.status, 500, "{}", reply.text());
        assert!(reply.text().contains("memory limit"), "{}", reply.text());
        assert!(reply.request_id().is_some());
    }
    assert!(host.wait_for_log("memory limit exceeded"));
    assert_eq!(get(&client, &host.url("/hello")).await.unwrap().status, 200);
    assert_eq!(
        get(&client, &host.url("/counter")).await.unwrap().text(),
        "1"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn guest_panic_gets_500_with_request_id_and_is_logged() {
    let host = HostProcess::start(&standard_config()).unwrap();
    let client = http1_client();
    let reply = get(&client, &host.url("/panic")).await.unwrap();
    assert_eq!(reply.status, 500);
    let id = reply.request_id().unwrap().to_string();
    assert!(reply.text().contains(&id), "{}", reply.text());
    assert!(host.wait_for_log("this guest panics on purpose"));
    assert!(host.wait_for_log("trapped"));
    let log = host.log();
    let trap_line = log
        .lines()
        .find(|l| l.contains("trapped"))
        .expect("a log line for the trap");
    assert!(
        trap_line.contains(&id),
        "the log line carries the request id: {trap_line}"
    );
    assert_eq!(get(&client, &host.url("/hello")).await.unwrap().status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn body_over_the_limit_gets_413() {
    let host = HostProcess::start(&standard_config()).unwrap();
    let client = http1_client();
    let big = vec![b'x'; (1 << 20) + 1];
    // Declared length over the limit: refused before the guest runs.
    let reply = post(&client, &host.url("/echo"), big.clone())
        .await
        .unwrap();
    assert_eq!(reply.status, 413, "{}", reply.text());
    assert!(reply.request_id().is_some());
    // Chunked, no declared length: cut off while streaming. A guest that reads the body
    // before answering gets the host's 413 …
    let body = RepeatBody::new(bytes::Bytes::from(vec![b'x'; 64 << 10]), 17);
    let response = streaming_client()
        .request(
            http::Request::post(host.url("/echo/collect"))
                .body(body)
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    // … and one that already started a streaming answer has it cut short, never completed.
    let body = RepeatBody::new(bytes::Bytes::from(vec![b'x'; 64 << 10]), 17);
    let response = streaming_client()
        .request(http::Request::post(host.url("/echo")).body(body).unwrap())
        .await
        .unwrap();
    let complete = http_body_util::BodyExt::collect(response.into_body()).await;
    assert!(
        complete.is_err() || complete.unwrap().to_bytes().len() <= 1 << 20,
        "no more than the limit is ever echoed"
    );
    // Within the limit is fine.
    let reply = post(&client, &host.url("/echo"), vec![b'y'; 1000])
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body.len(), 1000);
}

#[tokio::test(flavor = "multi_thread")]
async fn over_the_concurrency_limit_gets_429() {
    let config = format!(
        "[server]\ncode_cache = {}\n[defaults.limits]\nconcurrency = 2\n\
         [apps.echo]\nroute = \"/\"\ncomponent = {}\n",
        toml_path(&shared_code_cache()),
        toml_path(&guest("guest-echo"))
    );
    let host = HostProcess::start(&config).unwrap();
    let client = http1_client();
    let slow: Vec<_> = (0..2)
        .map(|_| spawn_get(&client, host.url("/slow?ms=1500")))
        .collect();
    assert!(host.wait_for_log("app=echo"));
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let reply = get(&client, &host.url("/slow?ms=1")).await.unwrap();
    assert_eq!(reply.status, 429, "{}", reply.text());
    assert!(reply.text().contains("limit 2"), "{}", reply.text());
    assert_eq!(reply.headers.get("retry-after").unwrap(), "1");
    assert!(host.wait_for_log("status=429"));
    assert!(reply.request_id().is_some());
    for s in slow {
        assert_eq!(s.await.unwrap().unwrap().status, 200);
    }
    // Permits came back.
    assert_eq!(
        get(&client, &host.url("/slow?ms=1")).await.unwrap().status,
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn no_free_sandbox_slot_gets_503_and_the_slot_comes_back() {
    let config = format!(
        "[server]\ncode_cache = {}\nmax_instances = 1\n\
         [apps.echo]\nroute = \"/\"\ncomponent = {}\n",
        toml_path(&shared_code_cache()),
        toml_path(&guest("guest-echo"))
    );
    let host = HostProcess::start(&config).unwrap();
    let client = http1_client();
    let holder = spawn_get(&client, host.url("/slow?ms=1500"));
    assert!(host.wait_for_log("app=echo"));
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let reply = get(&client, &host.url("/slow?ms=1")).await.unwrap();
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert!(reply.text().contains("sandbox limit"), "{}", reply.text());
    assert!(reply.request_id().is_some());
    assert_eq!(holder.await.unwrap().unwrap().status, 200);
    assert_eq!(
        get(&client, &host.url("/slow?ms=1")).await.unwrap().status,
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_saturated_with_busy_loops_does_not_starve_another() {
    busy_tenant_does_not_starve_another("guest-spin", "/x").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_saturated_with_wasi_0_3_busy_loops_does_not_starve_another() {
    busy_tenant_does_not_starve_another("guest-service-p3", "/spin").await;
}

/// Tenant A keeps all 8 requests of its quota in `spin_guest`'s busy loop at `spin_path`;
/// tenant B, a WASI 0.2 hello, is served all along, and A's loops run at a lower priority.
async fn busy_tenant_does_not_starve_another(spin_guest: &str, spin_path: &str) {
    let config = format!(
        "[server]\ncode_cache = {cache}\n\
         [tenants.a]\nhosts = [\"a.test\"]\nlimits = {{ timeout = \"4s\", concurrency = 8 }}\n\
         apps.spin = {{ route = \"/\", component = {spin} }}\n\
         [tenants.b]\nhosts = [\"b.test\"]\n\
         apps.hello = {{ route = \"/\", component = {hello} }}\n",
        cache = toml_path(&shared_code_cache()),
        spin = toml_path(&guest(spin_guest)),
        hello = toml_path(&guest("hello")),
    );
    let host = HostProcess::start(&config).unwrap();
    let client = http1_client();
    let as_tenant = |name: &str| {
        http::Request::get(host.url(spin_path))
            .header("host", format!("{name}.test"))
            .body(Default::default())
            .unwrap()
    };
    // Tenant A: every request it may have in flight spins.
    let spinners: Vec<_> = (0..8)
        .map(|_| {
            let (client, request) = (client.clone(), as_tenant("a"));
            tokio::spawn(async move { send(&client, request).await })
        })
        .collect();
    assert!(host.wait_for_log("app=spin"));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // A is over its own quota...
    let reply = send(&client, as_tenant("a")).await.unwrap();
    assert_eq!(reply.status, 429, "{}", reply.text());
    assert!(reply.request_id().is_some());
    // ...while B is served all along.
    for _ in 0..20 {
        let reply = send(&client, as_tenant("b")).await.unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    assert!(
        spinners.iter().all(|s| !s.is_finished()),
        "B was served while A's loops were still running"
    );
    for spinner in spinners {
        assert_eq!(spinner.await.unwrap().unwrap().status, 504);
    }
    // A's loops ran on the background threads, at a lower priority than the request workers:
    // over their 4 s the background threads used more CPU than the workers did serving B.
    let threads = host.threads();
    let cpu_of = |name: &str| -> u64 {
        threads
            .iter()
            .filter(|t| t.name == name)
            .map(|t| t.cpu_ticks)
            .sum()
    };
    assert!(
        cpu_of("hostel-cpubound") > cpu_of("hostel-worker"),
        "{threads:?}"
    );
    for thread in &threads {
        match thread.name.as_str() {
            "hostel-cpubound" => assert_eq!((thread.policy, thread.nice), (0, 10)),
            "hostel-worker" => assert_eq!((thread.policy, thread.nice), (0, 0)),
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_response_over_the_tenant_limit_is_refused_or_cut_off() {
    let config = format!(
        "[server]\ncode_cache = {cache}\n[defaults.limits]\nresponse_body = 1000\n\
         [apps.echo]\nroute = \"/echo\"\ncomponent = {echo}\n\
         [apps.hello]\nroute = \"/\"\ncomponent = {hello}\n",
        cache = toml_path(&shared_code_cache()),
        echo = toml_path(&guest("guest-echo")),
        hello = toml_path(&guest("hello")),
    );
    let host = HostProcess::start(&config).unwrap();
    let client = http1_client();
    // A short answer passes.
    let reply = get(&client, &host.url("/hi")).await.unwrap();
    assert_eq!(reply.status, 200);
    // A declared length over the limit: the host answers instead, before any of it is sent.
    let long_path = format!("/{}", "x".repeat(1200));
    let reply = get(&client, &host.url(&long_path)).await.unwrap();
    assert_eq!(reply.status, 500, "{}", reply.text());
    assert!(
        reply.text().contains("larger than its limit of 1000 bytes"),
        "{}",
        reply.text()
    );
    assert!(reply.request_id().is_some());
    // A streamed answer is cut off where it crosses the limit, never completed.
    let response = streaming_client()
        .request(
            http::Request::post(host.url("/echo"))
                .body(RepeatBody::new(bytes::Bytes::from(vec![b'y'; 1000]), 5))
                .unwrap(),
        )
        .await
        .unwrap();
    let echoed = http_body_util::BodyExt::collect(response.into_body()).await;
    assert!(
        echoed.is_err() || echoed.unwrap().to_bytes().len() <= 1000,
        "no more than the limit is ever sent"
    );
    // The host keeps serving.
    assert_eq!(get(&client, &host.url("/hi")).await.unwrap().status, 200);
}
