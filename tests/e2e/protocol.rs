//! The wire: malformed requests, streaming bodies.

use crate::standard_config;
use hostel_tests::*;
use std::io::{Read, Write};

#[tokio::test(flavor = "multi_thread")]
async fn malformed_http_gets_400_and_nothing_crashes() {
    let host = HostProcess::start(&standard_config()).unwrap();
    for garbage in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET /hello HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",
        b"GET /hello HTTP/9.9\r\nHost: x\r\n\r\n",
        b"GET /hello HTTP/1.1\r\nBad Header\r\n\r\n",
    ] {
        let mut stream = std::net::TcpStream::connect(&host.addr).unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        stream.write_all(garbage).unwrap();
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        assert!(
            answer.starts_with("HTTP/1.1 400"),
            "{:?} got {answer:?}",
            String::from_utf8_lossy(garbage)
        );
    }
    // HTTP/1.1 without Host is a client error too.
    let mut stream = std::net::TcpStream::connect(&host.addr).unwrap();
    stream.write_all(b"GET /hello HTTP/1.1\r\n\r\n").unwrap();
    let mut answer = vec![0; 4096];
    let n = stream.read(&mut answer).unwrap();
    assert!(String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 400"));
    let reply = get(&http1_client(), &host.url("/hello")).await.unwrap();
    assert_eq!(reply.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rust_guest_sees_every_part_of_the_request() {
    use http_body_util::BodyExt;
    let host = HostProcess::start(&standard_config()).unwrap();
    let request = http::Request::post(host.url("/echo/request?x=1&y=2"))
        .header("x-probe", "probe value")
        .body(RepeatBody::new(bytes::Bytes::from_static(b"the body"), 1))
        .unwrap();
    let response = streaming_client().request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let lines: Vec<String> = String::from_utf8_lossy(&body)
        .lines()
        .map(String::from)
        .collect();
    // x-probe and the x-request-id the host adds, at least (wasi-http keeps `host` as the
    // authority and drops hop-by-hop headers).
    let header_count: usize = lines[5].parse().unwrap();
    assert!(header_count >= 2, "{lines:?}");
    assert_eq!(
        lines[..5],
        [
            "POST",
            "http",
            host.addr.as_str(),
            "/echo/request?x=1&y=2",
            "probe value"
        ],
        "{lines:?}"
    );
    assert_eq!(lines[6], "the body", "{lines:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn streams_a_200_mb_echo_without_buffering_it() {
    use http_body_util::BodyExt;
    let config = standard_config()
        .replace("request_body = \"1MiB\"", "request_body = \"300MiB\"")
        .replace("timeout = \"2s\"", "timeout = \"300s\"");
    let host = HostProcess::start(&config).unwrap();
    let before = host.peak_rss();
    const CHUNK: usize = 1 << 20;
    const COUNT: usize = 200;
    let chunk: Vec<u8> = (0..CHUNK).map(|i| (i % 251) as u8).collect();
    let expected_sum = chunk.iter().map(|&b| b as u64).sum::<u64>() * COUNT as u64;

    let body = RepeatBody::new(bytes::Bytes::from(chunk), COUNT);
    let response = streaming_client()
        .request(http::Request::post(host.url("/echo")).body(body).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let (mut received, mut sum) = (0u64, 0u64);
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            received += data.len() as u64;
            sum += data.iter().map(|&b| b as u64).sum::<u64>();
        }
    }
    assert_eq!(received, (CHUNK * COUNT) as u64);
    assert_eq!(sum, expected_sum, "echoed bytes differ from those sent");
    let grown = host.peak_rss().saturating_sub(before);
    assert!(
        grown < 64 << 20,
        "host peak RSS grew by {} MiB while echoing 200 MiB",
        grown >> 20
    );
}
