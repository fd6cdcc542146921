//! Unit tests of the shared CA: the stored format, the leader's steps as a table of (stored set,
//! confirmed caBundle, now) → step, the replicas' leaf decision, a simulated leader, `caBundle`
//! patcher, lagging API server and three polling replicas over three CA lifetimes (every served
//! leaf verified by rustls against the bundle the API server trusts at each simulated instant),
//! and the real task with two replicas sharing an in-memory store.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::authority::{issue_certified, whole_seconds};
use super::shared::*;
use super::shared_run::{CaStore, Created, StoreError, Stored};
use super::{CertHandle, SharedCa, service_dns_names, start_shared};

const NAME: &str = "coder-guard.coder-guard.svc";

fn names() -> Vec<String> {
    service_dns_names("coder-guard", "coder-guard")
}

fn t0() -> SystemTime {
    whole_seconds(SystemTime::now())
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn ders(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem).map(|c| c.unwrap()).collect()
}

fn verify(bundle_pem: &[u8], leaf: &CertificateDer<'_>, at: SystemTime) -> Result<(), rustls::Error> {
    let mut roots = RootCertStore::empty();
    for ca in ders(bundle_pem) {
        roots.add(ca).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider).build().unwrap();
    let name = ServerName::try_from(NAME).unwrap();
    let now = UnixTime::since_unix_epoch(at.duration_since(UNIX_EPOCH).unwrap());
    verifier.verify_server_cert(leaf, &[], &name, &[], now).map(|_| ())
}

/// A leaf issued by `set`'s current CA at `now`, as a replica would.
fn issue(set: &CaSet, now: SystemTime, timing: &Timing) -> (CertificateDer<'static>, LeafState) {
    let ca = set.current.ca().unwrap();
    let (key, not_after) = issue_certified(&names(), timing.leaf_validity, &ca, whole_seconds(now)).unwrap();
    (key.cert[0].clone(), LeafState { ca: set.current().der.clone(), not_after })
}

// === timing and the stored format ===

#[test]
fn default_timing_is_the_scaled_timing_of_the_default_ca_validity() {
    assert_eq!(Timing::for_ca_validity(super::DEFAULT_CA_VALIDITY), Timing::default());
    let t = Timing::for_ca_validity(secs(36));
    assert_eq!(
        (t.leaf_validity, t.renew_before, t.publish_grace, t.poll_interval),
        (secs(9), secs(3), secs(1), Duration::from_millis(600))
    );
    assert!(t.renew_before + t.publish_grace < t.ca_validity / 3, "scaled timing must validate: {t:?}");
}

#[test]
fn the_stored_set_round_trips_and_never_prints_a_key() {
    let timing = Timing::default();
    let set = CaSet::create(t0(), &timing).unwrap();
    let data = set.to_data();
    assert_eq!(data.keys().collect::<Vec<_>>(), [CA_CRT, CA_KEY]);
    assert_eq!(CaSet::from_data(&data).unwrap(), set);

    let staged = set.apply(&Step::Stage, t0(), &timing).unwrap().unwrap();
    let promoted = staged.apply(&Step::Promote { forced: false }, t0(), &timing).unwrap().unwrap();
    assert_eq!(CaSet::from_data(&staged.to_data()).unwrap(), staged);
    assert_eq!(CaSet::from_data(&promoted.to_data()).unwrap(), promoted);
    assert_eq!(promoted.to_data().keys().collect::<Vec<_>>(), [CA_CRT, CA_KEY, PREVIOUS_CRT]);

    let key = String::from_utf8(data[CA_KEY].clone()).unwrap();
    let key_body = key.lines().nth(1).unwrap();
    for shown in [format!("{staged:?}"), format!("{promoted:?}")] {
        assert!(!shown.contains("PRIVATE KEY") && !shown.contains(key_body), "{shown}");
    }
}

