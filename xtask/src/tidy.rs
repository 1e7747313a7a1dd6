//! Repository hygiene: the architecture invariants of ARCHITECTURE.md that a test can check.

use std::path::Path;
use std::process::Command;

use crate::{cargo, project_root};

/// The crates that must stay pure: no I/O, no clock, no async runtime.
const PURE_CRATES: &[&str] = &["retirement-core", "assignment-expiry"];
/// What a pure crate must not depend on, directly or not.
const BANNED_IN_PURE: &[&str] = &[
    "tokio",
    "reqwest",
    "hyper",
    "diesel",
    "diesel-async",
    "async-trait",
];
/// Clock reads a pure crate's sources must not contain.
const CLOCK_READS: &[&str] = &["Utc::now", "Local::now", "SystemTime::now", "Instant::now"];
/// The workspace's fixed top-level shape.
const MEMBERS: &[&str] = &[
    "retirement-core",
    "retirement-store",
    "retirement-http",
    "assignment-expiry",
    "bins",
    "xtask",
];

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {dir:?}: {e}")) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `cargo tree --locked --prefix none -p <krate> <extra…>`, checked to have run and to mention
/// `expect` (so an empty or failed tree cannot pass a test vacuously).
fn cargo_tree(krate: &str, extra: &[&str], expect: &str) -> String {
    let output = Command::new(cargo())
        .args(["tree", "--locked", "--prefix", "none", "-p", krate])
        .args(extra)
        .current_dir(project_root())
        .output()
        .expect("cargo tree runs");
    assert!(
        output.status.success(),
        "cargo tree -p {krate} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tree = String::from_utf8(output.stdout).unwrap();
    assert!(
        tree.contains(expect),
        "cargo tree printed nothing useful: {tree}"
    );
    tree
}

#[test]
fn pure_crates_depend_on_no_runtime_http_or_database_crate() {
    for krate in PURE_CRATES {
        let tree = cargo_tree(krate, &["-e", "normal", "--format", "{p}"], krate);
        for line in tree.lines() {
            let name = line.split_whitespace().next().unwrap_or_default();
            assert!(
                !BANNED_IN_PURE.contains(&name),
                "{krate} depends on {name}: the pure crates do no I/O and run no async runtime"
            );
        }
    }
}

#[test]
fn pure_crates_read_no_clock() {
    for krate in PURE_CRATES {
        let mut files = Vec::new();
        rust_files(&project_root().join(krate).join("src"), &mut files);
        assert!(!files.is_empty(), "{krate} has no sources");
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for read in CLOCK_READS {
                assert!(
                    !text.contains(read),
                    "{} contains {read}: pure crates take `now` as a parameter",
                    file.display()
                );
            }
        }
    }
}

#[test]
fn pure_crates_ban_clock_reads_in_clippy() {
    for krate in PURE_CRATES {
        let config = std::fs::read_to_string(project_root().join(krate).join("clippy.toml"))
            .unwrap_or_else(|e| panic!("{krate}/clippy.toml: {e}"));
        for read in [
            "chrono::Utc::now",
            "std::time::SystemTime::now",
            "std::time::Instant::now",
        ] {
            assert!(
                config.contains(read),
                "{krate}/clippy.toml does not ban {read}"
            );
        }
    }
}

#[test]
fn every_library_opens_with_crate_docs() {
    for krate in MEMBERS.iter().filter(|k| !matches!(**k, "bins" | "xtask")) {
        let lib = std::fs::read_to_string(project_root().join(krate).join("src/lib.rs")).unwrap();
        assert!(
            lib.starts_with("//!"),
            "{krate}/src/lib.rs must open with `//!` docs"
        );
        assert!(
            lib.contains("#![warn(missing_docs)]"),
            "{krate} must warn on missing docs"
        );
    }
}

#[test]
fn workspace_has_the_fixed_shape() {
    let manifest = std::fs::read_to_string(project_root().join("Cargo.toml")).unwrap();
    for member in MEMBERS {
        assert!(
            project_root().join(member).join("Cargo.toml").is_file(),
            "{member} is missing"
        );
        assert!(
            manifest.contains(&format!("\"{member}\"")),
            "{member} is not a workspace member"
        );
    }
    for file in [
        "Cargo.lock",
        "README.md",
        "ARCHITECTURE.md",
        "BENCHMARKS.md",
        ".ci/run",
    ] {
        assert!(project_root().join(file).is_file(), "{file} is missing");
    }
    let ignore = std::fs::read_to_string(project_root().join(".gitignore")).unwrap();
    assert!(
        ignore
            .lines()
            .any(|l| l.trim() == "/target" || l.trim() == "target/")
    );
}

/// The store builds without system database libraries: no libpq, libmysqlclient, system SQLite
/// link or OpenSSL anywhere in its tree (SQLite is bundled; the server clients are pure Rust).
#[test]
fn store_needs_no_system_database_library() {
    let tree = cargo_tree(
        "retirement-store",
        &["-e", "normal,build", "--format", "{p} {f}"],
        "diesel-async",
    );
    for line in tree.lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        assert!(
            !["pq-sys", "mysqlclient-sys", "openssl-sys", "native-tls"].contains(&name),
            "retirement-store depends on {name}, which needs a system library"
        );
        if name == "libsqlite3-sys" {
            assert!(
                line.contains("bundled"),
                "libsqlite3-sys without `bundled`: {line}"
            );
        }
    }
}

