//! The Elasticsearch test server as a process, for benchmarks: `es-test-server ADDR_FILE`
//! starts it on `127.0.0.1` at an ephemeral port, writes its URL to ADDR_FILE, keeps ids
//! only (not documents), and runs until killed. `GET /_test/stats` tells documents stored
//! and request bytes received.
#![allow(clippy::unwrap_used, reason = "a test tool: a panic is the report")]

fn main() {
    let addr_file = std::env::args()
        .nth(1)
        .expect("usage: es-test-server ADDR_FILE");
    let server = meshtrail_tests::es_server::EsServer::start_on("127.0.0.1:0", None, false);
    std::fs::write(&addr_file, &server.url).unwrap();
    loop {
        std::thread::park();
    }
}
