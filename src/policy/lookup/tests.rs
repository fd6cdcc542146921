use serde_json::json;

use super::*;

#[test]
fn keeps_only_the_fields_lookups_serve() {
    let cp = json!({"apiVersion": "coder.com/v1alpha1", "kind": "CoderControlPlane",
        "metadata": {"name": "cp", "namespace": "ns", "labels": {"a": "b"}},
        "spec": {"licenseSecretRef": {"name": "lic"}, "extraEnv": [{"name": "X", "value": "y"}]},
        "status": {"url": "http://cp.ns.svc.cluster.local:80"}});
    let mut index = Index::new(true);
    index.insert(&cp, "default");
    let Found::Present(kept) = index.object(Kind::CoderControlPlane, "ns", "cp") else { panic!("indexed") };
    assert_eq!(
        serde_json::from_str::<Value>(&kept).unwrap(),
        json!({"apiVersion": "coder.com/v1alpha1", "kind": "CoderControlPlane",
            "metadata": {"name": "cp", "namespace": "ns"},
            "spec": {"licenseSecretRef": {"name": "lic"}},
            "status": {"url": "http://cp.ns.svc.cluster.local:80"}})
    );
    assert_eq!(index.object(Kind::CoderControlPlane, "ns", "other"), Found::Absent);
    assert_eq!(Index::new(false).object(Kind::CoderControlPlane, "ns", "cp"), Found::Unknown);
}

#[test]
fn secrets_keep_digests_not_values() {
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
        "data": {"b64": "aGVsbG8=", "empty": ""}, "stringData": {"plain": "hello"}});
    let info = SecretInfo::from_object(&secret);
    assert_eq!(info.key("b64"), KeyState::Present);
    assert_eq!(info.key("empty"), KeyState::Empty);
    assert_eq!(info.key("missing"), KeyState::Missing);
    // base64 `data` and plain `stringData` of the same value digest alike.
    assert_eq!(info.digest("b64"), info.digest("plain"));
    assert_eq!(
        info.digest("b64").map(ValueDigest::checksum).as_deref(),
        Some("sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824")
    );
    assert!(!format!("{info:?}").contains("hello"));
}

#[test]
fn assumed_keys_exist_without_a_digest() {
    let mut index = Index::new(false);
    index.assume_secret("ns", "tok", Some("token"));
    index.assume_secret("ns", "any", None);
    let Found::Present(tok) = index.secret("ns", "tok") else { panic!("assumed") };
    assert_eq!(tok.key("token"), KeyState::Present);
    assert_eq!(tok.key("other"), KeyState::Missing);
    assert_eq!(tok.digest("token"), None, "no made-up digest for a mutator to stamp");
    let Found::Present(any) = index.secret("ns", "any") else { panic!("assumed") };
    assert_eq!(any.key("whatever"), KeyState::Present);
}

#[test]
fn reinserting_replaces_claims() {
    let org = |name: &str| {
        json!({"apiVersion": "coderd.coder.com/v1alpha1", "kind": "CoderOrganization",
        "metadata": {"name": "o", "namespace": "ns"}, "spec": {"instanceRef": {"name": "i"}, "name": name}})
    };
    let claim = |name: &str| Claim::Organization { namespace: "ns".into(), instance: "i".into(), name: name.into() };
    let mut index = Index::new(true);
    index.insert(&org("a"), "default");
    index.insert(&org("b"), "default");
    assert!(index.claimants(&claim("a")).is_empty());
    assert_eq!(index.claimants(&claim("b")).len(), 1);
    index.remove(&ObjectKey { kind: Kind::CoderOrganization, namespace: "ns".into(), name: "o".into() });
    assert!(index.claimants(&claim("b")).is_empty());
}

fn key(kind: Kind, name: &str) -> ObjectKey {
    ObjectKey { kind, namespace: "ns".into(), name: name.into() }
}

fn instance(name: &str, url: &str) -> Value {
    json!({"apiVersion": "coderd.coder.com/v1alpha1", "kind": "CoderInstance",
        "metadata": {"name": name, "namespace": "ns"},
        "spec": {"url": url, "tokenSecretRef": {"name": "tok"}, "appearance": {}}})
}

fn secret(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "ns"},
        "data": {"token": "c2VjcmV0"}})
}