#[test]
fn unusable_data_is_refused_without_quoting_it() {
    let timing = Timing::default();
    let set = CaSet::create(t0(), &timing).unwrap();
    let other = CaSet::create(t0(), &timing).unwrap().to_data();
    let with = |key: &str, value: &[u8]| {
        let mut data = set.to_data();
        data.insert(key.to_owned(), value.to_vec());
        data
    };
    let without = |key: &str| {
        let mut data = set.to_data();
        data.remove(key);
        data
    };
    let leaf = pem_block(&issue(&set, t0(), &timing).0);
    let secret = b"-----BEGIN PRIVATE KEY-----\nU0VDUkVULUtFWS1CWVRFUw==\n-----END PRIVATE KEY-----\n";
    let cases: Vec<(BTreeMap<String, Vec<u8>>, &str)> = vec![
        (without(CA_KEY), "no ca.crt and ca.key"),
        (
            {
                let mut data = without(CA_KEY);
                data.insert("tls.key".into(), secret.to_vec());
                data
            },
            "pick another name with --self-signed-ca-secret",
        ),
        (with(CA_KEY, secret), "ca.key is not a PEM PKCS#8 private key"),
        (with(CA_KEY, &other[CA_KEY]), "ca.key does not belong to the certificate in ca.crt"),
        (with(CA_CRT, b"SECRET-GARBAGE"), "ca.crt: no PEM certificate"),
        (with(CA_CRT, leaf.as_bytes()), "is not a CA certificate"),
        (with(NEXT_CRT, &other[CA_CRT]), "only one of next.crt and next.key"),
        (with(PREVIOUS_CRT, b"-----BEGIN CERTIFICATE-----\nSECRET\n"), "previous.crt"),
    ];
    for (data, want) in cases {
        let reason = CaSet::from_data(&data).unwrap_err();
        assert!(reason.contains(want), "{reason:?} should say {want:?}");
        assert!(!reason.contains("SECRET") && !reason.contains("U0VDUkVU"), "{reason:?} quotes the value");
    }
}

// === the leader's steps ===

#[test]
fn the_leaders_steps_follow_the_rotation_sequence() {
    let timing = Timing::for_ca_validity(secs(3000));
    let (v, grace) = (timing.ca_validity, timing.publish_grace);
    let start = t0();
    assert_eq!(plan(None, None, start, &timing), Step::Create);

    let set = CaSet::create(start, &timing).unwrap();
    assert_eq!(plan(Some(&set), None, start, &timing), Step::Idle);
    let rotate_at = start + v - v / 3;
    assert_eq!(plan(Some(&set), None, rotate_at - secs(1), &timing), Step::Idle);
    assert_eq!(plan(Some(&set), None, rotate_at, &timing), Step::Stage);

    let staged = set.apply(&Step::Stage, rotate_at, &timing).unwrap().unwrap();
    assert_eq!(staged.current, set.current, "staging does not change the signing CA");
    let next = staged.next().unwrap().clone();
    assert_eq!(plan(Some(&staged), None, rotate_at, &timing), Step::WaitForPublication);

    let old_bundle = Published { bundle: set.bundle_pem(), since: rotate_at };
    assert_eq!(plan(Some(&staged), Some(&old_bundle), rotate_at + secs(500), &timing), Step::WaitForPublication);

    let at = rotate_at + secs(5);
    let published = Published { bundle: staged.bundle_pem(), since: at };
    assert_eq!(plan(Some(&staged), Some(&published), at, &timing), Step::WaitForGrace { until: at + grace });
    assert_eq!(
        plan(Some(&staged), Some(&published), at + grace - secs(1), &timing),
        Step::WaitForGrace { until: at + grace }
    );
    assert_eq!(plan(Some(&staged), Some(&published), at + grace, &timing), Step::Promote { forced: false });

    // Unconfirmed: promoted only when the current CA is within the grace of expiring.
    let expiry = set.current().not_after;
    assert_eq!(plan(Some(&staged), None, expiry - grace - secs(1), &timing), Step::WaitForPublication);
    assert_eq!(plan(Some(&staged), None, expiry - grace, &timing), Step::Promote { forced: true });

    let promoted = staged.apply(&Step::Promote { forced: false }, at + grace, &timing).unwrap().unwrap();
    assert_eq!(promoted.current().der, next.der);
    assert_eq!(promoted.previous, vec![set.current().clone()]);
    assert_eq!(
        ders(&promoted.bundle_pem()),
        ders(&staged.bundle_pem()),
        "promotion does not change what the bundle trusts"
    );
    assert_eq!(plan(Some(&promoted), Some(&published), expiry - secs(1), &timing), Step::Idle);
    assert_eq!(plan(Some(&promoted), Some(&published), expiry, &timing), Step::Prune);
    let pruned = promoted.apply(&Step::Prune, expiry, &timing).unwrap().unwrap();
    assert!(pruned.previous.is_empty());
    assert_eq!(ders(&pruned.bundle_pem()), vec![next.der.clone()]);

    // An expired next CA (a rotation abandoned for a CA lifetime) is pruned, then staged anew.
    let long_after = next.not_after;
    assert_eq!(plan(Some(&staged), None, long_after, &timing), Step::Prune);
    let dropped = staged.apply(&Step::Prune, long_after, &timing).unwrap().unwrap();
    assert_eq!(dropped.next(), None);
    assert_eq!(plan(Some(&dropped), None, long_after, &timing), Step::Stage);

    // Steps that do not apply change nothing.
    assert_eq!(set.apply(&Step::Promote { forced: false }, start, &timing).unwrap(), None);
    assert_eq!(staged.apply(&Step::Stage, start, &timing).unwrap(), None);
    assert_eq!(set.apply(&Step::Idle, start, &timing).unwrap(), None);
}

