//! The clients against the fake edX on loopback: real sockets, no mocks of the client.

mod alerts;
mod archive;
mod bad_input;
mod browser;
mod connectors;
mod console;
mod driven;
mod enterprise_expiry;
mod lms_store;
mod partner;
mod runner;
mod shared_suite;
mod sim;
mod sim_jobs;
mod support;
mod webdriver;

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use retirement_core::{Pipeline, Stage, TransportErrorKind};
use retirement_http::catalog::{self, OPERATIONS};
use retirement_http::fake::{FakeConfig, FakeEdx, Fault};
use retirement_http::{
    CallOutcome, ClientCredentials, GenericService, HttpOptions, LearnerRef, ServiceClients,
};

fn credentials() -> ClientCredentials {
    ClientCredentials {
        client_id: "retirement-worker".into(),
        client_secret: "s3cret".into(),
    }
}

fn learner() -> LearnerRef<'static> {
    LearnerRef {
        original_username: "Original.Learner",
        lms_user_id: Some(5213599),
        retired_username: "retired__user_88ad",
        original_email: "orig@foo.invalid",
        retired_email: "retired__user_d089@retired.invalid",
    }
}

/// Clients whose every base URL points at `fake`, the LMS one with a path prefix that the
/// token URL must drop and the step paths must keep.
fn clients(fake: &FakeEdx, options: &HttpOptions) -> ServiceClients {
    let base = fake.base_url();
    let base_urls: BTreeMap<String, String> = [
        "lms",
        "ecommerce",
        "credentials",
        "demographics",
        "license_manager",
    ]
    .iter()
    .map(|key| (key.to_string(), base.clone()))
    .collect();
    ServiceClients::new(base_urls, credentials(), Vec::new(), options).unwrap()
}

async fn fake() -> FakeEdx {
    FakeEdx::start(FakeConfig::default()).await.unwrap()
}

#[tokio::test]
async fn every_operation_sends_upstreams_request() {
    let fake = fake().await;
    let clients = clients(&fake, &HttpOptions::default());
    for op in OPERATIONS {
        let outcome = clients.call(op.service, op.name, &learner()).await.unwrap();
        let expected = match op.name {
            // credentials' replace_usernames answers with the replacements it made.
            _ if op.service == "CREDENTIALS" => 200,
            "retirement_unenroll" => 200,
            "retirement_retire_mailings" => 404,
            _ => 204,
        };
        assert!(
            matches!(outcome, CallOutcome::Response { status, .. } if status == expected),
            "{} {}: {outcome:?}",
            op.service,
            op.name
        );
    }
    // One token served every call, and every request is upstream's, byte for byte.
    assert_eq!(fake.tokens_issued(), 1);
    insta::assert_yaml_snapshot!(fake.calls());
}

#[tokio::test]
async fn generic_services_fill_their_template() {
    let fake = fake().await;
    let generic = GenericService {
        service: "LMS".into(),
        operation: "retirement_retire_forum".into(),
        base_url: format!("{}/prefix", fake.base_url()),
        path: "/api/discussion/v1/accounts/retire_forum".into(),
        method: "POST".into(),
        body_template: serde_json::json!({"username": "{username}", "id": "{lms_user_id}", "note": "user {lms_user_id}"}),
        auth: None,
        request: None,
        lookup: None,
        not_found: Vec::new(),
    };
    let mut base_urls = BTreeMap::new();
    base_urls.insert("lms".to_string(), fake.base_url());
    let clients = ServiceClients::new(
        base_urls,
        credentials(),
        vec![generic],
        &HttpOptions::default(),
    )
    .unwrap();
    clients
        .call("LMS", "retirement_retire_forum", &learner())
        .await
        .unwrap();
    let call = &fake.calls()[0];
    // The base URL's path prefix is kept (the fake does not serve it: 404).
    assert_eq!(
        call.path,
        "/prefix/api/discussion/v1/accounts/retire_forum/"
    );
    assert_eq!(
        call.body,
        serde_json::json!({"username": "Original.Learner", "id": 5213599, "note": "user 5213599"})
    );
}

#[tokio::test]
async fn tokens_are_cached_refreshed_early_and_renewed_on_401() {
    // A token living longer than the refresh margin is reused.
    let fake = fake().await;
    let options = HttpOptions {
        token_refresh_margin: Duration::from_secs(60),
        ..HttpOptions::default()
    };
    let clients = clients(&fake, &options);
    for _ in 0..5 {
        clients
            .call("ECOMMERCE", "retire_learner", &learner())
            .await
            .unwrap();
    }
    assert_eq!(fake.tokens_issued(), 1);
    assert_eq!(clients.tokens().fetch_count(), 1);

    // The server forgets its tokens: the next call gets a 401, fetches a new token once and
    // succeeds.
    fake.expire_tokens();
    let outcome = clients
        .call("ECOMMERCE", "retire_learner", &learner())
        .await
        .unwrap();
    assert!(
        matches!(outcome, CallOutcome::Response { status: 204, .. }),
        "{outcome:?}"
    );
    assert_eq!(fake.tokens_issued(), 2);
    let statuses: Vec<u16> = fake.calls().iter().map(|c| c.status).collect();
    assert_eq!(statuses, vec![204, 204, 204, 204, 204, 401, 204]);

    // A token that lives less than the margin is refreshed before every call.
    let short = FakeEdx::start(FakeConfig {
        token_ttl: Duration::from_secs(30),
        ..FakeConfig::default()
    })
    .await
    .unwrap();
    let clients = self::clients(&short, &options);
    for _ in 0..3 {
        clients
            .call("ECOMMERCE", "retire_learner", &learner())
            .await
            .unwrap();
    }
    assert_eq!(short.tokens_issued(), 3);
}

