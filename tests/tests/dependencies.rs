//! The dependency set stays honest (issue 12, item 10): every crate the workspace resolves —
//! `cargo metadata --offline`, all platforms — comes from crates.io (or is ours), is under a
//! license `deny.toml` allows, and is not a banned crate (`rustls-pemfile`, OpenSSL …).
//!
//! `deny.toml` is in cargo-deny's format, so `cargo deny check bans licenses sources` applies
//! the same policy where cargo-deny is installed; this test needs no tool beyond cargo. The
//! policy's own tests below show each rule failing on a crate that breaks it.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// The rules of `deny.toml`.
#[derive(Debug)]
struct Policy {
    licenses: Vec<String>,
    banned: Vec<(String, String)>,
    registries: Vec<String>,
}

impl Policy {
    fn from_toml(text: &str) -> Self {
        let doc: toml::Table = toml::from_str(text).expect("deny.toml is TOML");
        let strings = |v: Option<&toml::Value>| -> Vec<String> {
            v.and_then(toml::Value::as_array)
                .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
                .unwrap_or_default()
        };
        let licenses = strings(doc.get("licenses").and_then(|l| l.get("allow")));
        let banned: Vec<(String, String)> = doc
            .get("bans")
            .and_then(|b| b.get("deny"))
            .and_then(toml::Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|d| {
                        let name = d.get("crate").or_else(|| d.get("name"))?.as_str()?.to_owned();
                        let why = d.get("reason").and_then(toml::Value::as_str).unwrap_or("banned").to_owned();
                        Some((name, why))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let registries = strings(doc.get("sources").and_then(|s| s.get("allow-registry")));
        assert!(!licenses.is_empty() && !banned.is_empty() && !registries.is_empty(), "deny.toml: {doc:?}");
        Self { licenses, banned, registries }
    }

    /// What is wrong with the packages of a `cargo metadata` document, one line per problem.
    fn violations(&self, metadata: &Value) -> Vec<String> {
        let mut out = Vec::new();
        for p in metadata["packages"].as_array().expect("packages") {
            let id = format!("{} {}", p["name"].as_str().unwrap_or("?"), p["version"].as_str().unwrap_or("?"));
            let name = p["name"].as_str().unwrap_or_default();
            if let Some((_, why)) = self.banned.iter().find(|(b, _)| b == name) {
                out.push(format!("{id}: banned ({why})"));
            }
            match p["source"].as_str() {
                // Ours: a path in the workspace.
                None => {}
                Some(src) => {
                    let allowed = src
                        .strip_prefix("registry+")
                        .or_else(|| src.strip_prefix("sparse+"))
                        .is_some_and(|url| self.registries.iter().any(|r| r == url));
                    if !allowed {
                        out.push(format!("{id}: from {src}, not an allowed registry"));
                    }
                }
            }
            match p["license"].as_str() {
                None => out.push(format!("{id}: no SPDX license (only a license file)")),
                Some(expr) => match spdx::satisfied(expr, &self.licenses) {
                    Ok(true) => {}
                    Ok(false) => out.push(format!("{id}: license {expr:?} is not allowed")),
                    Err(e) => out.push(format!("{id}: license {expr:?} does not parse: {e}")),
                },
            }
        }
        out
    }
}

/// Just enough SPDX license expressions: ids, `WITH` exceptions, `AND`, `OR` (and the old
/// `/` for OR), parentheses. An expression is satisfied when an allowed choice exists.
mod spdx {
    pub(super) fn satisfied(expr: &str, allowed: &[String]) -> Result<bool, String> {
        let spaced = expr.replace('(', " ( ").replace(')', " ) ").replace('/', " OR ");
        let tokens: Vec<&str> = spaced.split_whitespace().collect();
        let mut p = Parser { tokens: &tokens, at: 0, allowed };
        let ok = p.or()?;
        if p.at != tokens.len() {
            return Err(format!("unexpected {:?}", tokens[p.at]));
        }
        Ok(ok)
    }

    struct Parser<'a> {
        tokens: &'a [&'a str],
        at: usize,
        allowed: &'a [String],
    }

