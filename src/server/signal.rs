//! A one-shot signal many tasks can wait on (stop accepting, shutting down).

use tokio::sync::watch;

/// Fires a signal once; every `Watch` made from it sees it.
#[derive(Debug)]
pub struct Trigger(watch::Sender<bool>);

/// Waits for a `Trigger` to fire. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Watch(watch::Receiver<bool>);

/// A new signal, not yet fired.
pub fn signal() -> (Trigger, Watch) {
    let (tx, rx) = watch::channel(false);
    (Trigger(tx), Watch(rx))
}

impl Trigger {
    /// Fires the signal (again is a no-op).
    pub fn fire(&self) {
        self.0.send_replace(true);
    }

    /// A new watcher of this signal.
    pub fn watch(&self) -> Watch {
        Watch(self.0.subscribe())
    }
}

impl Watch {
    /// Returns once the signal has fired, or its trigger was dropped.
    pub async fn fired(&mut self) {
        let _ = self.0.wait_for(|fired| *fired).await;
    }

    /// Whether the signal has fired.
    pub fn has_fired(&self) -> bool {
        *self.0.borrow()
    }
}
