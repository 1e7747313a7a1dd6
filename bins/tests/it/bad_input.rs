//! Bad input, never a panic: arbitrary text and broken-but-plausible documents fed to the
//! config loader, `expire-assignments evaluate` (the built binary) and the store's assignment
//! import, which must also write nothing when it refuses.
//!
//! `BAD_INPUT_CASES` sets the cases per target (default 256); each target prints how many it
//! tried (`cargo xtask chaos input` shows them).

use std::cell::Cell;
use std::path::Path;

use bins::config::Config;
use chrono::Utc;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config as RunnerConfig, TestRunner};
use retirement_store::{DieselStore, StoreOptions};

fn cases() -> u32 {
    std::env::var("BAD_INPUT_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

fn runner() -> TestRunner {
    TestRunner::new(RunnerConfig {
        cases: cases(),
        failure_persistence: None,
        ..RunnerConfig::default()
    })
}

/// Arbitrary JSON (also valid YAML, in flow style).
fn json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        ".{0,20}".prop_map(serde_json::Value::from),
        Just(serde_json::Value::from("2024-01-01T00:00:00Z")),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(serde_json::Value::from),
            prop::collection::btree_map("[a-z_]{1,10}", inner, 0..5)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A valid config, as JSON (YAML's superset), with the secret the errors must never quote.
fn valid_config() -> serde_json::Value {
    serde_json::json!({
        "client_id": "retirement-worker",
        "client_secret": "Secret-Never-Quoted-7f3a",
        "base_urls": {"lms": "http://127.0.0.1:1/", "ecommerce": "http://127.0.0.1:1/"},
        "retirement_pipeline": [["RETIRING_LMS", "LMS_COMPLETE", "LMS", "retirement_lms_retire"]],
        "store": "sqlite://retirement.db",
        "concurrency": 8,
        "lease_seconds": 300,
        "timeouts": {"request_seconds": 60},
        "retry": {"budget_seconds": 600},
        "rate_limits": {"LMS": 10},
        "retired_id": {"salts": ["a"]},
    })
}

const CONFIG_KEYS: [&str; 11] = [
    "client_id",
    "base_urls",
    "retirement_pipeline",
    "store",
    "concurrency",
    "lease_seconds",
    "timeouts",
    "retry",
    "rate_limits",
    "retired_id",
    "expiry_policy",
];

#[test]
fn the_config_loader_answers_any_text_with_a_config_or_an_error() {
    let text = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        ".{0,200}",
        json().prop_map(|v| v.to_string()),
        (prop::sample::select(CONFIG_KEYS.to_vec()), json()).prop_map(|(key, value)| {
            let mut config = valid_config();
            config[key] = value;
            config.to_string()
        }),
    ];
    let (accepted, refused) = (Cell::new(0u32), Cell::new(0u32));
    let result = runner().run(&text, |text| {
        match Config::parse(&text, Some(Path::new("chaos.yml"))) {
            Ok(_) => accepted.set(accepted.get() + 1),
            Err(e) => {
                refused.set(refused.get() + 1);
                let message = e.to_string();
                prop_assert!(message.contains("chaos.yml"), "{message}");
                prop_assert!(!message.contains("Secret-Never-Quoted"), "{message}");
            }
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("config loader: {e}");
    }
    let (accepted, refused) = (accepted.get(), refused.get());
    println!(
        "bad input: config loader: {} cases ({accepted} accepted, {refused} refused naming \
         the file, none quoting the secret), no panic",
        accepted + refused
    );
    assert!(accepted > 0 && refused > 0);
}

const FIXTURE: &str = include_str!("fixtures/assignments.jsonl");

/// The fixture's well-formed lines.
fn good_lines() -> Vec<serde_json::Value> {
    FIXTURE
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| assignment_expiry::parse_line(&v.to_string()).is_ok())
        .collect()
}

/// One line: arbitrary text, arbitrary JSON, or a fixture line with one field replaced.
fn line() -> impl Strategy<Value = String> {
    let good = good_lines();
    let fields = vec![
        "uuid",
        "state",
        "learner_email",
        "lms_user_id",
        "created",
        "allocated_at",
        "actions",
        "subsidy_expiration",
        "content_metadata",
        "enrollment_deadline",
        "preferred_course_run_key",
        "configuration_active",
    ];
    prop_oneof![
        ".{0,120}".prop_map(|s| s.replace('\n', " ")),
        json().prop_map(|v| v.to_string()),
        (
            prop::sample::select(good.clone()),
            prop::sample::select(fields),
            json()
        )
            .prop_map(|(mut line, field, value)| {
                line[field] = value;
                line.to_string()
            }),
        prop::sample::select(good).prop_map(|l| l.to_string()),
    ]
}

#[test]
fn evaluate_answers_every_line_or_names_it_malformed() {
    let mut runner = runner();
    let strategy = line();
    let lines: Vec<String> = (0..cases())
        .map(|_| strategy.new_tree(&mut runner).unwrap().current())
        .collect();
    let well_formed = lines
        .iter()
        .filter(|l| !l.trim().is_empty() && assignment_expiry::parse_line(l).is_ok())
        .count();
    let run = crate::expire_assignments(
        &["evaluate", "--now", "2024-06-01T00:00:00Z"],
        &(lines.join("\n") + "\n"),
    );
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    assert!(matches!(run.code, Some(0) | Some(1)), "{:?}", run.code);
    assert_eq!(
        run.stdout.lines().count(),
        well_formed,
        "one decision per good line"
    );
    let malformed = lines.iter().filter(|l| !l.trim().is_empty()).count() - well_formed;
    assert_eq!(
        run.stderr.matches("expire-assignments: line ").count(),
        malformed,
        "one error per malformed line"
    );
    println!(
        "bad input: expire-assignments evaluate: {} lines ({well_formed} decided, {malformed} \
         named malformed), no panic",
        lines.len()
    );
    assert!(well_formed > 0 && malformed > 0);
}

#[test]
fn import_writes_all_or_nothing() {
    let dir = std::env::temp_dir().join(format!("bad-input-import-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = format!("sqlite://{}", dir.join("store.db").display());
    let store = runtime.block_on(async {
        let store = DieselStore::open(&url, &StoreOptions::default())
            .await
            .unwrap();
        store.migrate().await.unwrap();
        store
    });
    // A file: a few lines, each given a uuid of its own so that a good file imports whole.
    let file = prop::collection::vec(line(), 1..6);
    let (imported, refused, counter) = (Cell::new(0u32), Cell::new(0u32), Cell::new(0u32));
    let result = runner().run(&file, |lines| {
        counter.set(counter.get() + 1);
        let case = counter.get();
        let lines: Vec<String> = lines
            .into_iter()
            .enumerate()
            .map(
                |(i, l)| match serde_json::from_str::<serde_json::Value>(&l) {
                    Ok(mut v) if v.get("uuid").is_some_and(|u| u.is_string()) => {
                        v["uuid"] = format!("case{case}-line{i}").into();
                        v.to_string()
                    }
                    _ => l,
                },
            )
            .collect();
        let text = lines.join("\n");
        let uuids: Vec<String> = (0..lines.len())
            .map(|i| format!("case{case}-line{i}"))
            .collect();
        let outcome = runtime.block_on(
            store.import_assignments(|| Ok(std::io::Cursor::new(text.clone())), Utc::now()),
        );
        let present = runtime.block_on(async {
            let mut present = 0;
            for uuid in &uuids {
                if store.get_assignment(uuid).await.unwrap().is_some() {
                    present += 1;
                }
            }
            present
        });
        match outcome {
            Ok(summary) => {
                imported.set(imported.get() + 1);
                prop_assert_eq!(summary.imported as usize, present);
            }
            Err(_) => {
                refused.set(refused.get() + 1);
                prop_assert_eq!(present, 0, "a refused import wrote rows");
            }
        }
        Ok(())
    });
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(e) = result {
        panic!("import: {e}");
    }
    let (imported, refused) = (imported.get(), refused.get());
    println!(
        "bad input: assignment import: {} files ({imported} imported whole, {refused} refused \
         with nothing written), no panic",
        imported + refused
    );
    assert!(imported > 0 && refused > 0);
}