/// SQL lives in retirement-store only: no other crate declares a diesel dependency.
#[test]
fn only_the_store_speaks_sql() {
    for member in MEMBERS.iter().filter(|m| **m != "retirement-store") {
        let manifest = std::fs::read_to_string(project_root().join(member).join("Cargo.toml"))
            .unwrap_or_else(|e| panic!("reading {member}/Cargo.toml: {e}"));
        for line in manifest.lines() {
            let key = line.split(['=', '.']).next().unwrap_or_default().trim();
            assert!(
                !key.starts_with("diesel") && key != "libsqlite3-sys",
                "{member} declares {key}: SQL belongs in retirement-store"
            );
        }
    }
}

/// The HTTP clients use rustls with bundled roots: no crate named like OpenSSL (not even
/// `openssl-probe`) anywhere in retirement-http's tree, as `cargo tree | grep -i openssl` checks.
#[test]
fn http_has_no_openssl_in_its_tree() {
    let tree = cargo_tree("retirement-http", &[], "reqwest");
    let hits: Vec<&str> = tree
        .lines()
        .filter(|l| l.to_lowercase().contains("openssl"))
        .collect();
    assert!(
        hits.is_empty(),
        "OpenSSL in retirement-http's tree: {hits:?}"
    );
}

/// What the driver runtime may not name: it knows the store trait and the step-caller trait,
/// never the HTTP clients, their wire formats or the fake.
const RUNTIME_MUST_NOT_NAME: &[&str] = &[
    "reqwest",
    "ServiceClients",
    "crate::client",
    "crate::catalog",
    "crate::transport",
    "crate::fake",
    "crate::steps",
    "LmsStore",
    "DieselStore",
    "Utc::now",
    "std::time::Instant",
];

#[test]
fn the_runtime_knows_only_the_store_and_step_caller_traits() {
    let dir = project_root().join("retirement-http/src/runtime");
    let mut files = Vec::new();
    rust_files(&dir, &mut files);
    assert!(files.len() >= 4, "the runtime is a module tree: {files:?}");
    for file in files {
        // Doc comments are left out: their examples are compiled as crates of their own,
        // which may well pick a concrete store to show the runtime in use.
        let text: String = std::fs::read_to_string(&file)
            .unwrap()
            .lines()
            .filter(|l| !(l.trim_start().starts_with("///") || l.trim_start().starts_with("//!")))
            .collect::<Vec<_>>()
            .join("\n");
        for banned in RUNTIME_MUST_NOT_NAME {
            assert!(
                !text.contains(banned),
                "{} names {banned}: the runtime reaches services only through StepCaller, \
                 stores only through RetirementStore, and the time only through its Clock",
                file.display()
            );
        }
    }
}

/// The library crates (the members but the binaries and this one).
fn libraries() -> impl Iterator<Item = &'static str> {
    MEMBERS
        .iter()
        .copied()
        .filter(|k| !matches!(*k, "bins" | "xtask"))
}

#[test]
fn every_library_front_page_starts_with_a_tested_example() {
    for krate in libraries() {
        let lib = std::fs::read_to_string(project_root().join(krate).join("src/lib.rs")).unwrap();
        let docs: Vec<&str> = lib.lines().take_while(|l| l.starts_with("//!")).collect();
        let heading = docs.iter().position(|l| l.starts_with("//! # "));
        assert!(
            heading.is_some_and(|i| docs[i].to_lowercase().contains("example")),
            "{krate}: the crate docs' first section must be an example"
        );
        let fence = docs[heading.unwrap()..]
            .iter()
            .find(|l| l.trim_start_matches("//!").trim().starts_with("```"))
            .map(|l| l.trim_start_matches("//!").trim());
        // A plain ``` fence: compiled and run by the doc tests (not `ignore`, `no_run`, `text`).
        assert_eq!(
            fence,
            Some("```"),
            "{krate}: the first example must be a doc test that runs"
        );
    }
}

#[test]
fn every_library_has_an_embedding_example_that_ci_runs() {
    for krate in libraries() {
        let dir = project_root().join(krate).join("examples");
        let listed: Vec<&str> = crate::EMBEDDING_EXAMPLES
            .iter()
            .filter(|(p, _)| *p == krate)
            .map(|(_, e)| *e)
            .collect();
        assert!(!listed.is_empty(), "{krate}: no embedding example listed");
        for example in listed {
            assert!(
                dir.join(format!("{example}.rs")).exists(),
                "{krate}: examples/{example}.rs is listed but missing"
            );
        }
    }
}

#[test]
fn every_library_carries_registry_metadata() {
    let workspace = std::fs::read_to_string(project_root().join("Cargo.toml")).unwrap();
    let package = workspace
        .split("[workspace.package]")
        .nth(1)
        .and_then(|rest| rest.split("\n[").next())
        .unwrap_or_default();
    assert!(
        package.contains("\nrepository = \""),
        "[workspace.package] needs a repository"
    );
    for krate in libraries() {
        let manifest =
            std::fs::read_to_string(project_root().join(krate).join("Cargo.toml")).unwrap();
        for key in [
            "description = \"",
            "repository.workspace = true",
            "keywords = [",
            "categories = [",
            "readme = \"",
        ] {
            assert!(manifest.contains(key), "{krate}/Cargo.toml lacks {key}");
        }
        assert!(
            !manifest.contains("See src/lib.rs"),
            "{krate}: a real description"
        );
        if let Some(readme) = manifest
            .lines()
            .find_map(|l| l.strip_prefix("readme = \""))
            .and_then(|r| r.strip_suffix('"'))
        {
            assert!(
                project_root().join(krate).join(readme).exists(),
                "{krate}: readme {readme} does not exist"
            );
        }
    }
}
