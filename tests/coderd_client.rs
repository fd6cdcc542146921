//! The coderd client against the fake coderd: what it sends beyond the API calls themselves.

mod fake_coderd;

use std::time::Duration;

use coder_guard::coderd::types::CreateOrganization;
use coder_guard::coderd::{Bypass, Client, Secret};
use fake_coderd::{FakeCoderd, FakeOptions};

fn client(fake: &FakeCoderd) -> Client {
    Client::new(&fake.url(), Secret::new(fake.token()), None, Duration::from_secs(10)).unwrap()
}

/// (status, whether the request asked to bypass the rate limit) of every request so far.
fn seen(fake: &FakeCoderd) -> Vec<(u16, bool)> {
    fake.requests().iter().map(|l| (l.status, l.bypass_ratelimit)).collect()
}

#[tokio::test]
async fn an_owner_token_skips_the_rate_limit() {
    let fake = FakeCoderd::start(FakeOptions::default());
    fake.rate_limit(3, 1);
    let client = client(&fake);
    client.me().await.unwrap();
    client.licenses().await.unwrap();
    assert_eq!(seen(&fake), [(200, true), (200, true)], "no 429: the bypass was honoured");
}

#[tokio::test]
async fn after_a_428_the_client_and_its_clones_stop_asking() {
    let fake = FakeCoderd::start(FakeOptions { owner: false, licensed: true, ..FakeOptions::default() });
    let client = client(&fake);
    let me = client.me().await.expect("the refused bypass is retried without the header");
    assert!(!me.username.is_empty());
    client.clone().licenses().await.unwrap();
    assert_eq!(seen(&fake), [(428, true), (200, false), (200, false)]);

    // A POST refused for the header alone is sent again once, and applied once.
    let fresh = self::client(&fake);
    let request = CreateOrganization { name: "platform".into(), ..CreateOrganization::default() };
    let org = fresh.create_organization(&request).await.unwrap();
    assert_eq!(org.name, "platform");
    let writes: Vec<_> = fake.requests().into_iter().filter(|l| l.method == "POST").map(|l| l.status).collect();
    assert_eq!(writes, [428, 201]);
}

#[tokio::test]
async fn clients_sharing_a_bypass_remember_the_refusal() {
    let fake = FakeCoderd::start(FakeOptions { owner: false, ..FakeOptions::default() });
    let bypass = Bypass::default();
    client(&fake).sharing_bypass(&bypass).me().await.unwrap();
    client(&fake).sharing_bypass(&bypass).me().await.unwrap();
    assert_eq!(seen(&fake), [(428, true), (200, false), (200, false)], "the second client did not ask again");
    // A client with its own state asks once more.
    client(&fake).me().await.unwrap();
    assert_eq!(seen(&fake)[3..], [(428, true), (200, false)]);
}
