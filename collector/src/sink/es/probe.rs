//! Is Elasticsearch back? While whole requests fail, the sink asks with `GET /` (a few
//! hundred bytes, a short timeout) instead of sending bulk bodies into an outage, and
//! resumes as soon as the answer comes. One thread, one probe at a time, answering on the
//! sink's input channel like the request threads.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::Duration;

use crate::sink::Input;

/// How long a probe waits for an answer.
pub const TIMEOUT: Duration = Duration::from_secs(1);

/// What a probe found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    /// Elasticsearch answered: a status below 500 other than 429 (a 401 or 403 says the
    /// cluster is there; the credentials are the bulk requests' business).
    Up,
    /// No answer, or 429/5xx; why, for the log.
    Down(String),
}

/// The probe thread; it exits when this is dropped.
pub struct Prober {
    ask: SyncSender<()>,
}

impl Prober {
    /// Starts the thread probing `<url>/` with `authorization`, answering on `answers`.
    pub fn start(
        client: &reqwest::blocking::Client,
        url: &str,
        authorization: Option<String>,
        answers: &SyncSender<Input>,
    ) -> std::io::Result<Prober> {
        let (ask, asked) = sync_channel(1);
        let (client, url, answers) = (client.clone(), format!("{url}/"), answers.clone());
        std::thread::Builder::new()
            .name("meshtrail-probe".into())
            .spawn(move || serve(&asked, &client, &url, authorization.as_deref(), &answers))?;
        Ok(Prober { ask })
    }

    /// Asks for one probe; its answer comes as [`Input::Probe`]. Returns false when one is
    /// already asked for.
    pub fn probe(&self) -> bool {
        !matches!(self.ask.try_send(()), Err(TrySendError::Full(())))
    }
}

fn serve(
    asked: &Receiver<()>,
    client: &reqwest::blocking::Client,
    url: &str,
    authorization: Option<&str>,
    answers: &SyncSender<Input>,
) {
    while asked.recv().is_ok() {
        let mut req = client.get(url).timeout(TIMEOUT);
        if let Some(a) = authorization {
            req = req.header("authorization", a);
        }
        let probe = match req.send() {
            Ok(r) => match r.status().as_u16() {
                429 | 500.. => Probe::Down(format!("GET / answered {}", r.status().as_u16())),
                _ => Probe::Up,
            },
            Err(e) => Probe::Down(format!("GET /: {}", super::connect::chain(&e))),
        };
        if answers.send(Input::Probe(probe)).is_err() {
            return;
        }
    }
}