#[test]
fn a_replica_renews_its_leaf_when_the_ca_changes_or_it_nears_expiry() {
    let timing = Timing::for_ca_validity(secs(3000));
    let start = t0();
    let set = CaSet::create(start, &timing).unwrap();
    assert!(leaf_due(&set, None, start, &timing), "no leaf yet");
    let (_, leaf) = issue(&set, start, &timing);
    assert_eq!(leaf.not_after, start + timing.leaf_validity);
    assert!(!leaf_due(&set, Some(&leaf), start, &timing));
    let renew_at = leaf.not_after - timing.renew_before;
    assert!(!leaf_due(&set, Some(&leaf), renew_at - secs(1), &timing));
    assert!(leaf_due(&set, Some(&leaf), renew_at, &timing));

    let staged = set.apply(&Step::Stage, start, &timing).unwrap().unwrap();
    assert!(!leaf_due(&staged, Some(&leaf), start, &timing), "a staged CA does not sign");
    let promoted = staged.apply(&Step::Promote { forced: false }, start, &timing).unwrap().unwrap();
    assert!(leaf_due(&promoted, Some(&leaf), start, &timing), "the promoted CA signs");

    // Near the CA's expiry a leaf is cut at it; a new one would not last longer, so none is issued.
    let late = set.current().not_after - timing.renew_before;
    let (_, cut) = issue(&set, late, &timing);
    assert_eq!(cut.not_after, set.current().not_after);
    assert!(!leaf_due(&set, Some(&cut), late + secs(1), &timing));
}

// === simulation ===

