#!/usr/bin/env bash
# Issue 32, item 1: what a 100,000-email campaign leaves in a SQLite store, and what
# `retention.bodies` (default 7d) takes back. The campaign of `campaign.sh` (one ~3.5 KB
# email per customer into Postfix's `smtp-sink`), then a pass eight days later. Prints the
# store's used bytes (pages in use, free pages left out: SQLite keeps a file's size and
# reuses what a delete frees) after the import, right after the campaign, and after the
# later pass, with the growth over the import.
#
#   examples/bench/retention.sh [CUSTOMERS]      (PORT=2525)
set -euo pipefail
N=${1:-100000}
PORT=${PORT:-2525}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=postfix.sh
. "$here/postfix.sh"
if ! command -v sqlite3 >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends sqlite3 >/dev/null
fi

work=$(mktemp -d)
sink=""
cleanup() {
  [ -n "$sink" ] && kill "$sink" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
smtp-sink -u nobody "127.0.0.1:$PORT" 1024 &
sink=$!
sleep 0.5

cp -r "$here/workflows" "$here/templates" "$work/"
cat >"$work/tidings.yaml" <<YAML
database: sqlite://$work/tidings.db
email:
  from: "Acme <news@acme.example>"
  transport: smtp://127.0.0.1:$PORT
  concurrency: 8
unsubscribe:
  base_url: https://acme.example/u
  secret: bench-secret-not-for-production
YAML
awk -v n="$N" 'BEGIN {
  print "id,email,first_name,last_name,locale"
  for (i = 0; i < n; i++) printf "c%07d,customer%d@bench.example,Name%d,Family%d,en-GB\n", i, i, i, i
}' >"$work/customers.csv"

used() {
  sqlite3 "$work/tidings.db" "PRAGMA wal_checkpoint(TRUNCATE);" >/dev/null
  sqlite3 "$work/tidings.db" "SELECT (SELECT page_count FROM pragma_page_count) - (SELECT freelist_count FROM pragma_freelist_count), (SELECT page_size FROM pragma_page_size);" |
    awk -F'|' '{ printf "%.1f", $1 * $2 / 1048576 }'
}
mb() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%+.1f", a - b }'; }

"$bin" -C "$work" import customers "$work/customers.csv" >/dev/null
imported=$(used)
"$bin" -C "$work" run --once --now 2026-06-01T10:00:00Z --progress never >"$work/run.txt"
grep -q "delivered $N emails" "$work/run.txt" || { cat "$work/run.txt" >&2; exit 1; }
sent=$(used)
"$bin" -C "$work" run --once --now 2026-06-09T10:00:00Z --progress never >"$work/later.txt"
later=$(used)
bodies=$(sqlite3 "$work/tidings.db" "SELECT COUNT(*) FROM delivery_bodies")
echo "customers: $N; store in use (MB): imported $imported, after the campaign $sent ($(mb "$sent" "$imported")), after a pass 8 days later $later ($(mb "$later" "$imported"))"
echo "bodies kept after the later pass: $bodies; $(grep -h dropped "$work/later.txt" || echo 'nothing dropped')"
