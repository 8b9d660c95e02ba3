//! The learner's two threads (the intake owner and the trainer), spawned so that their end
//! is an event the async side can wait for: each thread holds the sending half of a
//! oneshot channel, dropped when its body returns or panics. Nothing polls.

use std::thread::JoinHandle;

use tokio::sync::oneshot;

use crate::error::{Error, Result};

/// A thread whose end can be awaited.
#[derive(Debug)]
pub struct Watched {
    what: &'static str,
    handle: JoinHandle<Result<()>>,
    ended: oneshot::Receiver<()>,
}

/// Spawns `body` on a named thread (`what` names it in errors).
pub fn spawn(
    name: &str,
    what: &'static str,
    body: impl FnOnce() -> Result<()> + Send + 'static,
) -> Result<Watched> {
    let (ended_tx, ended) = oneshot::channel::<()>();
    let handle = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            // Dropped when the body returns or unwinds: the receiver sees the end.
            let _ended = ended_tx;
            body()
        })
        .map_err(|e| Error::Serve {
            what: what.into(),
            reason: e.to_string(),
        })?;
    Ok(Watched {
        what,
        handle,
        ended,
    })
}

impl Watched {
    /// Resolves when the thread has ended (cancel-safe: await it again after a select).
    pub async fn ended(&mut self) {
        let _ = (&mut self.ended).await;
    }

    /// Whether the thread has ended.
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }

    /// The thread's result, once it has ended (a panic is an error).
    pub fn join(self) -> Result<()> {
        self.handle.join().unwrap_or_else(|_| {
            Err(Error::Serve {
                what: self.what.into(),
                reason: "it panicked".into(),
            })
        })
    }

    /// Waits at most `limit` for the end, then joins; `None` leaves the thread running
    /// (abandoned), so a stuck update never holds up the process's shutdown.
    pub async fn join_within(mut self, limit: std::time::Duration) -> Option<Result<()>> {
        tokio::time::timeout(limit, self.ended()).await.ok()?;
        Some(self.join())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn an_ended_thread_is_seen_without_polling_and_a_panic_is_an_error() {
        let mut ok = spawn("t-ok", "a test thread", || Ok(())).unwrap();
        ok.ended().await;
        assert!(ok.join().is_ok());
        let panics = spawn("t-panic", "a test thread", || panic!("boom")).unwrap();
        let err = panics.join_within(Duration::from_secs(5)).await.unwrap();
        assert!(err.unwrap_err().to_string().contains("panicked"));
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let stuck = spawn("t-stuck", "a test thread", move || {
            let _ = rx.recv();
            Ok(())
        })
        .unwrap();
        assert!(stuck.join_within(Duration::from_millis(50)).await.is_none());
        drop(tx);
    }
}