/// One simulated replica: polls the store every `poll` starting at `phase`.
struct SimReplica {
    phase: Duration,
    leaf: Option<(CertificateDer<'static>, LeafState)>,
    bundle: Vec<u8>,
}

/// Three replicas, a leader (replica 0, then 1 from mid-rotation), a `caBundle` patcher whose
/// patch lands a step after the leader's bundle changes, and an API server that trusts a patched
/// bundle only `lag` later. Every served leaf must verify against what the API server trusts.
#[test]
fn a_simulated_three_ca_lifetimes_never_serve_an_untrusted_leaf() {
    let timing = Timing::for_ca_validity(secs(3600));
    let (step, lag) = (secs(10), secs(60));
    assert!(lag < timing.publish_grace, "the model needs the API server to catch up within the grace");
    let start = t0();
    let end = start + 3 * timing.ca_validity + secs(600);
    let switch_leader_at = start + secs(2460);

    let mut store: Option<CaSet> = None;
    let mut replicas: Vec<SimReplica> =
        (0..3).map(|i| SimReplica { phase: secs(20 * i), leaf: None, bundle: Vec::new() }).collect();
    let mut leader = 0;
    let mut published: Option<Published> = None;
    let mut patched: Vec<(SystemTime, Vec<u8>)> = Vec::new();
    let (mut stages, mut promotions, mut prunes, mut leaves, mut checks) = (0, 0, 0, 0, 0);

    let mut now = start;
    while now < end {
        let elapsed = now.duration_since(start).unwrap();
        if now == switch_leader_at {
            leader = 1;
            published = None;
        }
        // The patcher (on the leader) patches the leader's bundle; the patch is confirmed at once.
        let leader_bundle = replicas[leader].bundle.clone();
        if !leader_bundle.is_empty() && patched.last().is_none_or(|(_, b)| *b != leader_bundle) {
            patched.push((now, leader_bundle.clone()));
        }
        if !leader_bundle.is_empty() && published.as_ref().is_none_or(|p| p.bundle != leader_bundle) {
            published = Some(Published { bundle: leader_bundle, since: now });
        }
        for (i, replica) in replicas.iter_mut().enumerate() {
            if !(elapsed.as_secs() + replica.phase.as_secs()).is_multiple_of(timing.poll_interval.as_secs()) {
                continue;
            }
            if i == leader {
                for _ in 0..4 {
                    let next = match plan(store.as_ref(), published.as_ref(), now, &timing) {
                        Step::Create => CaSet::create(now, &timing).unwrap(),
                        s @ (Step::Prune | Step::Stage | Step::Promote { .. }) => {
                            match s {
                                Step::Prune => prunes += 1,
                                Step::Stage => stages += 1,
                                Step::Promote { forced } => {
                                    assert!(!forced, "promoted without a confirmed caBundle");
                                    promotions += 1;
                                }
                                _ => unreachable!(),
                            }
                            store.as_ref().unwrap().apply(&s, now, &timing).unwrap().unwrap()
                        }
                        _ => break,
                    };
                    store = Some(next);
                }
            }
            let Some(set) = &store else { continue };
            replica.bundle = set.bundle_pem();
            if leaf_due(set, replica.leaf.as_ref().map(|(_, l)| l), now, &timing) {
                replica.leaf = Some(issue(set, now, &timing));
                leaves += 1;
            }
        }
        // What the API server trusts now: the last bundle patched at least `lag` ago.
        if let Some((_, trusted)) = patched.iter().rev().find(|(at, _)| *at + lag <= now) {
            for (i, replica) in replicas.iter().enumerate() {
                let Some((der, _)) = &replica.leaf else { continue };
                verify(trusted, der, now).unwrap_or_else(|e| panic!("replica {i} at +{}s: {e:?}", elapsed.as_secs()));
                checks += 1;
            }
        }
        now += step;
    }
    // A CA is replaced when a third of its life remains: four rotations in three lifetimes.
    assert_eq!((stages, promotions), (4, 4));
    assert!(prunes >= 2, "expired CAs leave the bundle: {prunes}");
    assert!(leaves >= 3 * 15, "leaves renewed: {leaves}");
    assert!(checks > 2500, "verified {checks} times");
}

// === the task, with an in-memory store ===

/// A store in memory: versions count writes; `create` and `replace` behave like the API server.
#[derive(Clone, Default)]
struct MemoryStore(Arc<Mutex<Option<Stored>>>);

impl CaStore for MemoryStore {
    fn describe(&self) -> String {
        "memory".into()
    }

    async fn load(&self) -> Result<Option<Stored>, StoreError> {
        Ok(self.0.lock().unwrap().clone())
    }

    async fn create(&self, data: BTreeMap<String, Vec<u8>>) -> Result<Created, StoreError> {
        let mut stored = self.0.lock().unwrap();
        if let Some(existing) = stored.as_ref() {
            return Ok(Created { stored: existing.clone(), won: false });
        }
        *stored = Some(Stored { version: "1".into(), data });
        Ok(Created { stored: stored.clone().unwrap(), won: true })
    }

    async fn replace(&self, version: &str, data: BTreeMap<String, Vec<u8>>) -> Result<Stored, StoreError> {
        let mut stored = self.0.lock().unwrap();
        match stored.as_mut() {
            Some(s) if s.version == version => {
                s.version = (s.version.parse::<u64>().unwrap() + 1).to_string();
                s.data = data;
                Ok(s.clone())
            }
            _ => Err(StoreError::Conflict { what: "memory".into() }),
        }
    }
}

/// Two replicas share a store; the first leads, and a fake patcher confirms its bundle. A 9 s CA
/// rotates at 6 s; both replicas' leaves verify against the confirmed bundle throughout, and end
/// up issued by the new CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_one_ca_through_a_rotation() {
    let store = MemoryStore::default();
    let config = SharedCa { dns_names: names(), secret_name: "ca".into(), timing: Timing::for_ca_validity(secs(9)) };
    let leader = start_shared(config.clone(), store.clone()).unwrap();
    let follower = start_shared(config, store.clone()).unwrap();
    assert_eq!(follower.not_after(), UNIX_EPOCH, "not ready before the shared CA is loaded");
    assert_eq!(follower.ca_bundle(), None);

    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(store.0.lock().unwrap().is_none(), "only the leader creates the CA");
    assert_eq!(follower.not_after(), UNIX_EPOCH);
    leader.set_leading(true);

