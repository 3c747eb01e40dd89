//! A stop request shared by every part of a run (Ctrl-C, a signal): stop sending, drain, save.

use std::sync::Arc;

use tokio::sync::watch;

/// A stop request (Ctrl-C): stop sending, drain, save.
#[derive(Debug, Clone)]
pub struct Cancel {
    tx: Arc<watch::Sender<bool>>,
    rx: watch::Receiver<bool>,
}

impl Default for Cancel {
    fn default() -> Self {
        let (tx, rx) = watch::channel(false);
        Cancel {
            tx: Arc::new(tx),
            rx,
        }
    }
}

impl Cancel {
    /// Asks the run to stop.
    pub fn cancel(&self) {
        let _ = self.tx.send(true);
    }
    /// Whether a stop was asked.
    pub fn is_cancelled(&self) -> bool {
        *self.rx.borrow()
    }
    pub(super) async fn cancelled(&mut self) {
        let _ = self.rx.wait_for(|c| *c).await;
    }
}