    impl Parser<'_> {
        fn next_is(&self, word: &str) -> bool {
            self.tokens.get(self.at).is_some_and(|t| t.eq_ignore_ascii_case(word))
        }

        fn or(&mut self) -> Result<bool, String> {
            let mut ok = self.and()?;
            while self.next_is("OR") {
                self.at += 1;
                ok |= self.and()?;
            }
            Ok(ok)
        }

        fn and(&mut self) -> Result<bool, String> {
            let mut ok = self.term()?;
            while self.next_is("AND") {
                self.at += 1;
                ok &= self.term()?;
            }
            Ok(ok)
        }

        fn term(&mut self) -> Result<bool, String> {
            let Some(&token) = self.tokens.get(self.at) else { return Err("expression ends early".into()) };
            self.at += 1;
            if token == "(" {
                let ok = self.or()?;
                if !self.next_is(")") {
                    return Err("unclosed (".into());
                }
                self.at += 1;
                return Ok(ok);
            }
            if self.next_is("WITH") {
                // An exception only widens what its license allows.
                self.at += 2;
            }
            Ok(self.allowed.iter().any(|a| a == token))
        }
    }
}

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace holds tests/")
}

fn policy() -> Policy {
    Policy::from_toml(&std::fs::read_to_string(workspace().join("deny.toml")).expect("deny.toml"))
}

#[test]
fn every_dependency_is_from_crates_io_under_an_allowed_license_and_none_is_banned() {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--offline", "--locked"])
        .current_dir(workspace())
        .output()
        .expect("running cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata (every platform's crates must be downloaded: `cargo fetch --locked`, as tests/run.sh does): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let metadata: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata's JSON");
    let n = metadata["packages"].as_array().map_or(0, Vec::len);
    assert!(n > 100, "the whole resolve, every platform: {n} packages");
    let wrong = policy().violations(&metadata);
    assert!(wrong.is_empty(), "{} crate(s) against deny.toml:\n{}", wrong.len(), wrong.join("\n"));
}

/// A `cargo metadata` document of one package.
fn one(name: &str, license: Option<&str>, source: Option<&str>) -> Value {
    serde_json::json!({"packages": [{"name": name, "version": "1.0.0", "license": license, "source": source}]})
}

const CRATES_IO: Option<&str> = Some("registry+https://github.com/rust-lang/crates.io-index");

#[test]
fn the_policy_refuses_a_banned_crate() {
    let wrong = policy().violations(&one("rustls-pemfile", Some("Apache-2.0 OR ISC OR MIT"), CRATES_IO));
    assert_eq!(wrong.len(), 1, "{wrong:?}");
    assert!(wrong[0].starts_with("rustls-pemfile 1.0.0: banned (unmaintained"), "{wrong:?}");
    assert!(!policy().violations(&one("openssl-sys", Some("MIT"), CRATES_IO)).is_empty());
}

#[test]
fn the_policy_refuses_a_license_it_does_not_allow_and_one_it_cannot_read() {
    let p = policy();
    for bad in ["GPL-3.0-only", "MIT AND GPL-2.0-only", "AGPL-3.0-or-later WITH Classpath-exception-2.0", "(MIT"] {
        assert_eq!(p.violations(&one("x", Some(bad), CRATES_IO)).len(), 1, "{bad}");
    }
    assert_eq!(p.violations(&one("x", None, CRATES_IO)).len(), 1, "a license file alone");
    for good in [
        "MIT OR GPL-3.0-only",
        "MIT/Apache-2.0",
        "(MIT OR Apache-2.0) AND Unicode-3.0",
        "Apache-2.0 WITH LLVM-exception",
    ] {
        assert_eq!(p.violations(&one("x", Some(good), CRATES_IO)), Vec::<String>::new(), "{good}");
    }
}

#[test]
fn the_policy_refuses_a_crate_from_git_or_another_registry() {
    let p = policy();
    assert_eq!(p.violations(&one("x", Some("MIT"), Some("git+https://example.invalid/x?rev=1#abc"))).len(), 1);
    assert_eq!(p.violations(&one("x", Some("MIT"), Some("registry+https://example.invalid/index"))).len(), 1);
    assert!(p.violations(&one("x", Some("MIT"), None)).is_empty(), "a workspace crate");
}