#[tokio::test]
async fn bad_credentials_are_a_transport_failure_without_the_secret() {
    let fake = FakeEdx::start(FakeConfig {
        client_secret: "another".into(),
        ..FakeConfig::default()
    })
    .await
    .unwrap();
    let clients = clients(&fake, &HttpOptions::default());
    let outcome = clients
        .call("ECOMMERCE", "retire_learner", &learner())
        .await
        .unwrap();
    match outcome {
        CallOutcome::Transport { kind, message } => {
            assert_eq!(kind, TransportErrorKind::Other);
            assert!(message.contains("401"), "{message}");
            assert!(!message.contains("s3cret"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(fake.calls().is_empty(), "no step call without a token");
}

#[tokio::test]
async fn failures_come_back_with_status_and_body() {
    let fake = fake().await;
    let clients = clients(&fake, &HttpOptions::default());
    let path = "/api/user/v1/accounts/retire/";
    for (status, body) in [
        (500, "Server error"),
        (504, "gateway timeout"),
        (404, "not here"),
        (400, "bad state"),
    ] {
        fake.set_fault(
            path,
            Some(Fault {
                status: Some(status),
                body: Some(body.into()),
                ..Fault::default()
            }),
        );
        let outcome = clients
            .call("LMS", "retirement_lms_retire", &learner())
            .await
            .unwrap();
        assert_eq!(
            outcome,
            CallOutcome::Response {
                status,
                body: format!("\"{body}\""),
                retry_after: None,
            }
        );
    }
    // A connection cut off before the answer completes is a reset; the message names no URL.
    fake.set_fault(
        path,
        Some(Fault {
            reset: true,
            ..Fault::default()
        }),
    );
    match clients
        .call("LMS", "retirement_lms_retire", &learner())
        .await
        .unwrap()
    {
        CallOutcome::Transport { kind, message } => {
            assert_eq!(kind, TransportErrorKind::Reset, "{message}");
            assert!(!message.contains("127.0.0.1"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_hung_endpoint_times_out() {
    let fake = fake().await;
    let options = HttpOptions {
        request_timeout: Duration::from_millis(300),
        ..HttpOptions::default()
    };
    let clients = clients(&fake, &options);
    fake.set_fault(
        "/api/v2/user/retire/",
        Some(Fault {
            hang: true,
            ..Fault::default()
        }),
    );
    match clients
        .call("ECOMMERCE", "retire_learner", &learner())
        .await
        .unwrap()
    {
        CallOutcome::Transport { kind, .. } => assert_eq!(kind, TransportErrorKind::Timeout),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_unreachable_service_is_a_connect_failure() {
    let fake = fake().await;
    // A port that was just free: bind, note it, close it.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let mut base_urls = BTreeMap::new();
    base_urls.insert("lms".to_string(), fake.base_url());
    base_urls.insert("ecommerce".to_string(), format!("http://{closed}"));
    let clients = ServiceClients::new(
        base_urls,
        credentials(),
        Vec::new(),
        &HttpOptions::default(),
    )
    .unwrap();
    match clients
        .call("ECOMMERCE", "retire_learner", &learner())
        .await
        .unwrap()
    {
        CallOutcome::Transport { kind, .. } => assert_eq!(kind, TransportErrorKind::Connect),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn the_state_guard_and_overlaps_are_visible() {
    let fake = FakeEdx::start(FakeConfig {
        enforce_state_guard: true,
        ..FakeConfig::default()
    })
    .await
    .unwrap();
    let clients = clients(&fake, &HttpOptions::default());
    // Unknown learner: 404. Wrong state: upstream's per-endpoint codes.
    let status_of =
        async |operation: &str| match clients.call("LMS", operation, &learner()).await.unwrap() {
            CallOutcome::Response { status, .. } => status,
            other => panic!("{other:?}"),
        };
    assert_eq!(status_of("retirement_lms_retire").await, 404);
    fake.set_learner_state("Original.Learner", "PENDING");
    assert_eq!(status_of("retirement_lms_retire").await, 400);
    assert_eq!(status_of("retirement_retire_forum").await, 500);
    assert_eq!(status_of("retirement_retire_notes").await, 405);
    fake.set_learner_state("Original.Learner", "RETIRING_LMS");
    assert_eq!(status_of("retirement_lms_retire").await, 204);
    assert!(fake.overlaps().is_empty());

    // Two calls for one learner at once are recorded as an overlap.
    fake.set_fault(
        "/api/user/v1/accounts/retire/",
        Some(Fault {
            latency: Duration::from_millis(200),
            status: Some(204),
            ..Fault::default()
        }),
    );
    let one = learner();
    let (a, b) = tokio::join!(
        clients.call("LMS", "retirement_lms_retire", &one),
        clients.call("LMS", "retirement_lms_retire", &one),
    );
    a.unwrap();
    b.unwrap();
    assert_eq!(fake.overlaps(), vec!["Original.Learner".to_string()]);
}

#[tokio::test]
async fn pipelines_are_checked_before_any_call() {
    let fake = fake().await;
    let mut base_urls = BTreeMap::new();
    base_urls.insert("lms".to_string(), fake.base_url());
    let clients = ServiceClients::new(
        base_urls,
        credentials(),
        Vec::new(),
        &HttpOptions::default(),
    )
    .unwrap();
    let (_, six) = Pipeline::six_stage_example();
    let stage =
        |s: &str, op: &str| Stage::new(format!("RETIRING_{s}"), format!("{s}_COMPLETE"), s, op);
    let ecommerce = Pipeline::without_table(vec![stage("ECOMMERCE", "retire_learner")]).unwrap();
    let err = clients.check_pipeline(&ecommerce).unwrap_err();
    assert_eq!(
        err.to_string(),
        "no base URL configured for service ECOMMERCE (base_urls.ecommerce)"
    );
    let unknown = Pipeline::without_table(vec![stage("LMS", "retirement_fly")]).unwrap();
    let err = clients.check_pipeline(&unknown).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown retirement operation LMS retirement_fly"
    );
    assert!(
        matches!(
            clients.check_pipeline(&six),
            Err(retirement_http::HttpError::MissingBaseUrl { .. })
        ),
        "the six-stage example's ECOMMERCE stage needs base_urls.ecommerce"
    );
    assert_eq!(
        fake.tokens_issued(),
        0,
        "no token is fetched to check a pipeline"
    );
    let err = ServiceClients::new(
        BTreeMap::new(),
        credentials(),
        Vec::new(),
        &HttpOptions::default(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "no base URL configured for service LMS (base_urls.lms)"
    );
}

#[tokio::test]
async fn a_rate_limit_spaces_calls_out() {
    let fake = fake().await;
    let options = HttpOptions {
        rate_limits: [("ECOMMERCE".to_string(), 20.0)].into_iter().collect(),
        ..HttpOptions::default()
    };
    let clients = clients(&fake, &options);
    let started = std::time::Instant::now();
    for _ in 0..5 {
        clients
            .call("ECOMMERCE", "retire_learner", &learner())
            .await
            .unwrap();
    }
    // Five calls at 20 per second start at least 4 × 50 ms apart in all (a lower bound: the
    // pacer's promise, not a speed).
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(fake.calls().len(), 5);
}

#[test]
fn secrets_never_show_in_debug() {
    let printed = format!("{:?}", credentials());
    assert!(
        printed.contains("retirement-worker") && !printed.contains("s3cret"),
        "{printed}"
    );
    let printed = format!("{:?}", learner());
    assert!(!printed.contains("Original.Learner"), "{printed}");
    let printed = format!("{:?}", FakeConfig::default());
    assert!(
        printed.contains("retirement-worker") && !printed.contains("s3cret"),
        "{printed}"
    );
}

#[test]
fn the_token_url_drops_the_lms_path_prefix() {
    assert_eq!(
        retirement_http::token_url("https://lms.example.com/some/prefix/").unwrap(),
        "https://lms.example.com/oauth2/access_token"
    );
    assert_eq!(
        catalog::join("https://x.example/a/", "/b/c"),
        "https://x.example/a/b/c/"
    );
}

proptest! {
    /// Whatever the learner, bodies carry the original username, never the retired one.
    #[test]
    fn bodies_carry_the_original_username(original in "\\PC{1,40}", retired in "retired__user_[0-9a-f]{40}", id in proptest::option::of(1i64..i64::MAX)) {
        let learner = LearnerRef { original_username: &original, lms_user_id: id, retired_username: &retired, original_email: "e@example.com", retired_email: "r@retired.invalid" };
        for op in OPERATIONS {
            let Some(body) = catalog::body(op.body, &learner) else { continue };
            let text = serde_json::to_string(&body).unwrap();
            let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
            for key in ["username", "original_username"] {
                if let Some(value) = parsed.get(key) {
                    prop_assert_eq!(value.as_str(), Some(original.as_str()));
                }
            }
            if op.body == catalog::Body::UsernameMapping {
                // replace_usernames maps the original to the retired username, and only that.
                let mapping = &parsed["username_mappings"][0];
                prop_assert_eq!(mapping[original.as_str()].as_str(), Some(retired.as_str()));
                prop_assert_eq!(mapping.as_object().map(|m| m.len()), Some(1));
                continue;
            }
            prop_assert!(!text.contains(&retired));
        }
    }
}