#[test]
fn overlay_answers_confirmed_keys_from_the_fresh_index() {
    let mut cache = Index::new(true);
    cache.insert(&secret("stale"), "ns");
    cache.insert(&instance("cached", "https://a.example.com"), "ns");
    let mut fresh = Index::new(true);
    fresh.insert(&secret("new"), "ns");

    let confirmed = [key(Kind::Secret, "new"), key(Kind::Secret, "stale"), key(Kind::CoderInstance, "gone")];
    let overlay = Overlay::new(&fresh, confirmed, &cache);
    // Confirmed: the fresh index decides, present or absent.
    assert!(matches!(overlay.secret("ns", "new"), Found::Present(_)));
    assert_eq!(overlay.secret("ns", "stale"), Found::Absent);
    assert_eq!(overlay.object(Kind::CoderInstance, "ns", "gone"), Found::Absent);
    // Not confirmed: the base decides.
    assert!(matches!(overlay.object(Kind::CoderInstance, "ns", "cached"), Found::Present(_)));
    assert_eq!(overlay.secret("ns", "other"), Found::Absent);

    // A non-authoritative fresh index (offline) leaves confirmed keys unknown.
    let offline = Index::new(false);
    let overlay = Overlay::new(&offline, [key(Kind::Secret, "stale")], &cache);
    assert_eq!(overlay.secret("ns", "stale"), Found::Unknown);
}

#[test]
fn overlay_claimants_replace_confirmed_objects() {
    let claim = Claim::DeploymentState { coderd: "https://a.example.com".into() };
    let mut cache = Index::new(true);
    cache.insert(&instance("one", "https://a.example.com"), "ns");
    cache.insert(&instance("two", "https://a.example.com"), "ns");
    assert_eq!(cache.claimants(&claim).len(), 2, "fixture: both instances claim the URL");
    // `two` was deleted since the cache saw it; `three` was created.
    let mut fresh = Index::new(true);
    fresh.insert(&instance("three", "https://a.example.com"), "ns");
    let confirmed = [key(Kind::CoderInstance, "two"), key(Kind::CoderInstance, "three")];
    let overlay = Overlay::new(&fresh, confirmed, &cache);
    assert_eq!(overlay.claimants(&claim), vec![key(Kind::CoderInstance, "one"), key(Kind::CoderInstance, "three")]);
}

#[test]
fn absorb_replaces_entries_and_claims() {
    let claim = |url: &str| Claim::DeploymentState { coderd: url.into() };
    let mut index = Index::new(true);
    index.insert(&instance("i", "https://old.example.com"), "ns");
    index.insert(&secret("kept"), "ns");
    let mut staged = Index::new(false);
    staged.insert(&instance("i", "https://new.example.com"), "ns");
    staged.insert(&secret("added"), "ns");
    index.absorb(staged);

    assert!(index.claimants(&claim("https://old.example.com")).is_empty());
    assert_eq!(index.claimants(&claim("https://new.example.com")), vec![key(Kind::CoderInstance, "i")]);
    let Found::Present(i) = index.object(Kind::CoderInstance, "ns", "i") else { panic!("absorbed") };
    assert_eq!(serde_json::from_str::<Value>(&i).unwrap()["spec"]["url"], "https://new.example.com");
    assert!(matches!(index.secret("ns", "kept"), Found::Present(_)));
    assert!(matches!(index.secret("ns", "added"), Found::Present(_)));
    // The receiving index keeps its authority.
    assert_eq!(index.secret("ns", "missing"), Found::Absent);
}

#[test]
fn absorb_matches_inserting_one_by_one_when_the_later_object_keeps_nothing() {
    let org = json!({"apiVersion": "coderd.coder.com/v1alpha1", "kind": "CoderOrganization",
        "metadata": {"name": "o", "namespace": "ns"}, "spec": {"instanceRef": {"name": "i"}, "name": "a"}});
    // Same key, but it does not decode (no instanceRef): it claims nothing, and the index
    // keeps no fields of organizations.
    let patch = json!({"apiVersion": "coderd.coder.com/v1alpha1", "kind": "CoderOrganization",
        "metadata": {"name": "o", "namespace": "ns"}, "spec": {"name": "a"}});
    let claim = Claim::Organization { namespace: "ns".into(), instance: "i".into(), name: "a".into() };

    let mut sequential = Index::new(false);
    sequential.insert(&org, "ns");
    sequential.insert(&patch, "ns");

    let (mut first, mut second) = (Index::new(false), Index::new(false));
    first.insert(&org, "ns");
    second.insert(&patch, "ns");
    assert_eq!(first.claimants(&claim), vec![key(Kind::CoderOrganization, "o")], "fixture: the first claims");
    let mut absorbed = Index::new(false);
    absorbed.absorb(first);
    absorbed.absorb(second);

    assert!(sequential.claimants(&claim).is_empty());
    assert_eq!(absorbed.claimants(&claim), sequential.claimants(&claim));
    assert_eq!(
        absorbed.object(Kind::CoderOrganization, "ns", "o"),
        sequential.object(Kind::CoderOrganization, "ns", "o")
    );
    assert_eq!(absorbed.objects, sequential.objects);
    assert_eq!(absorbed.claims, sequential.claims);
    assert_eq!(absorbed.claimed_by, sequential.claimed_by);
}