    let patch = |handle: &CertHandle| {
        let bundle = handle.ca_bundle();
        if let Some(pem) = &bundle {
            handle.ca_bundle_published(pem);
        }
        bundle
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(25);
    let (mut first_ca, mut saw_staged, mut rotated) = (None, false, false);
    let mut published: Option<Vec<u8>> = None;
    while !rotated {
        assert!(tokio::time::Instant::now() < deadline, "no rotation (staged: {saw_staged})");
        let now = SystemTime::now();
        for (name, handle) in [("leader", &leader), ("follower", &follower)] {
            if handle.not_after() == UNIX_EPOCH {
                continue;
            }
            // Before the first caBundle patch nothing is trusted yet: the CA was just created.
            let Some(trusted) = published.as_deref() else { continue };
            verify(trusted, &handle.leaf(), now).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        }
        if let Some(stored) = store.0.lock().unwrap().clone() {
            let ca = stored.data[CA_CRT].clone();
            let first = first_ca.get_or_insert_with(|| ca.clone());
            saw_staged |= stored.data.contains_key(NEXT_CRT);
            let both_on_new_ca = [&leader, &follower].iter().all(|h| verify(&ca, &h.leaf(), now).is_ok());
            rotated = *first != ca && both_on_new_ca;
        }
        // The patcher confirms what the leader publishes; the API server then trusts it.
        published = patch(&leader).or(published);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(saw_staged, "the next CA was staged before it signed");
    assert!(follower.reloads() >= 1 && leader.reloads() >= 1);
    assert_eq!((leader.reload_errors(), follower.reload_errors()), (0, 0));
}

/// A [`MemoryStore`] whose updates always fail (RBAC without `update`, an API server outage).
#[derive(Clone, Default)]
struct ReadOnlyStore(MemoryStore);

impl CaStore for ReadOnlyStore {
    fn describe(&self) -> String {
        "read-only memory".into()
    }

    async fn load(&self) -> Result<Option<Stored>, StoreError> {
        self.0.load().await
    }

    async fn create(&self, data: BTreeMap<String, Vec<u8>>) -> Result<Created, StoreError> {
        self.0.create(data).await
    }

    async fn replace(&self, _version: &str, _data: BTreeMap<String, Vec<u8>>) -> Result<Stored, StoreError> {
        Err(StoreError::Failed("update refused".into()))
    }
}

/// A leader whose write fails (here: staging the next CA) still serves a leaf from the CA it
/// read, and reports the failure.
#[tokio::test]
async fn a_leader_whose_write_fails_serves_from_the_ca_it_read() {
    let timing = Timing::for_ca_validity(secs(3000));
    // Created 2100 s ago: a third of its life is left, so the leader's first step is a write.
    let set = CaSet::create(t0() - secs(2100), &timing).unwrap();
    assert_eq!(plan(Some(&set), None, t0(), &timing), Step::Stage, "fixture: the leader writes");
    let store = ReadOnlyStore::default();
    *store.0.0.lock().unwrap() = Some(Stored { version: "1".into(), data: set.to_data() });

    let config = SharedCa { dns_names: names(), secret_name: "ca".into(), timing };
    let handle = start_shared(config, store.clone()).unwrap();
    // On this single-threaded runtime the task has not run yet: its first tick leads.
    handle.set_leading(true);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while handle.not_after() == UNIX_EPOCH {
        assert!(tokio::time::Instant::now() < deadline, "no leaf from the stored CA");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    verify(&set.current().pem.clone().into_bytes(), &handle.leaf(), SystemTime::now()).unwrap();
    assert_eq!(handle.ca_bundle(), Some(set.bundle_pem()));
    assert!(handle.reload_errors() >= 1, "the failed write is reported");
    assert_eq!(store.0.0.lock().unwrap().as_ref().unwrap().data, set.to_data(), "nothing was written");
}
