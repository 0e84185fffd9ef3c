//! The binary's configuration errors and start-up failures: clear, non-zero, no password.

use std::process::Command;

use secrecy::ExposeSecret;

const SECRET: &str = "s3cr3t-Pa55word";

fn challenge(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_challenge"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("run challenge");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), text)
}

#[test]
fn malformed_variable_stops_the_process_naming_it() {
    for (var, value) in [
        ("DB_PORT", "abc"),
        ("PORT", "99999"),
        ("LOG_FORMAT", "xml"),
        ("SEED_COUNT", "lots"),
    ] {
        let (code, out) = challenge(&["serve"], &[(var, value), ("DB_PASSWORD", SECRET)]);
        assert_eq!(code, Some(2), "{var}: {out}");
        assert!(out.contains(var), "{var} named in: {out}");
        assert_eq!(out.trim().lines().count(), 1, "one line: {out}");
        assert!(!out.contains(SECRET), "password leaked: {out}");
    }
}

#[test]
fn unreadable_password_file_is_a_configuration_error() {
    let (code, out) = challenge(
        &["migrate"],
        &[
            ("DB_PASSWORD", SECRET),
            ("DB_PASSWORD_FILE", "/nonexistent/db_password"),
        ],
    );
    assert_eq!(code, Some(2));
    assert!(out.contains("DB_PASSWORD_FILE"), "{out}");
    assert!(!out.contains(SECRET));
}

#[test]
fn help_never_shows_the_password() {
    let (code, out) = challenge(&["--help"], &[("DB_PASSWORD", SECRET)]);
    assert_eq!(code, Some(0));
    assert!(
        out.contains("DB_PASSWORD") && !out.contains(SECRET),
        "{out}"
    );
}

#[test]
fn wrong_password_fails_migrate_saying_credentials_were_refused() {
    let settings = crate::helpers::server_settings();
    let port = settings.port.to_string();
    let (code, out) = challenge(
        &["migrate", "--wait", "1s"],
        &[
            ("DB_HOST", settings.host.as_str()),
            ("DB_PORT", port.as_str()),
            ("DB_USERNAME", settings.username.as_str()),
            ("DB_PASSWORD", SECRET),
            ("LOG_FORMAT", "json"),
        ],
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("refused the credentials"), "{out}");
    assert!(!out.contains(SECRET), "password leaked: {out}");
    assert_ne!(settings.password.expose_secret(), SECRET);
}

#[test]
fn version_prints_the_version() {
    let (code, out) = challenge(&["version"], &[]);
    assert_eq!(code, Some(0));
    assert!(out.contains(env!("CARGO_PKG_VERSION")), "{out}");
}
