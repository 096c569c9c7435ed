//! The Elasticsearch test server as a process, for benchmarks: `es-test-server ADDR_FILE
//! [FAULTS_FILE]` starts it on `127.0.0.1` at an ephemeral port, writes its URL to
//! ADDR_FILE, keeps ids only (not documents), and runs until killed. `GET /_test/stats`
//! tells documents stored and request bytes received. FAULTS_FILE, read every 100 ms while
//! it changes, holds the faults of the next requests in the words of `Faults::parse`
//! (`items=0.03 request_429=0.05 slow=0.03 lost=0.03`, `down`; empty: none).
#![allow(clippy::unwrap_used, reason = "a test tool: a panic is the report")]

use meshtrail_tests::es_server::{EsServer, Faults};

fn main() {
    let mut args = std::env::args().skip(1);
    let addr_file = args
        .next()
        .expect("usage: es-test-server ADDR_FILE [FAULTS_FILE]");
    let faults_file = args.next();
    let server = EsServer::start_on("127.0.0.1:0", None, false);
    std::fs::write(&addr_file, &server.url).unwrap();
    let Some(faults_file) = faults_file else {
        loop {
            std::thread::park();
        }
    };
    let mut last = None;
    loop {
        let text = std::fs::read_to_string(&faults_file).unwrap_or_default();
        if last.as_ref() != Some(&text) {
            match Faults::parse(&text) {
                Ok(f) => {
                    eprintln!("es-test-server: faults now {f:?}");
                    server.set_faults(f);
                }
                Err(e) => eprintln!("es-test-server: {faults_file}: {e}; faults unchanged"),
            }
            last = Some(text);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
