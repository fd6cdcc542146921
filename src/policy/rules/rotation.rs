//! Rotation warnings: spec changes that make the operator (CoderProvisioner) or coder-guard's
//! reconcile loop (CoderProvisionerKey) delete and re-create a provisioner key. They are
//! allowed; the warning says what will happen so that nobody is surprised by restarting daemons.
//!
//! Messages name organizations, key names and Secret names, never tag values or key material.

use super::{Rule, RuleInfo};
use crate::api::coder::{CoderProvisioner, nonempty};
use crate::api::own::CoderProvisionerKey;
use crate::fp;
use crate::policy::config::Mode;
use crate::policy::kind::Kind;
use crate::policy::subject::{Object, Report, Subject};

/// Rules of this family.
pub const RULES: &[Rule] = &[Rule {
    info: RuleInfo {
        id: "provisioner-key-rotation",
        summary: "Changes that re-create a provisioner key are called out",
        explanation: "The operator tracks a CoderProvisioner's organization, key name, tags and control \
plane; when one of them changes it deletes the provisioner key in coderd and creates a new one, writes it \
to the key Secret, and the daemons restart with it (in-flight jobs are interrupted). coder-guard's reconcile \
loop does the same for a CoderProvisionerKey whose name, organization or tags change. A new Secret name \
means a new Secret is written and the old one is left behind; because coderd never returns an existing \
key's plaintext, filling the new Secret also re-creates the key. These changes are allowed with a warning: \
make them when daemons may restart, or revert the field to keep the current key.",
        kinds: &[Kind::CoderProvisioner, Kind::CoderProvisionerKey],
        default_mode: Mode::Warn,
    },
    check: rotation,
}];

const RESTART: &str = "the daemons restart with the new key and jobs running on them are interrupted; \
revert the field if the current key should stay";

fn rotation(s: &Subject<'_>, r: &mut Report) {
    if !s.is_update() {
        return;
    }
    match (s.object, s.old) {
        (Object::Provisioner(new), Some(Object::Provisioner(old))) => provisioner(r, old, new),
        (Object::ProvisionerKey(new), Some(Object::ProvisionerKey(old))) => key(r, old, new),
        _ => {}
    }
}

// === CoderProvisioner (the operator) ===

fn provisioner(r: &mut Report, old: &CoderProvisioner, new: &CoderProvisioner) {
    let secret = new.key_secret_name();
    let (was, now) = (old.organization(), new.organization());
    if was != now {
        r.warn(
            fp!("spec", "organizationName"),
            format!(
                "changing the organization from {was:?} to {now:?} makes the operator delete the provisioner key \
in {was:?} and create one in {now:?}, written to Secret {secret:?}; {RESTART}"
            ),
        );
    }
    let (was, now) = (old.key_name(), new.key_name());
    if was != now {
        r.warn(
            fp!("spec", "key", "name"),
            format!(
                "changing the provisioner key name from {was:?} to {now:?} makes the operator delete key \
{was:?} and create key {now:?}, written to Secret {secret:?}; {RESTART}"
            ),
        );
    }
    if old.spec.tags != new.spec.tags {
        r.warn(
            fp!("spec", "tags"),
            format!(
                "changing spec.tags makes the operator delete the provisioner key and create one with the new \
tags (coderd cannot change a key's tags), written to Secret {secret:?}; {RESTART}"
            ),
        );
    }
    let (was, now) = (&old.spec.control_plane_ref.name, &new.spec.control_plane_ref.name);
    if was != now {
        r.warn(
            fp!("spec", "controlPlaneRef", "name"),
            format!(
                "changing the control plane from {was:?} to {now:?} makes the operator delete the provisioner \
key through {was:?} and create one through {now:?}, written to Secret {secret:?}; {RESTART}"
            ),
        );
    }
    let was = old.key_secret_name();
    if was != secret {
        r.warn(
            fp!("spec", "key", "secretName"),
            format!(
                "the operator writes the key into the new Secret {secret:?} and leaves Secret {was:?} behind \
until the CoderProvisioner is deleted; unless {secret:?} already holds the key, coderd cannot return the \
existing key's plaintext, so the key is re-created and {RESTART}"
            ),
        );
    }
    let data_key = |p: &CoderProvisioner| nonempty(p.spec.key.secret_key.as_deref()).unwrap_or("key").to_owned();
    let (was, now) = (data_key(old), data_key(new));
    if was != now {
        r.warn(
            fp!("spec", "key", "secretKey"),
            format!(
                "the operator reads the key from data key {now:?} of Secret {secret:?} instead of {was:?}; \
when it is empty, the key is re-created and {RESTART}"
            ),
        );
    }
}

