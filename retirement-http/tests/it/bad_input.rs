//! Bad input, never a panic: a hostile server on 127.0.0.1 answers arbitrary statuses with
//! arbitrary bytes, arbitrary JSON and valid LMS status JSON with one field broken, and the
//! clients' response handling, the token parsing and the LMS-backed store's parsing must each
//! return an answer or an error.
//!
//! `BAD_INPUT_CASES` sets the cases per target (default 256); each target prints how many it
//! tried (`cargo xtask chaos input` shows them).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{NaiveDate, TimeDelta, Utc};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use retirement_http::{HttpOptions, LearnerRef, LmsStore, ServiceClients};
use retirement_store::{ClaimRequest, QueueQuery, RetirementStore, StateWindow};

/// What the hostile server answers next: to the token request, and to everything else.
#[derive(Clone)]
struct Replies {
    token: (u16, Vec<u8>),
    other: (u16, Vec<u8>),
}

fn good_token() -> (u16, Vec<u8>) {
    (
        200,
        br#"{"access_token":"t","expires_in":3600,"token_type":"JWT"}"#.to_vec(),
    )
}

struct Hostile {
    base: String,
    replies: Arc<Mutex<Replies>>,
    runtime: tokio::runtime::Runtime,
}

impl Hostile {
    fn start() -> Hostile {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let replies = Arc::new(Mutex::new(Replies {
            token: good_token(),
            other: (200, Vec::new()),
        }));
        let base = runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            let app = Router::new()
                .route("/oauth2/access_token", axum::routing::post(token))
                .fallback(other)
                .with_state(replies.clone());
            tokio::spawn(async move { axum::serve(listener, app).await });
            base
        });
        Hostile {
            base,
            replies,
            runtime,
        }
    }

    fn answer(&self, token: (u16, Vec<u8>), other: (u16, Vec<u8>)) {
        *self.replies.lock().unwrap() = Replies { token, other };
    }

    fn clients(&self) -> Arc<ServiceClients> {
        let base_urls: BTreeMap<String, String> = ["lms", "ecommerce"]
            .iter()
            .map(|k| (k.to_string(), self.base.clone()))
            .collect();
        let options = HttpOptions {
            request_timeout: std::time::Duration::from_secs(5),
            ..HttpOptions::default()
        };
        Arc::new(
            ServiceClients::new(
                base_urls,
                retirement_http::ClientCredentials {
                    client_id: "retirement-worker".into(),
                    client_secret: "s3cret".into(),
                },
                Vec::new(),
                &options,
            )
            .unwrap(),
        )
    }
}

fn reply((status, body): (u16, Vec<u8>)) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    (status, [("content-type", "application/json")], body).into_response()
}

async fn token(State(replies): State<Arc<Mutex<Replies>>>, _body: Bytes) -> Response {
    let answer = replies.lock().unwrap().token.clone();
    reply(answer)
}

async fn other(State(replies): State<Arc<Mutex<Replies>>>) -> Response {
    let answer = replies.lock().unwrap().other.clone();
    reply(answer)
}

