//! The pure half of the provisioner-key controller: what the spec asks for, what the Secret
//! holds, and what to do about coderd's key. No I/O.

use std::collections::BTreeMap;

use kube::ResourceExt;

use crate::api::own::{AppliedState, CoderProvisionerKey, DEFAULT_PROVISIONER_KEY_KEY, ResourceStatus, RotationPolicy};
use crate::coderd::types::ProvisionerKey;
use crate::reconcile::outcome::{Surface, Wait, digest};

/// Condition: coderd has the key, with the spec's tags.
pub(super) const KEY_READY: &str = "KeyReady";
/// Condition: the Secret holds the key's plaintext.
pub(super) const SECRET_READY: &str = "SecretReady";

/// What the spec asks for, with defaults applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Desired {
    pub namespace: String,
    pub organization: String,
    pub name: String,
    pub tags: BTreeMap<String, String>,
    pub secret_name: String,
    pub secret_key: String,
    pub policy: RotationPolicy,
}

impl Desired {
    pub(super) fn of(key: &CoderProvisionerKey) -> Self {
        let organization = match key.spec.organization.as_str() {
            "" => "default".to_owned(),
            org => org.to_owned(),
        };
        Desired {
            namespace: key.namespace().unwrap_or_default(),
            organization,
            name: key.key_name().to_owned(),
            tags: key.spec.tags.clone(),
            secret_name: key.secret_name(),
            secret_key: key
                .spec
                .secret_key
                .clone()
                .filter(|k| !k.is_empty())
                .unwrap_or(DEFAULT_PROVISIONER_KEY_KEY.into()),
            policy: key.spec.rotation_policy,
        }
    }

    /// `Secret ns/name key "k"`, for messages.
    pub(super) fn secret(&self) -> String {
        format!("Secret {}/{} (key {:?})", self.namespace, self.secret_name, self.secret_key)
    }

    /// `key "name" in organization "org"`, for messages.
    pub(super) fn key(&self) -> String {
        format!("key {:?} in organization {:?}", self.name, self.organization)
    }
}

/// What the target Secret holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SecretState {
    /// No Secret, no such data key, or an empty value.
    Missing,
    /// The plaintext of coderd's key under the desired name.
    Matches,
    /// A value coderd does not know, or that belongs to another key.
    Foreign,
}

/// Why an existing key is re-created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Why {
    SecretLost,
    ForeignSecret,
    TagsDrift,
}

impl Why {
    pub(super) fn describe(self) -> &'static str {
        match self {
            Why::SecretLost => "the Secret had lost the key",
            Why::ForeignSecret => "the Secret held a value that was not this key",
            Why::TagsDrift => "spec.tags differed from the key's tags",
        }
    }
}

/// What to do about the key.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Plan {
    /// coderd's key and the Secret are right: no write.
    Keep,
    /// coderd has no key under the name: create it and write the plaintext.
    Create,
    /// Delete coderd's key, create it again and write the new plaintext.
    Rotate { why: Why },
    /// Something is wrong that `rotationPolicy: Never` forbids fixing: reported on this
    /// surface (`KeyReady` or `SecretReady`); the other surface is fine.
    Blocked(Surface),
}

/// The plan for coderd's key under the desired name (`existing`, see [`find`]) and the state of
/// the Secret.
pub(super) fn plan(desired: &Desired, existing: Option<&ProvisionerKey>, secret: SecretState) -> Plan {
    let Some(existing) = existing else { return Plan::Create };
    let why = match secret {
        SecretState::Missing => Why::SecretLost,
        SecretState::Foreign => Why::ForeignSecret,
        SecretState::Matches if existing.tags != desired.tags => Why::TagsDrift,
        SecretState::Matches => return Plan::Keep,
    };
    if desired.policy == RotationPolicy::OnSecretLoss {
        return Plan::Rotate { why };
    }
    let fix = format!("delete {} in coderd or set rotationPolicy: OnSecretLoss", desired.key());
    let surface = match why {
        Why::SecretLost => Surface::failed(
            SECRET_READY,
            "SecretLost",
            format!("the {} lost the key; coderd never shows it again: {fix}", desired.secret()),
            Wait::Slow,
        ),
        Why::ForeignSecret => Surface::failed(
            SECRET_READY,
            "ForeignSecret",
            format!(
                "the {} holds a value that is not coderd's {} (coderd does not know it, or it is another key's); \
                 coderd never shows the key again: {fix}, or put the key back",
                desired.secret(),
                desired.key()
            ),
            Wait::Slow,
        ),
        Why::TagsDrift => {
            let differ: Vec<&str> = existing
                .tags
                .keys()
                .chain(desired.tags.keys())
                .filter(|k| existing.tags.get(*k) != desired.tags.get(*k))
                .map(String::as_str)
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            Surface::failed(
                KEY_READY,
                "TagsDrift",
                format!(
                    "coderd's {} has other tags than spec.tags (differing: {}) and coderd cannot change a key's tags; \
                     restore spec.tags, {fix} (the key is re-created with a new plaintext)",
                    desired.key(),
                    differ.join(", ")
                ),
                Wait::Slow,
            )
        }
    };
    Plan::Blocked(surface)
}

