//! Bulk requests in flight: a pool of threads, each sending one request at a time —
//! `POST /_bulk`, read the answer, judge every item — and handing the answer back to the
//! sink's loop on its input channel. The pool's size bounds the requests in flight.

use std::sync::mpsc::{Receiver, Sender, SyncSender, channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::response::{self, Outcome};
use super::retry::parse_retry_after;
use crate::sink::Input;

/// One request to send. Its documents stay with the sink, which settles them by the
/// answer's items, in order.
pub struct Job {
    /// Names the request in its answer.
    pub id: u64,
    /// NDJSON actions and documents, gzip-compressed when the endpoint says so. Shared,
    /// not copied, with the sink, which sends the same body again if the request fails
    /// whole or straggles.
    pub body: Bytes,
    /// Documents in the body: the items the answer must have.
    pub items: usize,
}

/// What became of a [`Job`].
pub struct Answer {
    /// The job's id.
    pub id: u64,
    /// Elasticsearch's judgement, per document or for the whole request.
    pub outcome: Outcome,
    /// `Retry-After`, when Elasticsearch sent one.
    pub retry_after: Option<Duration>,
    /// From sending to the whole answer.
    pub elapsed: Duration,
}

/// Where and how requests go.
pub struct Endpoint {
    /// `<url>/_bulk`.
    pub bulk_url: String,
    /// The `Authorization` header value.
    pub authorization: Option<String>,
    /// Bodies are gzip-compressed.
    pub gzip: bool,
}

/// The request threads. Dropping it lets them finish their current request and exit.
pub struct Pool {
    jobs: Sender<Job>,
}

impl Pool {
    /// Starts `n` request threads that answer on `answers`.
    pub fn start(
        n: usize,
        client: &reqwest::blocking::Client,
        endpoint: Endpoint,
        answers: &SyncSender<Input>,
    ) -> std::io::Result<Pool> {
        let (jobs, rx) = channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let endpoint = Arc::new(endpoint);
        for i in 0..n {
            let (rx, client, endpoint, answers) = (
                rx.clone(),
                client.clone(),
                endpoint.clone(),
                answers.clone(),
            );
            std::thread::Builder::new()
                .name(format!("meshtrail-bulk-{i}"))
                .spawn(move || serve(&rx, &client, &endpoint, &answers))?;
        }
        Ok(Pool { jobs })
    }

    /// Hands `job` to the next free thread. The caller keeps at most `n` in flight.
    pub fn send(&self, job: Job) -> bool {
        self.jobs.send(job).is_ok()
    }
}

fn serve(
    jobs: &Mutex<Receiver<Job>>,
    client: &reqwest::blocking::Client,
    endpoint: &Endpoint,
    answers: &SyncSender<Input>,
) {
    loop {
        let job = jobs.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(Job { id, body, items }) = job else {
            return;
        };
        let sent = Instant::now();
        let (outcome, retry_after) = send(client, endpoint, body, items);
        let answer = Answer {
            id,
            outcome,
            retry_after,
            elapsed: sent.elapsed(),
        };
        if answers.send(Input::Answer(answer)).is_err() {
            return;
        }
    }
}

/// Sends one body of `items` documents and judges the answer.
fn send(
    client: &reqwest::blocking::Client,
    endpoint: &Endpoint,
    body: Bytes,
    items: usize,
) -> (Outcome, Option<Duration>) {
    let mut req = client
        .post(&endpoint.bulk_url)
        .header("content-type", "application/x-ndjson");
    if let Some(auth) = &endpoint.authorization {
        req = req.header("authorization", auth);
    }
    if endpoint.gzip {
        req = req.header("content-encoding", "gzip");
    }
    let answer = req.body(body).send().and_then(|r| {
        let status = r.status().as_u16();
        let retry_after = r
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, std::time::SystemTime::now()));
        r.bytes().map(|b| (status, retry_after, b))
    });
    match answer {
        Ok((status, retry_after, bytes)) => {
            (response::classify(status, &bytes, items), retry_after)
        }
        Err(e) => (
            Outcome::RetryAll {
                status: 0,
                reason: format!("request failed: {}", super::connect::chain(&e)),
            },
            None,
        ),
    }
}
