use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use super::*;

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(secs).unwrap()
}

fn report(surfaces: Vec<Surface>) -> Report {
    Report { surfaces }
}

#[test]
fn ready_summarises_the_first_failed_surface() {
    let r = report(vec![
        Surface::ok("Connected", "Connected", "ok"),
        Surface::failed("LicenseApplied", "InvalidLicense", "bad", Wait::Slow),
    ]);
    let conditions = r.conditions(&[], Some(3), at(10));
    let ready = conditions.iter().find(|c| c.type_ == READY).unwrap();
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "InvalidLicense"));
    assert_eq!(ready.message, "LicenseApplied: bad");
    assert!(conditions.iter().all(|c| c.observed_generation == Some(3)));
    let all_ok = report(vec![Surface::ok("Connected", "Connected", "ok")]).conditions(&[], None, at(10));
    assert_eq!(all_ok.last().unwrap().status, "True");
}

#[test]
fn transition_time_moves_only_when_the_status_changes() {
    let first = report(vec![Surface::failed("Connected", "CoderdUnavailable", "down", Wait::Backoff)]);
    let c1 = first.conditions(&[], None, at(10));
    let same =
        report(vec![Surface::failed("Connected", "Unauthorized", "token", Wait::Slow)]).conditions(&c1, None, at(20));
    assert_eq!(same[0].last_transition_time, Time(at(10)), "False to False keeps the time");
    let healed = report(vec![Surface::ok("Connected", "Connected", "up")]).conditions(&same, None, at(30));
    assert_eq!(healed[0].last_transition_time, Time(at(30)));
}

#[test]
fn events_only_for_changes_and_never_for_a_failing_ready() {
    let failing = report(vec![Surface::failed("Connected", "CoderdUnavailable", "down", Wait::Backoff)]);
    let c1 = failing.conditions(&[], None, at(1));
    let t1 = transitions(&[], &c1);
    assert_eq!(t1.len(), 1, "{t1:?}");
    assert!(t1[0].warning && t1[0].reason == "CoderdUnavailable");
    assert!(transitions(&c1, &failing.conditions(&c1, None, at(2))).is_empty(), "no change, no event");
    let ok = report(vec![Surface::ok("Connected", "Connected", "up")]).conditions(&c1, None, at(3));
    let t2 = transitions(&c1, &ok);
    assert_eq!(
        t2.iter().map(|t| (t.warning, t.reason.as_str())).collect::<Vec<_>>(),
        [(false, "Connected"), (false, "Reconciled")]
    );
}

#[test]
fn the_report_waits_for_the_most_urgent_surface() {
    let r = report(vec![
        Surface::ok("A", "Ok", ""),
        Surface::failed("B", "NotEntitled", "", Wait::Slow),
        Surface::failed("C", "RateLimited", "", Wait::After(Duration::from_secs(7))),
    ]);
    assert_eq!(r.wait(), Wait::After(Duration::from_secs(7)));
    assert_eq!(report(vec![]).wait(), Wait::Resync);
}

#[test]
fn delays_back_off_cap_and_jitter() {
    let (resync, slow) = (Duration::from_secs(300), Duration::from_secs(900));
    let d = |wait, failures, jitter| delay(wait, failures, resync, slow, jitter);
    assert_eq!(d(Wait::Backoff, 0, 0.5), Duration::from_secs(2));
    assert_eq!(d(Wait::Backoff, 3, 0.5), Duration::from_secs(16));
    assert_eq!(d(Wait::Backoff, 30, 0.5), Duration::from_secs(300), "capped");
    assert_eq!(d(Wait::Slow, 0, 0.5), slow);
    assert_eq!(d(Wait::After(Duration::ZERO), 0, 0.5), Duration::from_secs(1), "floor");
    assert_eq!(d(Wait::Resync, 0, 0.0), resync.mul_f64(0.8));
    assert_eq!(d(Wait::Resync, 0, 1.0), resync.mul_f64(1.2));
}

#[test]
fn digests_are_salted_and_unambiguous() {
    assert_eq!(digest("uid-1", &["a", "b"]), digest("uid-1", &["a", "b"]));
    assert_ne!(digest("uid-1", &["a", "b"]), digest("uid-2", &["a", "b"]));
    assert_ne!(digest("uid-1", &["ab", ""]), digest("uid-1", &["a", "b"]));
    assert!(digest("u", &["secret"]).starts_with("sha256:") && !digest("u", &["secret"]).contains("secret"));
}

#[test]
fn coderd_errors_become_actionable_surfaces() {
    let gate = crate::coderd::Error::Api(crate::coderd::ApiError {
        endpoint: "POST /api/v2/organizations".into(),
        status: 403,
        message: "Multiple Organizations is a Premium feature. Contact sales!".into(),
        detail: String::new(),
        validations: vec![],
        retry_after: None,
    });
    let s = Surface::coderd("OrganizationReady", &gate);
    assert_eq!((s.reason.as_str(), s.wait, s.ok), ("NotEntitled", Wait::Slow, false));
    assert!(s.message.contains("Premium") && s.message.contains("spec.license"), "{}", s.message);
}
