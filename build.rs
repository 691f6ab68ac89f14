//! Tells the integration tests which outside parts this machine lacks, so that `cargo test`'s
//! summary lists a check that could not run as ignored, with what it needs, instead of
//! counting it as passed. Only the tests read these settings; the program never does.

use std::path::Path;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(tidings_without_postgres)");
    println!("cargo::rustc-check-cfg=cfg(tidings_without_browser)");
    println!("cargo::rustc-check-cfg=cfg(tidings_without_mysql)");
    println!("cargo::rerun-if-env-changed=TIDINGS_TEST_DATABASE_URL");
    println!("cargo::rerun-if-env-changed=TIDINGS_TEST_MYSQL_URL");
    println!("cargo::rerun-if-env-changed=CHROMIUM");
    // A directory is watched by the newest time of anything inside it: `npm ci` and
    // installing Chromium both show up without a path that may not exist yet (a missing
    // path would make every build run this script again).
    println!("cargo::rerun-if-changed=tests/browser");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if let Some(dir) = Path::new(&chromium).parent().filter(|d| d.is_dir()) {
        println!("cargo::rerun-if-changed={}", dir.display());
    }

    if std::env::var("TIDINGS_TEST_DATABASE_URL").map_or(true, |url| url.is_empty()) {
        println!("cargo::rustc-cfg=tidings_without_postgres");
    }
    if std::env::var("TIDINGS_TEST_MYSQL_URL").map_or(true, |url| url.is_empty()) {
        println!("cargo::rustc-cfg=tidings_without_mysql");
    }
    let packages = Path::new("tests/browser/node_modules/playwright-core").exists();
    if !packages || !Path::new(&chromium).exists() {
        println!("cargo::rustc-cfg=tidings_without_browser");
    }
}
