//! The object-store servers' finder: with the servers up (`.ci/object-servers start`), both
//! answer and their container and bucket exist; a URL where nothing listens panics with the
//! command that starts them.

use std::net::TcpListener;
use std::process::Command;

use ocistore_testkit::servers::{self, CONTAINER, Endpoint, START_COMMAND};

/// A loopback URL where nothing listens: a port the kernel handed out and took back.
fn dead_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

#[test]
fn azurite_answers_and_its_container_exists() {
    let azurite = servers::azurite();
    assert!(azurite.url.starts_with("http://"), "{azurite:?}");
    assert!(!azurite.url.ends_with('/'), "{azurite:?}");
    assert_eq!(azurite.container, CONTAINER);
    // Azurite answers every request without a signature with 403, existing container or not:
    // ask the script that creates it, which signs, and says 409 when the container exists.
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../.ci/azurite_container.py"
    );
    let output = Command::new("python3")
        .args([script, &azurite.url, &azurite.container])
        .output()
        .expect("python3 runs .ci/azurite_container.py");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "409",
        "the container {} does not exist in Azurite at {} ({START_COMMAND} creates it)",
        azurite.container,
        azurite.url,
    );
}

#[test]
fn s3_answers_and_its_bucket_exists() {
    let s3 = servers::s3();
    assert!(s3.url.starts_with("http://"), "{s3:?}");
    assert_eq!(s3.container, CONTAINER);
    let bucket = format!("{}/{}", s3.url, s3.container);
    assert_eq!(
        servers::status(&bucket),
        Ok(200),
        "GET {bucket}: the bucket must exist ({START_COMMAND} creates it)",
    );
    // And a bucket nobody created is missing: the 200 above is the bucket's.
    let missing = format!("{}/{}", s3.url, s3.unique_prefix());
    assert_eq!(servers::status(&missing), Ok(404), "GET {missing}");
}

#[test]
fn the_answers_are_cached() {
    // The second call does not probe again; both calls give the same endpoint.
    assert_eq!(servers::azurite(), servers::azurite());
    assert_eq!(servers::s3(), servers::s3());
}

#[test]
fn unique_prefixes_are_fresh_uuids() {
    // No server needed: the prefix is made here.
    let endpoint = Endpoint {
        url: servers::DEFAULT_S3_URL.to_owned(),
        container: CONTAINER.to_owned(),
    };
    let (a, b) = (endpoint.unique_prefix(), endpoint.unique_prefix());
    assert_ne!(a, b);
    for prefix in [a, b] {
        let hex = prefix.strip_prefix("test-").expect(&prefix);
        assert_eq!(hex.len(), 32, "{prefix}");
        assert!(
            hex.bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
            "{prefix}"
        );
    }
}

#[test]
fn a_probe_where_nothing_listens_names_the_start_command() {
    let url = dead_url();
    let message = servers::probe("Azurite", &url).unwrap_err();
    assert_eq!(
        message,
        format!(
            "Azurite is not answering at {url} (connection refused): start it with {START_COMMAND}"
        ),
    );
}

#[test]
#[should_panic(expected = "start it with .ci/object-servers start")]
fn requiring_a_server_where_nothing_listens_panics() {
    servers::require("moto (S3)", &dead_url());
}

#[test]
fn a_server_that_is_not_http_is_not_answering() {
    // Accepts and closes at once: no HTTP status line.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = std::thread::spawn(move || drop(listener.accept().unwrap()));
    let message = servers::probe("moto (S3)", &url).unwrap_err();
    server.join().unwrap();
    assert!(message.contains(START_COMMAND), "{message}");
    assert!(
        message.starts_with("moto (S3) is not answering at "),
        "{message}"
    );
}

#[test]
fn status_rejects_what_is_not_plain_http() {
    assert!(servers::status("https://127.0.0.1:1/").is_err());
    assert!(servers::status("127.0.0.1:1").is_err());
}