/// coderd's key named `name`: names are unique per organization ignoring case.
pub(super) fn find<'a>(keys: &'a [ProvisionerKey], name: &str) -> Option<&'a ProvisionerKey> {
    keys.iter().find(|k| k.name.eq_ignore_ascii_case(name))
}

/// What is known of the Secret's state before asking coderd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Check {
    Known(SecretState),
    /// The value is not the one last written for this key: ask coderd whose it is.
    Verify,
}

/// The Secret's state from its value's digest (`digest(uid, [value])`) and the status: it
/// matches when it is the value last written for the key under the desired organization and
/// name, and coderd's key is still the one recorded.
pub(super) fn check(
    desired: &Desired,
    status: Option<&ResourceStatus>,
    existing: Option<&ProvisionerKey>,
    value_digest: Option<&str>,
) -> Check {
    let Some(value_digest) = value_digest else { return Check::Known(SecretState::Missing) };
    // With no key in coderd, the value cannot be its plaintext (the plan creates one anyway).
    let Some(existing) = existing else { return Check::Known(SecretState::Foreign) };
    let applied = status.and_then(|s| s.applied.as_ref());
    let same_key = applied.is_some_and(|a| {
        a.organization.as_deref() == Some(desired.organization.as_str())
            && a.name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(&desired.name))
            && a.secret_digest.as_deref() == Some(value_digest)
    });
    let same_id = status.and_then(|s| s.coderd_id.as_deref()).is_none_or(|id| id == existing.id);
    if same_key && same_id { Check::Known(SecretState::Matches) } else { Check::Verify }
}

/// The Secret's state from coderd's answer to "whose key is this value" (`owner`).
pub(super) fn verified(existing: &ProvisionerKey, owner: Option<&ProvisionerKey>) -> SecretState {
    match owner {
        Some(k) if k.id == existing.id => SecretState::Matches,
        _ => SecretState::Foreign,
    }
}

/// The key this resource created under another organization or name (the spec changed since):
/// `(organization, name)` to delete.
pub(super) fn stale(desired: &Desired, applied: Option<&AppliedState>) -> Option<(String, String)> {
    let applied = applied?;
    let name = applied.name.clone()?;
    let organization = applied.organization.clone().unwrap_or_else(|| desired.organization.clone());
    let moved = organization != desired.organization || !name.eq_ignore_ascii_case(&desired.name);
    moved.then_some((organization, name))
}

/// The key to delete when the resource is deleted: as last applied, else as the spec says.
pub(super) fn cleanup_target(key: &CoderProvisionerKey) -> (String, String) {
    let desired = Desired::of(key);
    let applied = key.status.as_ref().and_then(|s| s.applied.as_ref());
    let organization = applied.and_then(|a| a.organization.clone()).unwrap_or(desired.organization);
    let name = applied.and_then(|a| a.name.clone()).unwrap_or(desired.name);
    (organization, name)
}

/// Digest of a tag set (tags are not secret; the digest keeps status short).
pub(super) fn tags_digest(uid: &str, tags: &BTreeMap<String, String>) -> String {
    let parts: Vec<&str> = tags.iter().flat_map(|(k, v)| [k.as_str(), v.as_str()]).collect();
    digest(uid, &parts)
}