fn cases() -> u32 {
    std::env::var("BAD_INPUT_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

/// Arbitrary JSON, with the field names the parsers look for among the keys.
fn json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        ".{0,24}".prop_map(serde_json::Value::from),
        Just(serde_json::Value::from("2024-01-01T00:00:00Z")),
    ];
    let key = prop_oneof![
        Just("id".to_owned()),
        Just("user".to_owned()),
        Just("username".to_owned()),
        Just("current_state".to_owned()),
        Just("state_name".to_owned()),
        Just("created".to_owned()),
        Just("access_token".to_owned()),
        Just("expires_in".to_owned()),
        Just("message".to_owned()),
        "[a-z_]{1,12}",
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
            prop::collection::btree_map(key.clone(), inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A valid LMS status list.
fn valid_status_list() -> serde_json::Value {
    let state = |id: i64, name: &str| serde_json::json!({"id": id, "state_name": name, "state_execution_order": id * 10});
    serde_json::json!([{
        "id": 7,
        "user": {"id": 5, "username": "retired__user_1", "email": "r@retired.invalid",
                 "profile": {"name": ""}},
        "current_state": state(1, "PENDING"),
        "last_state": state(1, "PENDING"),
        "created": "2024-01-01T00:00:00Z",
        "modified": "2024-01-02T00:00:00Z",
        "original_username": "someone",
        "original_email": "someone@example.org",
        "original_name": "Some One",
        "retired_username": "retired__user_1",
        "retired_email": "r@retired.invalid",
    }])
}

/// The valid list (or its first item) with one field, at any depth, replaced.
fn broken_status() -> impl Strategy<Value = serde_json::Value> {
    let paths: Vec<Vec<&'static str>> = vec![
        vec!["id"],
        vec!["user"],
        vec!["user", "id"],
        vec!["user", "profile"],
        vec!["current_state"],
        vec!["current_state", "state_name"],
        vec!["current_state", "state_execution_order"],
        vec!["last_state", "state_name"],
        vec!["created"],
        vec!["modified"],
        vec!["original_username"],
        vec!["retired_username"],
    ];
    (prop::sample::select(paths), json(), any::<bool>()).prop_map(|(path, value, whole)| {
        let mut list = valid_status_list();
        let mut at = &mut list[0];
        for key in &path[..path.len() - 1] {
            at = &mut at[*key];
        }
        at[path[path.len() - 1]] = value;
        if whole { list } else { list[0].clone() }
    })
}

/// A valid token reply with one field replaced or removed.
fn broken_token() -> impl Strategy<Value = serde_json::Value> {
    let fields = vec!["access_token", "expires_in", "token_type"];
    (prop::sample::select(fields), prop::option::of(json())).prop_map(|(field, value)| {
        let mut token: serde_json::Value = serde_json::from_slice(&good_token().1).unwrap();
        match value {
            Some(v) => token[field] = v,
            None => {
                token.as_object_mut().unwrap().remove(field);
            }
        }
        token
    })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        json().prop_map(|v| v.to_string().into_bytes()),
        broken_status().prop_map(|v| v.to_string().into_bytes()),
        broken_token().prop_map(|v| v.to_string().into_bytes()),
        Just(valid_status_list().to_string().into_bytes()),
        Just(good_token().1),
    ]
}

fn status() -> impl Strategy<Value = u16> {
    prop_oneof![
        4 => Just(200u16),
        1 => Just(204),
        1 => Just(400),
        1 => Just(404),
        2 => 200u16..600,
    ]
}

/// Runs `check` on `cases()` generated replies; prints how many were tried.
fn run_target(
    name: &str,
    strategy: impl Strategy<Value = ((u16, Vec<u8>), (u16, Vec<u8>))>,
    check: impl Fn(&Hostile) -> Result<(), TestCaseError>,
) {
    let hostile = Hostile::start();
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    let tried = std::sync::atomic::AtomicU32::new(0);
    let result = runner.run(&strategy, |(token, other)| {
        tried.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        hostile.answer(token, other);
        check(&hostile)
    });
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
    println!(
        "bad input: {name}: {} cases, each an answer or an error, no panic",
        tried.load(std::sync::atomic::Ordering::Relaxed)
    );
}

#[test]
fn step_responses_of_any_shape_are_answers_or_errors() {
    run_target(
        "step responses",
        (Just(good_token()), (status(), body())),
        |hostile| {
            let clients = hostile.clients();
            let learner = LearnerRef {
                original_username: "someone",
                lms_user_id: Some(5),
                retired_username: "retired__user_1",
                original_email: "someone@example.com",
                retired_email: "retired__user_1@retired.invalid",
            };
            hostile.runtime.block_on(async {
                for (service, operation) in [
                    ("LMS", "retirement_unenroll"),
                    ("LMS", "retirement_retire_forum"),
                    ("ECOMMERCE", "retire_learner"),
                ] {
                    // Ok (an outcome the machine classifies) or Err: both are answers.
                    let _ = clients.call(service, operation, &learner).await;
                }
            });
            Ok(())
        },
    );
}

/// How many cases ended in an answer and how many in an error: both must occur, or the
/// generated replies never reached the parsing they are meant to test.
#[derive(Default)]
struct Tally {
    answers: std::sync::atomic::AtomicU32,
    errors: std::sync::atomic::AtomicU32,
}

impl Tally {
    fn count<T, E>(&self, result: &Result<T, E>) {
        let counter = if result.is_ok() {
            &self.answers
        } else {
            &self.errors
        };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    fn check(&self, name: &str) {
        let (answers, errors) = (
            self.answers.load(std::sync::atomic::Ordering::Relaxed),
            self.errors.load(std::sync::atomic::Ordering::Relaxed),
        );
        println!("bad input: {name}: {answers} answers, {errors} errors");
        assert!(
            answers > 0 && errors > 0,
            "{name}: {answers} answers, {errors} errors"
        );
    }
}

#[test]
fn token_responses_of_any_shape_are_answers_or_errors() {
    let tally = Tally::default();
    run_target(
        "token responses",
        ((status(), body()), Just((200u16, Vec::new()))),
        |hostile| {
            let clients = hostile.clients();
            let token = hostile.runtime.block_on(clients.tokens().token());
            tally.count(&token);
            if let Ok(token) = &token {
                // A token taken from a reply is never empty.
                prop_assert!(token.header_value().len() > "JWT ".len());
            }
            Ok(())
        },
    );
    tally.check("token responses");
}

#[test]
fn lms_status_replies_of_any_shape_are_answers_or_errors() {
    let tally = Tally::default();
    run_target(
        "LMS store replies",
        (Just(good_token()), (status(), body())),
        |hostile| {
            let store = LmsStore::new(hostile.clients()).unwrap();
            let now = Utc::now();
            hostile.runtime.block_on(async {
                let _ = store.find_by_username("someone").await;
                let listed = store
                    .queue(
                        &QueueQuery {
                            states: vec!["PENDING".into()],
                            cool_off_days: 0,
                            limit: None,
                        },
                        now,
                    )
                    .await;
                tally.count(&listed);
                let day = NaiveDate::from_ymd_opt(2024, 1, 1).unwrap();
                let _ = store
                    .by_state_and_date(
                        &StateWindow {
                            state: "COMPLETE".into(),
                            start: day,
                            end: day,
                        },
                        now,
                    )
                    .await;
                let _ = store
                    .claim(
                        &ClaimRequest {
                            owner: "w".into(),
                            limit: 5,
                            lease_for: TimeDelta::minutes(5),
                            cool_off_days: 0,
                            resume_states: vec!["PENDING".into()],
                            working_states: vec!["RETIRING_LMS".into()],
                        },
                        now,
                    )
                    .await;
            });
            Ok(())
        },
    );
    tally.check("LMS store queue listings");
}
