//! Deletion helpers shared by the kinds that clean coderd up through a finalizer: what a
//! removal means ([`Removal`]) and how a deletion ends ([`finish_cleanup`]).

use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;

use super::outcome::{Report, Surface, Wait};
use super::status::{self, Managed};
use super::{Context, Error};
use crate::api::own::CoderInstance;

/// What deleting a resource means in coderd.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Removal {
    /// Already gone: nothing to delete.
    Gone,
    /// Not ours to delete: let go, with this Warning note.
    Keep(String),
    /// DELETE this coderd ID.
    Delete(String),
}

/// Ends a deletion. Removes the finalizer when coderd-side cleanup is done (`Ok`), or when it
/// cannot finish — overdue, or the `CoderInstance` is gone — with a Warning that `what` was left
/// in place. Otherwise reports the failure and retries soon (within the cleanup grace).
pub async fn finish_cleanup<K: Managed>(
    ctx: &Context,
    object: &K,
    instance: &str,
    reason: &str,
    what: &str,
    result: Result<Option<String>, Surface>,
) -> Result<Action, Error> {
    match result {
        Ok(None) => {}
        Ok(Some(note)) => status::warn_event(ctx, object, reason, note).await,
        Err(surface) => {
            if status::cleanup_overdue(object) || instance_gone(ctx, object, instance).await {
                let note = format!("{what} was left in place: {}", surface.message);
                status::warn_event(ctx, object, reason, note).await;
            } else {
                let mut report = Report::default();
                report.push(Surface { wait: surface.wait.min(Wait::Backoff), ..surface });
                return status::publish(ctx, object, &report, |_| {}).await.map_err(Error::from);
            }
        }
    }
    status::set_finalizer(ctx, object, false).await?;
    Ok(Action::await_change())
}

/// Whether the `CoderInstance` `name` (beside `object`) is gone or being deleted. A failed read
/// counts as present: the caller retries.
async fn instance_gone<K: Managed>(ctx: &Context, object: &K, name: &str) -> bool {
    let api = Api::<CoderInstance>::namespaced(ctx.kube.clone(), &object.namespace().unwrap_or_default());
    match api.get_opt(name).await {
        Ok(None) => true,
        Ok(Some(instance)) => instance.metadata.deletion_timestamp.is_some(),
        Err(_) => false,
    }
}
