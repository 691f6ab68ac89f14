#!/usr/bin/env sh
# The quickstart: check the workflows and run their tests, load the demo customers, their
# orders and events into a fresh SQLite store (tidings.db), then run three passes on a
# virtual clock.
# Emails land in out/mail/ as .eml files.
set -eu
cd "$(dirname "$0")/.."
rm -rf tidings.db tidings.db-wal tidings.db-shm out/mail
cargo build --quiet
tidings=target/debug/tidings
$tidings validate
$tidings test
$tidings import customers examples/demo/customers.csv
$tidings import orders examples/demo/orders.csv
$tidings import events examples/demo/events.csv
for now in 2026-06-01T08:00:00Z 2026-06-03T10:00:00Z 2026-06-09T10:00:00Z; do
  $tidings run --once --now "$now"
done
echo "emails written:"
ls out/mail
