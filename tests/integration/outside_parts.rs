//! The outside parts some checks need. Without one, its check here is ignored with what it
//! needs, so `cargo test`'s summary says what did not run; the checks that need the part
//! skip that half themselves (and say so as they do). With the part, the check here proves
//! it is really usable, so a half-configured machine fails instead of skipping.

use crate::common::repo_root;

#[test]
#[cfg_attr(
    tidings_without_postgres,
    ignore = "skipped: the PostgreSQL half of every store test needs TIDINGS_TEST_DATABASE_URL (e.g. postgres://postgres@127.0.0.1:5432/test) when `cargo test` is built"
)]
fn postgresql_is_there_for_the_store_tests() {
    let url = std::env::var("TIDINGS_TEST_DATABASE_URL").unwrap_or_default();
    assert!(
        !url.is_empty(),
        "TIDINGS_TEST_DATABASE_URL was set when the tests were built and is not now: run `cargo test` with it set"
    );
    crate::store::runtime().block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&url)
            .await
            .expect("PostgreSQL at TIDINGS_TEST_DATABASE_URL accepts connections");
        let one: i32 = sqlx::query_scalar("SELECT 1")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(one, 1);
    });
}

#[test]
#[cfg_attr(
    tidings_without_mysql,
    ignore = "skipped: the MySQL (MariaDB) half of the source tests needs TIDINGS_TEST_MYSQL_URL (e.g. mysql://root@127.0.0.1:3306/test) when `cargo test` is built"
)]
fn mysql_is_there_for_the_source_tests() {
    let url = std::env::var("TIDINGS_TEST_MYSQL_URL").unwrap_or_default();
    assert!(
        !url.is_empty(),
        "TIDINGS_TEST_MYSQL_URL was set when the tests were built and is not now: run `cargo test` with it set"
    );
    crate::store::runtime().block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::MySqlConnection::connect(&url)
            .await
            .expect("MySQL at TIDINGS_TEST_MYSQL_URL accepts connections");
        let one: i32 = sqlx::query_scalar("SELECT 1")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(one, 1);
    });
}

#[test]
#[cfg_attr(
    tidings_without_browser,
    ignore = "skipped: the report's check in headless Chromium needs Debian's chromium and `npm ci --prefix tests/browser`"
)]
fn chromium_is_there_for_the_report_check() {
    let chromium = std::env::var("CHROMIUM").unwrap_or("/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} is gone since the tests were built"
    );
    assert!(
        repo_root()
            .join("tests/browser/node_modules/playwright-core")
            .exists(),
        "tests/browser/node_modules is gone since the tests were built: run `npm ci --prefix tests/browser`"
    );
}
