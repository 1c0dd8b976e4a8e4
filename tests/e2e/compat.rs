//! Guests built against earlier wasi 0.2.x releases load and serve.

use hostel_tests::*;

#[tokio::test(flavor = "multi_thread")]
async fn guests_built_for_older_wasi_releases_are_served() {
    let config = format!(
        "[server]\ncode_cache = {}\n\
         [apps.v4]\nroute = \"/v4\"\ncomponent = {}\n\
         [apps.v9]\nroute = \"/v9\"\ncomponent = {}\n",
        toml_path(&shared_code_cache()),
        toml_path(&guest("guest-legacy-wasi-0-2-4")),
        toml_path(&guest("guest-legacy-wasi-0-2-9")),
    );
    let host = HostProcess::start(&config).unwrap();
    let client = http1_client();
    let reply = get(&client, &host.url("/v4")).await.unwrap();
    assert_eq!(reply.text(), "built against wasi 0.2.4\n");
    let reply = get(&client, &host.url("/v9")).await.unwrap();
    assert_eq!(reply.text(), "built against wasi 0.2.9\n");
}
