//! `Objects`: what the handler needs of the place it looks other objects up in: the watch-fed
//! cluster cache in production, a fixed `Index` in benchmarks and tests.

use std::time::Duration;

use futures::future::BoxFuture;

use crate::cluster::{Cache, ConfirmError};
use crate::policy::{Index, Kind, Lookup, ObjectKey};

/// A source of lookups for the webhook.
pub trait Objects: Send + Sync + 'static {
    /// Runs `f` with the current lookup (a read lock, held only for the call).
    fn with_lookup(&self, f: &mut dyn FnMut(&dyn Lookup));
    /// Whether every watch has listed its objects once.
    fn synced(&self) -> bool;
    /// Per watched kind, whether it has synced (for a metric).
    fn sync_state(&self) -> Vec<(Kind, bool)>;
    /// Reads `keys` live; a key missing from the returned index does not exist.
    fn confirm(&self, keys: Vec<ObjectKey>, timeout: Duration) -> BoxFuture<'_, Result<Index, ConfirmError>>;
}

impl Objects for Cache {
    fn with_lookup(&self, f: &mut dyn FnMut(&dyn Lookup)) {
        f(&*self.lookup());
    }

    fn synced(&self) -> bool {
        Cache::synced(self)
    }

    fn sync_state(&self) -> Vec<(Kind, bool)> {
        Cache::sync_state(self)
    }

    fn confirm(&self, keys: Vec<ObjectKey>, timeout: Duration) -> BoxFuture<'_, Result<Index, ConfirmError>> {
        Box::pin(Cache::confirm(self, keys, timeout))
    }
}

/// A fixed set of objects (benchmarks, tests, dev mode): always synced. Only keys the index
/// called absent are ever confirmed, and a live read agrees: they are still absent.
impl Objects for Index {
    fn with_lookup(&self, f: &mut dyn FnMut(&dyn Lookup)) {
        f(self);
    }

    fn synced(&self) -> bool {
        true
    }

    fn sync_state(&self) -> Vec<(Kind, bool)> {
        Vec::new()
    }

    fn confirm(&self, _keys: Vec<ObjectKey>, _timeout: Duration) -> BoxFuture<'_, Result<Index, ConfirmError>> {
        Box::pin(async { Ok(Index::new(true)) })
    }
}
