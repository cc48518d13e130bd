//! One shutdown signal that every task of the member hears (mini-redis's `Shutdown`): raised by SIGTERM
//! or Ctrl-C, or by a fatal error of the Raft node or the applier thread, which must not stop the process
//! themselves. The first reason wins; `serve::run` stops the member in order and returns it.

use std::future::Future;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// Why the member stops.
#[derive(Debug, Clone, PartialEq)]
pub enum Reason {
    /// Asked to (a signal): a clean stop, exit code 0.
    Requested,
    /// A thread could not go on (e.g. the WAL or the backend cannot be written): exit non-zero.
    Fatal(String),
}

/// The signal: clone it into every task.
#[derive(Clone)]
pub struct Shutdown {
    sender: Arc<watch::Sender<bool>>,
    receiver: watch::Receiver<bool>,
    reason: Arc<Mutex<Option<Reason>>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        let (sender, receiver) = watch::channel(false);
        Shutdown { sender: Arc::new(sender), receiver, reason: Arc::default() }
    }
}

impl Shutdown {
    /// Raises the signal for `reason`, unless it was raised already.
    pub fn raise(&self, reason: Reason) {
        let mut current = self.reason.lock().expect("shutdown lock");
        if current.is_none() {
            *current = Some(reason);
        }
        drop(current);
        self.sender.send_replace(true);
    }

    /// A fatal error of one of the member's threads.
    pub fn fatal(&self, what: impl std::fmt::Display) {
        self.raise(Reason::Fatal(what.to_string()));
    }

    pub fn reason(&self) -> Option<Reason> {
        self.reason.lock().expect("shutdown lock").clone()
    }

    /// Completes once the signal is raised.
    pub async fn raised(&self) {
        let mut receiver = self.receiver.clone();
        let _ = receiver.wait_for(|raised| *raised).await;
    }

    /// Spawns `task` so that it ends when the signal is raised (if it has not ended before).
    pub fn spawn<F>(&self, task: F) -> tokio::task::JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let shutdown = self.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = task => {}
                () = shutdown.raised() => {}
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_reason_wins_and_tasks_end_on_the_signal() {
        let shutdown = Shutdown::default();
        let task = shutdown.spawn(std::future::pending());
        assert_eq!(shutdown.reason(), None);
        shutdown.fatal("wal: disk full");
        shutdown.raise(Reason::Requested);
        task.await.unwrap();
        assert_eq!(shutdown.reason(), Some(Reason::Fatal("wal: disk full".into())));
        shutdown.raised().await;
    }
}
