use super::*;

#[test]
fn env_references_are_found_and_expanded() {
    assert_eq!(
        env_references("${A}/x/${B_2}"),
        Ok(vec!["A".into(), "B_2".into()])
    );
    assert_eq!(env_references("x ${A"), Err(EnvError::Malformed { at: 2 }));
    assert_eq!(env_references("${}"), Err(EnvError::Malformed { at: 0 }));
    let lookup = |n: &str| (n == "A").then(|| "secret".to_string());
    assert_eq!(expand_env("p=${A}", &lookup), Ok("p=secret".into()));
    let missing = expand_env("${B}", &lookup).unwrap_err();
    assert_eq!(missing.to_string(), "environment variable `B` is not set");
}

#[test]
fn delivery_durations_are_checked_at_load() {
    let dir = std::env::temp_dir().join(format!("tidings-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(CONFIG_FILE), "email:\n  lease: soon\n").unwrap();
    let d = Project::load(&dir).unwrap_err();
    assert_eq!(d.message, "`soon` is not a duration for `email.lease`");
    assert_eq!(d.span.as_ref().map(|s| s.start.line), Some(2));
    std::fs::write(dir.join(CONFIG_FILE), "email:\n  give_up_after: 0s\n").unwrap();
    assert!(Project::load(&dir).is_ok(), "giving up at once is allowed");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn mail_over_smtp_needs_a_public_link_and_a_real_sender() {
    let mut c = Config::default();
    assert!(
        c.production_problems().is_empty(),
        "a folder is a rehearsal"
    );
    c.email.transport = "smtp://relay.acme.example:587".into();
    let keys = |c: &Config| -> Vec<&str> { c.production_problems().iter().map(|p| p.0).collect() };
    assert_eq!(keys(&c), ["server.public_url", "email.from"]);
    c.email.from = "Acme <hello@acme.example>".into();
    for local in [
        "http://127.0.0.1:8080",
        "http://localhost",
        "https://[::1]:8443",
        "http://0.0.0.0",
        "https://shop.localhost/",
    ] {
        c.server.public_url = Some(local.into());
        assert_eq!(keys(&c), ["server.public_url"], "{local}");
    }
    c.server.public_url = Some("https://mail.acme.example/".into());
    assert!(c.production_problems().is_empty());
    assert_eq!(c.unsubscribe_base(), "https://mail.acme.example/u");
    c.unsubscribe.base_url = Some("http://127.0.0.2/u".into());
    assert_eq!(keys(&c), ["unsubscribe.base_url"]);
}

#[test]
fn defaults_without_a_file() {
    // A folder of its own: the other tests write config files into theirs meanwhile.
    let dir = std::env::temp_dir().join(format!("tidings-config-none-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = Project::load(&dir).unwrap();
    assert_eq!(p.config.database, "sqlite://tidings.db");
    assert_eq!(p.config.email.transport, "folder:out/mail");
    assert_eq!(p.workflows_dir(), dir.join("workflows"));
}

#[test]
fn sources_are_checked_where_they_are_written() {
    let dir = std::env::temp_dir().join(format!("tidings-sources-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let shop = "sources:\n  shop:\n    database: postgres://ro@db/shop\n";
    for (extra, message, line) in [
        (
            "    every: soon\n    orders: SELECT id, updated_at FROM orders\n",
            "`soon` is not an interval for source `shop`",
            4,
        ),
        (
            "    page: 0\n    orders: SELECT id, updated_at FROM orders\n",
            "a page of 0 rows is not allowed",
            4,
        ),
        ("    every: 1m\n", "source `shop` has no query", 2),
    ] {
        std::fs::write(dir.join(CONFIG_FILE), format!("{shop}{extra}")).unwrap();
        let d = Project::load(&dir).unwrap_err();
        assert_eq!(d.message, message);
        assert_eq!(
            d.span.as_ref().map(|s| s.start.line),
            Some(line),
            "{message}"
        );
    }
    std::fs::write(
        dir.join(CONFIG_FILE),
        "sources:\n  shop:\n    database: oracle://db/shop\n    orders: SELECT 1\n",
    )
    .unwrap();
    let d = Project::load(&dir).unwrap_err();
    assert_eq!(
        d.message,
        "`oracle://db/shop` is not a database tidings can read"
    );
    std::fs::write(
        dir.join(CONFIG_FILE),
        "sources:\n  shop:\n    database: ${SHOP_URL}\n    customers: SELECT id, email, updated_at FROM c\n",
    )
    .unwrap();
    let p = Project::load(&dir).unwrap();
    let s = &p.config.sources["shop"];
    assert_eq!(
        (s.interval(), s.page, s.feeds().len()),
        (TimeDelta::minutes(5), 1000, 1)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
