//! A test server's listening loop: a loopback socket served on a thread with a
//! single-threaded tokio runtime, until dropped.

/// A running accept loop; stops (and joins its thread) when dropped.
pub struct Listener {
    /// `http://<address>`.
    pub url: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Listener {
    /// Binds `addr` (`127.0.0.1:0` for an ephemeral port) and hands every accepted
    /// connection to `serve`, which runs on the server's runtime (it may `tokio::spawn`).
    pub fn start(addr: &str, serve: impl Fn(tokio::net::TcpStream) + Send + 'static) -> Listener {
        let listener = std::net::TcpListener::bind(addr).unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    tokio::select! {
                        _ = &mut rx => return,
                        accepted = listener.accept() => {
                            if let Ok((stream, _)) = accepted {
                                serve(stream);
                            }
                        }
                    }
                }
            });
        });
        Listener {
            url,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
