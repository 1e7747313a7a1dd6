//! The console over HTTP: access, CSRF, the audited actions, reveals, and that no page shows
//! an original without a reveal. (The browser tests drive the same console in Chromium.)

use chrono::{TimeZone, Utc};
use retirement_core::RetirementId;
use retirement_http::console::LmsSignIn;
use retirement_http::fake::console::{ConsoleWorld, LEARNERS, OPERATOR, PASSWORD};
use retirement_http::fake::{FakeConfig, FakeEdx};
use retirement_store::{ActionKind, Journal, RetirementStore};

pub(crate) fn now() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap()
}

/// A cookie-keeping HTTP client that does not follow redirects.
pub(crate) struct Client {
    http: reqwest::Client,
    base: String,
    cookies: Vec<(String, String)>,
}

pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) location: Option<String>,
    pub(crate) body: String,
}

impl Client {
    pub(crate) fn new(base: &str) -> Client {
        Client {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: base.to_owned(),
            cookies: Vec::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        }
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> Answer {
        let cookie: Vec<String> = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let request = if cookie.is_empty() {
            request
        } else {
            request.header("cookie", cookie.join("; "))
        };
        let response = request.send().await.unwrap();
        for set in response.headers().get_all("set-cookie") {
            let set = set.to_str().unwrap();
            let (pair, _) = set.split_once(';').unwrap_or((set, ""));
            let (k, v) = pair.split_once('=').unwrap();
            self.cookies.retain(|(name, _)| name != k);
            if !v.is_empty() {
                self.cookies.push((k.to_owned(), v.to_owned()));
            }
        }
        Answer {
            status: response.status().as_u16(),
            location: response
                .headers()
                .get("location")
                .map(|l| l.to_str().unwrap().to_owned()),
            body: response.text().await.unwrap(),
        }
    }

    pub(crate) async fn get(&mut self, path: &str) -> Answer {
        let request = self.http.get(self.url(path));
        self.send(request).await
    }

    pub(crate) async fn get_json(&mut self, path: &str) -> Answer {
        let request = self
            .http
            .get(self.url(path))
            .header("accept", "application/json");
        self.send(request).await
    }

    pub(crate) async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Answer {
        let request = self.http.post(self.url(path)).form(form);
        self.send(request).await
    }

    pub(crate) async fn post_json(
        &mut self,
        path: &str,
        csrf: &str,
        form: &[(&str, &str)],
    ) -> Answer {
        let request = self
            .http
            .post(self.url(path))
            .header("accept", "application/json")
            .header("x-csrf-token", csrf)
            .form(form);
        self.send(request).await
    }

    /// Signs the seeded operator in; returns the session's CSRF token (from a page's form).
    pub(crate) async fn sign_in(&mut self) -> String {
        let answer = self
            .post("/login", &[("name", OPERATOR), ("password", PASSWORD)])
            .await;
        assert_eq!(answer.status, 303, "{}", answer.body);
        let page = self.get("/bulk").await;
        csrf_of(&page.body)
    }
}

pub(crate) fn csrf_of(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .expect("a form with a CSRF token");
    let rest = &html[at + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

fn assert_no_originals(world: &ConsoleWorld, body: &str, context: &str) {
    for l in &world.learners {
        assert!(
            !body.contains(&l.email),
            "{context} shows an original email"
        );
        assert!(
            !body.contains(&l.username),
            "{context} shows an original username"
        );
    }
    assert!(
        !body.contains("Console Person"),
        "{context} shows an original name"
    );
}

async fn world() -> (ConsoleWorld, String, tokio::sync::oneshot::Sender<()>) {
    let world = ConsoleWorld::seeded(now()).await.unwrap();
    let (url, stop) = world.serve(None).await.unwrap();
    (world, url, stop)
}

#[tokio::test]
async fn every_route_refuses_an_anonymous_request() {
    let (world, url, _stop) = world().await;
    let id = world.learners[0].id.0;
    let gets = [
        "/".to_owned(),
        "/learners".to_owned(),
        format!("/learners/{id}"),
        "/bulk".to_owned(),
        "/metrics".to_owned(),
    ];
    let posts = [
        format!("/learners/{id}/reset"),
        format!("/learners/{id}/reveal"),
        format!("/learners/{id}/cancel"),
        "/bulk".to_owned(),
        "/logout".to_owned(),
    ];
    for forged in [None, Some("retire_session=forged-session-id")] {
        let mut client = Client::new(&url);
        if let Some(cookie) = forged {
            let (k, v) = cookie.split_once('=').unwrap();
            client.cookies.push((k.into(), v.into()));
        }
        for path in &gets {
            let html = client.get(path).await;
            let api = client.get_json(path).await;
            if path == "/metrics" {
                assert_eq!(html.status, 401, "{path}");
            } else {
                assert_eq!(html.status, 303, "{path}");
                assert_eq!(html.location.as_deref(), Some("/login"), "{path}");
                assert_eq!(api.status, 401, "{path}");
            }
            assert!(!html.body.contains("retired__"), "{path} leaks a learner");
        }
        for path in &posts {
            let answer = client
                .post(path, &[("reason", "x"), ("to", "PENDING"), ("id", "1")])
                .await;
            assert_eq!(answer.status, 303, "{path}");
            assert_eq!(answer.location.as_deref(), Some("/login"));
        }
    }
    // Nothing moved.
    for l in &world.learners {
        assert_eq!(
            world.store.get(l.id).await.unwrap().current_state(),
            l.state
        );
    }
}

#[tokio::test]
async fn sign_in_refuses_bad_credentials_and_sets_a_strict_cookie() {
    let (_world, url, _stop) = world().await;
    let mut client = Client::new(&url);
    for (name, password) in [(OPERATOR, "wrong password"), ("nobody", PASSWORD)] {
        let answer = client
            .post("/login", &[("name", name), ("password", password)])
            .await;
        assert_eq!(answer.status, 401);
        assert!(answer.body.contains("Unknown operator or wrong password."));
        assert!(client.cookies.is_empty());
    }
    let response = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("{url}/login"))
        .form(&[("name", OPERATOR), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(
        response.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
}

#[tokio::test]
async fn pages_show_the_store_and_never_an_original() {
    let (world, url, _stop) = world().await;
    let mut client = Client::new(&url);
    client.sign_in().await;
    let overview: serde_json::Value =
        serde_json::from_str(&client.get_json("/").await.body).unwrap();
    let errored = world.in_state("ERRORED").len();
    assert_eq!(overview["errored"], errored);
    let total: u64 = overview["by_state"]
        .as_array()
        .unwrap()
        .iter()
        .map(|pair| pair[1].as_u64().unwrap())
        .sum();
    assert_eq!(total, LEARNERS as u64);
    assert!(overview["overdue"].as_u64().unwrap() > 0);
    assert!(overview["due_soon"].as_u64().unwrap() > 0);
    // Of the learners in a working state, those whose worker wrote a minute ago are not
    // stuck; the others are.
    let working = world
        .learners
        .iter()
        .filter(|l| l.state.starts_with("RETIRING"))
        .count();
    assert_eq!(overview["stuck"], working / 2);

    let html = client.get("/").await;
    assert_eq!(html.status, 200);
    assert!(html.body.contains("id=\"state-diagram\""));
    assert_no_originals(&world, &html.body, "the overview");

    // The filtered list: ERRORED only, and every page of the unfiltered list.
    let list: serde_json::Value =
        serde_json::from_str(&client.get_json("/learners?state=ERRORED").await.body).unwrap();
    assert_eq!(list["total"], errored);
    assert!(
        list["rows"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["state"] == "ERRORED")
    );
    let page = client.get("/learners?state=ERRORED&sort=id").await;
    assert_eq!(page.status, 200);
    assert_no_originals(&world, &page.body, "the learners list");
    // Overdue only, as the overview's card links.
    let overdue: serde_json::Value =
        serde_json::from_str(&client.get_json("/learners?overdue=true").await.body).unwrap();
    assert_eq!(overdue["total"], overview["overdue"]);
    // A bad filter is a clear error, not a panic.
    let bad = client.get("/learners?from=yesterday").await;
    assert_eq!(bad.status, 409);
    assert!(bad.body.contains("bad filter"), "{}", bad.body);

    for l in &world.learners {
        let page = client.get(&format!("/learners/{}", l.id.0)).await;
        assert_eq!(page.status, 200);
        assert_no_originals(&world, &page.body, "a learner page");
        let json = client.get_json(&format!("/learners/{}", l.id.0)).await;
        assert_no_originals(&world, &json.body, "a learner's JSON");
    }
    let missing = client.get("/learners/999999").await;
    assert_eq!(missing.status, 404);
}

#[tokio::test]
async fn a_missing_or_forged_csrf_token_is_refused() {
    let (world, url, _stop) = world().await;
    let mut client = Client::new(&url);
    let csrf = client.sign_in().await;
    let learner = world.in_state("ERRORED")[0].clone();
    let path = format!("/learners/{}/reset", learner.id.0);
    let no_token = client
        .post(&path, &[("to", "PENDING"), ("reason", "r")])
        .await;
    assert_eq!(no_token.status, 403);
    let forged = client
        .post(
            &path,
            &[("to", "PENDING"), ("reason", "r"), ("csrf", "forged")],
        )
        .await;
    assert_eq!(forged.status, 403);
    let forged_header = client
        .post_json(&path, "forged", &[("to", "PENDING"), ("reason", "r")])
        .await;
    assert_eq!(forged_header.status, 403);
    assert_eq!(
        world.store.get(learner.id).await.unwrap().current_state(),
        "ERRORED"
    );
    let ok = client
        .post_json(&path, &csrf, &[("to", "PENDING"), ("reason", "ticket 7")])
        .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(
        world.store.get(learner.id).await.unwrap().current_state(),
        "PENDING"
    );
    // Sign-out needs the token too.
    assert_eq!(client.post("/logout", &[]).await.status, 403);
    assert_eq!(client.post("/logout", &[("csrf", &csrf)]).await.status, 303);
    assert_eq!(client.get("/").await.status, 303);
}

#[tokio::test]
async fn actions_are_audited_and_refused_where_the_state_forbids_them() {
    let (world, url, _stop) = world().await;
    let mut client = Client::new(&url);
    let csrf = client.sign_in().await;
    let errored = world.in_state("ERRORED")[0].clone();
    let before = world.store.get(errored.id).await.unwrap();

    // A reason is required.
    let blank = client
        .post_json(
            &format!("/learners/{}/retry", errored.id.0),
            &csrf,
            &[("reason", " ")],
        )
        .await;
    assert_eq!(blank.status, 409, "{}", blank.body);

    // Retry from the failed stage: back to the state before it, audited with name and reason.
    let retried = client
        .post(
            &format!("/learners/{}/retry", errored.id.0),
            &[("csrf", &csrf), ("reason", "vendor fixed their 500s")],
        )
        .await;
    assert_eq!(retried.status, 303);
    let after = world.store.get(errored.id).await.unwrap();
    let (_, pipeline) = retirement_core::Pipeline::six_stage_example();
    let failed = pipeline.position(before.last_state());
    let expected = match failed {
        retirement_core::Position::Working(0) => "PENDING".to_owned(),
        retirement_core::Position::Working(i) => pipeline.stages()[i - 1].complete_state.clone(),
        other => panic!("seeded ERRORED learner failed at {other:?}"),
    };
    assert_eq!(after.current_state(), expected);
    let entry = after.log().last().unwrap();
    assert_eq!(entry.actor.to_string(), format!("operator:{OPERATOR}"));
    assert!(
        entry.text.contains("vendor fixed their 500s"),
        "{}",
        entry.text
    );
    let page = client.get(&format!("/learners/{}", errored.id.0)).await;
    assert!(page.body.contains("vendor fixed their 500s"));
    assert!(page.body.contains("Retrying: moved to"));

    // Cancel: refused for a learner not PENDING, shown as unavailable on its page.
    let complete = world.in_state("COMPLETE")[0].clone();
    let page = client.get(&format!("/learners/{}", complete.id.0)).await;
    assert!(page.body.contains("id=\"unavailable-cancel\""));
    let refused = client
        .post(
            &format!("/learners/{}/cancel", complete.id.0),
            &[("csrf", &csrf), ("reason", "asked by mistake")],
        )
        .await;
    assert_eq!(refused.status, 409);
    assert!(
        refused
            .body
            .contains("only a PENDING request can be cancelled")
    );
    world.store.get(complete.id).await.unwrap();
    let pending = world.in_state("PENDING")[0].clone();
    let cancelled = client
        .post(
            &format!("/learners/{}/cancel", pending.id.0),
            &[("csrf", &csrf), ("reason", "learner withdrew")],
        )
        .await;
    assert_eq!(cancelled.status, 303);
    assert!(world.store.get(pending.id).await.is_err());
    // The one trace left: who cancelled it and why.
    let trace = world.store.actions_of(pending.id).await.unwrap();
    assert_eq!(trace.len(), 1);
    assert_eq!(trace[0].kind, ActionKind::Cancel);
    assert_eq!(trace[0].operator, OPERATOR);
    assert_eq!(trace[0].reason, "learner withdrew");

    // Extend: once under GDPR (two more months), then refused.
    let open = world.in_state("PENDING")[1].clone();
    let extended: serde_json::Value = serde_json::from_str(
        &client
            .post_json(
                &format!("/learners/{}/extend", open.id.0),
                &csrf,
                &[("reason", "complex request")],
            )
            .await
            .body,
    )
    .unwrap();
    assert!(
        extended["message"]
            .as_str()
            .unwrap()
            .starts_with("Deadline extended")
    );
    let view: serde_json::Value = serde_json::from_str(
        &client
            .get_json(&format!("/learners/{}", open.id.0))
            .await
            .body,
    )
    .unwrap();
    let r = world.store.get(open.id).await.unwrap();
    assert_eq!(
        view["row"]["due"].as_str().unwrap(),
        serde_json::to_value(retirement_core::Regime::Gdpr.due(r.created(), 1))
            .unwrap()
            .as_str()
            .unwrap()
    );
    assert_eq!(view["row"]["extensions"], 1);
    let again = client
        .post_json(
            &format!("/learners/{}/extend", open.id.0),
            &csrf,
            &[("reason", "more")],
        )
        .await;
    assert_eq!(again.status, 409);
    assert!(again.body.contains("allows 1 extension"), "{}", again.body);

    // Done: only in the manual stage; reset there first, then done moves it on.
    let manual = "RETIRING_LMS";
    let learner = world.in_state("PENDING")[2].clone();
    let not_manual = client
        .post_json(
            &format!("/learners/{}/done", learner.id.0),
            &csrf,
            &[("reason", "x")],
        )
        .await;
    assert_eq!(not_manual.status, 409);
    client
        .post_json(
            &format!("/learners/{}/reset", learner.id.0),
            &csrf,
            &[("to", manual), ("reason", "to the manual step")],
        )
        .await;
    let done = client
        .post_json(
            &format!("/learners/{}/done", learner.id.0),
            &csrf,
            &[("reason", "deleted by hand in the CRM")],
        )
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(
        world.store.get(learner.id).await.unwrap().current_state(),
        "LMS_COMPLETE"
    );
}

#[tokio::test]
async fn a_reveal_shows_the_email_once_and_is_logged() {
    let (world, url, _stop) = world().await;
    let mut client = Client::new(&url);
    let csrf = client.sign_in().await;
    let learner = world.learners[3].clone();
    let path = format!("/learners/{}", learner.id.0);
    assert!(!client.get(&path).await.body.contains(&learner.email));
    let revealed = client
        .post(
            &format!("{path}/reveal"),
            &[("csrf", &csrf), ("reason", "DPO ticket 42")],
        )
        .await;
    assert_eq!(revealed.status, 200);
    assert!(revealed.body.contains(&learner.email));
    // Recorded, with who and why; the next view shows the record, not the email.
    let actions = world.store.actions_of(learner.id).await.unwrap();
    assert_eq!(actions.len(), 1);
    assert_eq!(actions[0].kind, ActionKind::Reveal);
    assert_eq!(actions[0].operator, OPERATOR);
    assert_eq!(actions[0].reason, "DPO ticket 42");
    let page = client.get(&path).await;
    assert!(!page.body.contains(&learner.email));
    assert!(page.body.contains("DPO ticket 42"));
    assert!(page.body.contains("reveal"));
    // The journal holds no original.
    let hits = world
        .store
        .text_columns_containing(&[learner.email.clone(), learner.username.clone()])
        .await
        .unwrap();
    assert!(
        hits.iter()
            .all(|h| h.starts_with("retirement_statuses.original")),
        "{hits:?}"
    );
}

#[tokio::test]
async fn bulk_retry_moves_the_errored_and_names_the_refused() {
    let (world, url, _stop) = world().await;
    let mut client = Client::new(&url);
    let csrf = client.sign_in().await;
    let errored: Vec<String> = world
        .in_state("ERRORED")
        .iter()
        .map(|l| l.id.0.to_string())
        .collect();
    let pending = world.in_state("PENDING")[0].id.0.to_string();
    let mut form: Vec<(&str, &str)> = vec![("csrf", &csrf), ("reason", "outage over")];
    for id in &errored {
        form.push(("id", id));
    }
    form.push(("id", &pending));
    let answer = client.post("/bulk", &form).await;
    assert_eq!(answer.status, 200);
    assert!(
        answer
            .body
            .contains(&format!("{} moved, 1 refused.", errored.len())),
        "{}",
        answer.body
    );
    assert!(answer.body.contains(&format!("retirement {pending}: ")));
    assert!(answer.body.contains("No learner is ERRORED."));
    for l in world.in_state("ERRORED") {
        let r = world.store.get(l.id).await.unwrap();
        assert_ne!(r.current_state(), "ERRORED");
        assert!(r.log().last().unwrap().text.contains("outage over"));
    }
}

#[tokio::test]
async fn metrics_need_a_session_or_the_bearer_token() {
    let (world, url, _stop) = world().await;
    let http = reqwest::Client::new();
    let anonymous = http.get(format!("{url}/metrics")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let wrong = http
        .get(format!("{url}/metrics"))
        .bearer_auth("guess")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let text = http
        .get(format!("{url}/metrics"))
        .bearer_auth("metrics-token")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let errored = world.in_state("ERRORED").len();
    assert!(
        text.contains(&format!("retirement_errored {errored}\n")),
        "{text}"
    );
    assert!(text.contains("retirement_learners{state=\"PENDING\"}"));
    assert!(text.contains("retirement_oldest_pending_age_seconds "));
    assert!(text.contains("retirement_overdue "));
}

#[tokio::test]
async fn lms_sign_in_admits_staff_only() {
    let world = ConsoleWorld::seeded(now()).await.unwrap();
    let fake = FakeEdx::start(FakeConfig {
        client_id: "console-app".into(),
        client_secret: "console-secret".into(),
        ..FakeConfig::default()
    })
    .await
    .unwrap();
    let lms = LmsSignIn {
        lms_url: fake.base_url(),
        token_url_base: fake.base_url(),
        client_id: "console-app".into(),
        client_secret: retirement_http::Secret::new("console-secret"),
    };
    let (url, _stop) = world.serve(Some(lms)).await.unwrap();

    async fn through_lms(client: &mut Client) -> Answer {
        let start = client.get("/login/lms").await;
        assert_eq!(start.status, 303);
        let authorize = start.location.unwrap();
        assert!(authorize.contains("response_type=code"), "{authorize}");
        let back = client.get(&authorize).await;
        assert_eq!(back.status, 303);
        client.get(&back.location.unwrap()).await
    }

    fake.set_sign_in(Some(("staff.bob", true)));
    let mut client = Client::new(&url);
    let signed_in = through_lms(&mut client).await;
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
    let overview = client.get("/").await;
    assert_eq!(overview.status, 200);
    assert!(overview.body.contains("Signed in as staff.bob"));
    // The LMS user's name goes into audited actions.
    let csrf = csrf_of(&overview.body);
    let learner = world.in_state("ERRORED")[0].id;
    client
        .post_json(
            &format!("/learners/{}/retry", learner.0),
            &csrf,
            &[("reason", "r")],
        )
        .await;
    let r = world.store.get(learner).await.unwrap();
    assert_eq!(
        r.log().last().unwrap().actor.to_string(),
        "operator:staff.bob"
    );

    fake.set_sign_in(Some(("learner.carol", false)));
    let mut client = Client::new(&url);
    let refused = through_lms(&mut client).await;
    assert_eq!(refused.status, 401);
    assert!(refused.body.contains("not staff"));
    assert_eq!(client.get("/").await.status, 303);

    // A callback that did not start here (no state cookie) is refused.
    fake.set_sign_in(Some(("staff.bob", true)));
    let mut client = Client::new(&url);
    let start = client.get("/login/lms").await;
    let back = client.get(&start.location.unwrap()).await;
    let mut stranger = Client::new(&url);
    let forged = stranger.get(&back.location.unwrap()).await;
    assert_eq!(forged.status, 401);
    assert!(forged.body.contains("did not start here"));
    let _ = RetirementId(0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_lms_what_its_api_cannot_do_is_shown_unavailable() {
    use std::sync::Arc;

    use retirement_http::LmsStore;
    use retirement_http::console::{self, Access, AccessConfig, Console, Operator};
    use retirement_http::fake::console::{FixedClock, seed_examples};

    let (table, pipeline) = retirement_core::Pipeline::six_stage_example();
    let names: Vec<String> = table.names().map(str::to_owned).collect();
    let world = crate::support::lms_world(&names).await;
    let ids = retirement_core::RetiredIdConfig::new(vec!["lms-console".into()]).unwrap();
    // Requested "now": within the LMS's cool-off, as a real queue is.
    let at = Utc::now();
    let seeded = seed_examples(&world.store, &pipeline, &ids, at, 16, "Lms")
        .await
        .unwrap();
    let lms = LmsStore::new(world.clients.clone())
        .unwrap()
        .with_states(names.clone());
    let view = Console {
        store: Arc::new(lms),
        journal: None,
        pipeline: Arc::new(pipeline),
        regime: retirement_core::Regime::Gdpr,
        clock: Arc::new(FixedClock(at)),
        stuck_after: chrono::TimeDelta::minutes(5),
        store_kind: "lms".into(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let access = Access::new(AccessConfig {
        operators: vec![Operator {
            name: OPERATOR.into(),
            password_hash: console::access::hash_password(PASSWORD).unwrap(),
        }],
        lms: None,
        public_url: url.clone(),
        secure_cookies: false,
    })
    .unwrap();
    tokio::spawn(console::serve(
        listener,
        console::router(view, access, None),
        std::future::pending(),
    ));
    let mut client = Client::new(&url);
    let csrf = client.sign_in().await;

    let overview: serde_json::Value =
        serde_json::from_str(&client.get_json("/").await.body).unwrap();
    let errored: Vec<_> = seeded.iter().filter(|l| l.state == "ERRORED").collect();
    assert_eq!(overview["errored"], errored.len());
    assert!(client.get("/").await.body.contains("No runs recorded"));

    // The LMS moves learners (a forced update) and cancels; it has nowhere to record an
    // extension or a reveal.
    let learner = errored[0];
    let page = client.get(&format!("/learners/{}", learner.id.0)).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("id=\"form-retry\""));
    for action in ["extend", "reveal"] {
        let at = page
            .body
            .find(&format!("id=\"unavailable-{action}\""))
            .unwrap_or_else(|| panic!("{action} not shown unavailable"));
        assert!(page.body[at..].contains("lease_store"));
    }
    let reveal = client
        .post_json(
            &format!("/learners/{}/reveal", learner.id.0),
            &csrf,
            &[("reason", "ticket")],
        )
        .await;
    assert_eq!(reveal.status, 409);
    assert!(!reveal.body.contains(&learner.email));
    let retried = client
        .post_json(
            &format!("/learners/{}/retry", learner.id.0),
            &csrf,
            &[("reason", "through the LMS")],
        )
        .await;
    assert_eq!(retried.status, 200, "{}", retried.body);
    let r = world.store.get(learner.id).await.unwrap();
    assert_ne!(r.current_state(), "ERRORED");
    assert!(r.log().last().unwrap().text.contains("through the LMS"));
}
