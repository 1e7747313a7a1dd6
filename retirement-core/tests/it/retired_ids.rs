//! Retired identifiers against vectors computed independently with Python's hashlib
//! (`data/retired_id_vectors.json`), the way openedx/user-util computes them.

use retirement_core::RetiredIdConfig;
use serde_json::Value;

#[test]
fn retired_identifiers_match_python_hashlib_vectors() {
    let data: Value =
        serde_json::from_str(include_str!("data/retired_id_vectors.json")).expect("valid JSON");
    let cases = data["cases"].as_array().expect("cases");
    assert!(cases.len() >= 30);
    for case in cases {
        let salts: Vec<String> = case["salts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect();
        let value = case["value"].as_str().unwrap();
        let config = RetiredIdConfig::new(salts).unwrap();
        assert_eq!(
            value.to_lowercase(),
            case["lowercased"].as_str().unwrap(),
            "lowercasing {value:?}"
        );
        assert_eq!(
            config.retired_username(value),
            case["retired_username"],
            "username {value:?}"
        );
        assert_eq!(
            config.retired_email(value),
            case["retired_email"],
            "email {value:?}"
        );
        let all: Vec<Value> = config
            .all_retired_usernames(value)
            .into_iter()
            .map(Value::from)
            .collect();
        assert_eq!(
            Value::from(all),
            case["all_retired_usernames"],
            "all salts {value:?}"
        );
    }
}

#[test]
fn custom_prefixes_and_domain_are_used() {
    let config =
        RetiredIdConfig::with_format("gone_", "gone_mail_", "example.invalid", vec!["abc".into()])
            .unwrap();
    let username = config.retired_username("Bob");
    assert!(username.starts_with("gone_") && username.len() == "gone_".len() + 40);
    let email = config.retired_email("Bob@Example.org");
    assert!(email.starts_with("gone_mail_") && email.ends_with("@example.invalid"));
    assert_eq!(config.all_retired_emails("bob@example.org"), [email]);
}