// === CoderProvisionerKey (the reconcile loop) ===

fn key(r: &mut Report, old: &CoderProvisionerKey, new: &CoderProvisionerKey) {
    let secret = new.secret_name();
    let org = |k: &CoderProvisionerKey| nonempty(Some(k.spec.organization.as_str())).unwrap_or("default").to_owned();
    let (was, now) = (org(old), org(new));
    if was != now {
        r.warn(
            fp!("spec", "organization"),
            format!(
                "changing the organization from {was:?} to {now:?} makes the reconcile loop delete the \
provisioner key in {was:?} and create one in {now:?}, written to Secret {secret:?}; daemons using it must \
pick up the new key. Revert the field if the current key should stay"
            ),
        );
    }
    let (was, now) = (old.key_name(), new.key_name());
    if was != now {
        r.warn(
            fp!("spec", "name"),
            format!(
                "changing the key name from {was:?} to {now:?} makes the reconcile loop delete key {was:?} and \
create key {now:?}, written to Secret {secret:?}; daemons using it must pick up the new key. Revert the \
field if the current key should stay"
            ),
        );
    }
    if old.spec.tags != new.spec.tags {
        r.warn(
            fp!("spec", "tags"),
            format!(
                "changing spec.tags makes the reconcile loop delete the provisioner key and create one with the \
new tags (coderd cannot change a key's tags), written to Secret {secret:?}; daemons using it must pick up \
the new key. Revert the field if the current key should stay"
            ),
        );
    }
    let was = old.secret_name();
    if was != secret {
        r.warn(
            fp!("spec", "secretName"),
            format!(
                "the reconcile loop writes the key into the new Secret {secret:?} and leaves Secret {was:?} \
behind; coderd cannot return the existing key's plaintext, so filling the new Secret re-creates the key \
(rotationPolicy Never leaves it empty). Point consumers at {secret:?} and delete {was:?} once nothing reads it"
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::policy::Operation;
    use crate::policy::finding::Severity;
    use crate::policy::fixtures::*;

    /// Old spec fields, new spec fields, expected findings.
    type Case = (Value, Value, Vec<(Severity, String)>);

    const RULE: &str = "provisioner-key-rotation";

    fn prov(extra: Value) -> Value {
        let mut spec = json!({"controlPlaneRef": {"name": "cp"}});
        spec.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        provisioner("build", spec)
    }

    fn pkey(extra: Value) -> Value {
        let mut spec = json!({"instanceRef": {"name": "main"}});
        spec.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        provisioner_key("build", spec)
    }

    fn warnings(old: &Value, new: &Value) -> Vec<(Severity, String)> {
        hits(&update(old, new, &[]), RULE)
    }

    fn w(path: &str) -> Vec<(Severity, String)> {
        vec![(Severity::Warning, path.to_owned())]
    }

    #[test]
    fn provisioner_changes_that_rotate() {
        let cases: Vec<Case> = vec![
            (json!({}), json!({"organizationName": "eng"}), w("spec.organizationName")),
            (json!({"organizationName": "eng"}), json!({"organizationName": "ops"}), w("spec.organizationName")),
            (json!({}), json!({"key": {"name": "other"}}), w("spec.key.name")),
            (json!({"tags": {"a": "1"}}), json!({"tags": {"a": "2"}}), w("spec.tags")),
            (json!({}), json!({"tags": {"a": "1"}}), w("spec.tags")),
            (json!({}), json!({"controlPlaneRef": {"name": "cp2"}}), w("spec.controlPlaneRef.name")),
            (json!({}), json!({"key": {"secretName": "elsewhere"}}), w("spec.key.secretName")),
            (json!({}), json!({"key": {"secretKey": "token"}}), w("spec.key.secretKey")),
            // Explicit defaults are no change.
            (json!({}), json!({"organizationName": "default", "key": {"name": "build", "secretKey": "key"}}), vec![]),
            (json!({}), json!({"key": {"secretName": "build-provisioner-key"}, "organizationName": ""}), vec![]),
            // Fields that do not touch the key.
            (json!({"tags": {"a": "1", "b": "2"}}), json!({"tags": {"b": "2", "a": "1"}, "replicas": 3}), vec![]),
            (
                json!({}),
                json!({"image": "ghcr.io/coder/coder:v2.34.1", "extraEnv": [{"name": "X", "value": "1"}]}),
                vec![],
            ),
        ];
        for (old, new, want) in cases {
            assert_eq!(warnings(&prov(old.clone()), &prov(new.clone())), want, "{old} -> {new}");
        }
        let two = warnings(&prov(json!({})), &prov(json!({"organizationName": "eng", "tags": {"a": "1"}})));
        assert_eq!(two.len(), 2, "one warning per changed field");
    }

    #[test]
    fn provisioner_key_changes_that_rotate() {
        let cases: Vec<Case> = vec![
            (json!({}), json!({"organization": "eng"}), w("spec.organization")),
            (json!({}), json!({"name": "build-2"}), w("spec.name")),
            (json!({}), json!({"tags": {"scope": "organization"}}), w("spec.tags")),
            (json!({}), json!({"secretName": "elsewhere"}), w("spec.secretName")),
            (
                json!({}),
                json!({"organization": "default", "name": "build", "secretName": "build-provisioner-key"}),
                vec![],
            ),
            (json!({}), json!({"rotationPolicy": "Never", "secretKey": "k"}), vec![]),
        ];
        for (old, new, want) in cases {
            assert_eq!(warnings(&pkey(old.clone()), &pkey(new.clone())), want, "{old} -> {new}");
        }
    }

    #[test]
    fn messages_say_what_happens() {
        let e = update(&prov(json!({})), &prov(json!({"organizationName": "eng"})), &[]);
        let msg = &e.findings.iter().find(|f| f.rule == RULE).unwrap().message;
        assert!(msg.contains("\"default\" to \"eng\"") && msg.contains("build-provisioner-key"), "{msg}");
        assert!(msg.contains("daemons restart"), "{msg}");
        assert!(denied(&e, RULE).is_empty(), "rotation is a warning, never a denial");
        let e = update(&pkey(json!({})), &pkey(json!({"secretName": "new"})), &[]);
        let msg = &e.findings.iter().find(|f| f.rule == RULE).unwrap().message;
        assert!(msg.contains("\"new\"") && msg.contains("\"build-provisioner-key\" behind"), "{msg}");
    }

    #[test]
    fn create_never_warns() {
        let p = prov(json!({"organizationName": "eng", "tags": {"a": "1"}}));
        let k = pkey(json!({"organization": "eng", "secretName": "s"}));
        for (old, new) in [(prov(json!({})), p), (pkey(json!({})), k)] {
            // Even with an old object at hand, only an UPDATE is judged.
            let e = evaluate(Operation::Create, &new, Some(&old), false, &cluster(&[]));
            assert!(hits(&e, RULE).is_empty(), "{:?}", e.findings);
            assert_eq!(warnings(&old, &new).len(), 2);
        }
    }

    #[test]
    fn messages_never_contain_secret_values() {
        let key_secret = secret("build-provisioner-key", &[("key", "pk-s3cr3t-value")]);
        let old = prov(json!({"tags": {"token": "tag-s3cr3t-a"}}));
        let new = prov(json!({"tags": {"token": "tag-s3cr3t-b"}, "organizationName": "eng"}));
        let e = update(&old, &new, &[key_secret]);
        assert_eq!(hits(&e, RULE).len(), 2);
        for f in &e.findings {
            assert!(!f.message.contains("s3cr3t"), "{f}");
        }
    }
}
