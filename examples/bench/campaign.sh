#!/usr/bin/env bash
# The campaign benchmark: N customers (default 100,000) each get one personalised ~3.5 KB
# email (HTML and text, first name, address and a signed unsubscribe link) through the
# real pipeline — audience, enrollment rows, outbox rows, render, SMTP — into Postfix's
# `smtp-sink` on loopback, with the durable outbox on (SQLite, full sync). Each run starts
# from a fresh store. Prints, per run and as the median: messages/s, client CPU per message
# and peak RSS of `tidings run --once`, next to the ceiling `smtp-source -> smtp-sink`
# reaches on this machine in the same run.
#
#   examples/bench/campaign.sh [CUSTOMERS] [RUNS]      (SESSIONS=8 PORT=2525)
#   DATABASE_URL=postgres://postgres@127.0.0.1:5432/test examples/bench/campaign.sh
#     (PostgreSQL: each run in a fresh schema `tidings_bench`)
#
# Then, on SQLite, the store's size (pages in use) after the import, right after the campaign,
# and after a pass eight days later, once `retention.bodies` (7d) has dropped the bodies.
#
# Installs Postfix (for smtp-sink and smtp-source) from Debian's packages when missing, and
# builds tidings in release mode.
set -euo pipefail
N=${1:-100000}
RUNS=${2:-3}
SESSIONS=${SESSIONS:-8}
PORT=${PORT:-2525}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=postfix.sh
. "$here/postfix.sh"

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

now() { date +%s.%N; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", a / b }'; }
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# The ceiling: Postfix's own client, the same number of messages and sessions, each session
# reused for message after message (`-d`), as tidings' sessions are: without it every
# message opens a connection and the ceiling looks half as high as it is.
t0=$(now)
smtp-source -d -s "$SESSIONS" -m "$N" -l 3500 -f news@acme.example -t bench@example.com "127.0.0.1:$PORT"
t1=$(now)
ceiling=$(ratio "$N" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')")

cp -r "$here/workflows" "$here/templates" "$work/"
database="sqlite://$work/tidings.db"
fresh_store() { rm -f "$work"/tidings.db*; }
if [ -n "${DATABASE_URL:-}" ]; then
  sep='?'
  case "$DATABASE_URL" in *\?*) sep='&' ;; esac
  database="$DATABASE_URL${sep}options=-c%20search_path%3Dtidings_bench"
  fresh_store() {
    psql -q "$DATABASE_URL" -c "SET client_min_messages = warning" -c "DROP SCHEMA IF EXISTS tidings_bench CASCADE" -c "CREATE SCHEMA tidings_bench"
  }
fi
cat >"$work/tidings.yaml" <<YAML
database: $database
email:
  from: "Acme <news@acme.example>"
  transport: smtp://127.0.0.1:$PORT
  concurrency: $SESSIONS
unsubscribe:
  base_url: https://acme.example/u
  secret: bench-secret-not-for-production
YAML
awk -v n="$N" 'BEGIN {
  print "id,email,first_name,last_name,locale"
  for (i = 0; i < n; i++) printf "c%07d,customer%d@bench.example,Name%d,Family%d,en-GB\n", i, i, i, i
}' >"$work/customers.csv"

echo "run  messages/s  CPU µs/message  peak RSS MB"
rates=()
cpus=()
rsss=()
for run in $(seq 1 "$RUNS"); do
  fresh_store
  "$bin" -C "$work" import customers "$work/customers.csv" >/dev/null
  /usr/bin/time -f "%e %U %S %M" -o "$work/time.txt" \
    "$bin" -C "$work" run --once --now 2026-06-01T10:00:00Z --progress never >"$work/run.txt"
  if ! grep -q "delivered $N emails" "$work/run.txt"; then
    cat "$work/run.txt" >&2
    echo "run $run did not deliver $N emails" >&2
    exit 1
  fi
  read -r wall user sys rss_kb <"$work/time.txt"
  rate=$(ratio "$N" "$wall")
  cpu=$(awk -v u="$user" -v s="$sys" -v n="$N" 'BEGIN { printf "%.1f", (u + s) * 1e6 / n }')
  rss=$(awk -v k="$rss_kb" 'BEGIN { printf "%.1f", k / 1024 }')
  echo "$run    $rate  $cpu  $rss"
  rates+=("$rate")
  cpus+=("$cpu")
  rsss+=("$rss")
done
# System calls per email, the figure noise does not move: one more run under strace.
if ! command -v strace >/dev/null 2>&1; then
  apt-get install -y -qq --no-install-recommends strace >/dev/null 2>&1 || true
fi
# The store's pages in use (free pages left out: SQLite keeps a file's size and reuses what
# a delete frees), in MB; PostgreSQL's are not measured here.
used() {
  [ -z "${DATABASE_URL:-}" ] && command -v sqlite3 >/dev/null 2>&1 || { echo "-"; return; }
  sqlite3 "$work/tidings.db" "PRAGMA wal_checkpoint(TRUNCATE);" >/dev/null
  sqlite3 "$work/tidings.db" "SELECT (SELECT page_count FROM pragma_page_count) - (SELECT freelist_count FROM pragma_freelist_count), (SELECT page_size FROM pragma_page_size);" |
    awk -F'|' '{ printf "%.1f", $1 * $2 / 1048576 }'
}
calls="(strace missing)"
fresh_store
"$bin" -C "$work" import customers "$work/customers.csv" >/dev/null
imported=$(used)
if command -v strace >/dev/null 2>&1; then
  strace -f -c -o "$work/strace.txt" \
    "$bin" -C "$work" run --once --now 2026-06-01T10:00:00Z --progress never >/dev/null
  total=$(awk '/ total$/ { print $4 }' "$work/strace.txt")
  calls=$(awk -v t="$total" -v n="$N" 'BEGIN { printf "%.1f", t / n }')
else
  "$bin" -C "$work" run --once --now 2026-06-01T10:00:00Z --progress never >/dev/null
fi
# The store right after the campaign, and after a pass eight days later, when
# `retention.bodies` (7d) has dropped the bodies.
sent=$(used)
"$bin" -C "$work" run --once --now 2026-06-09T10:00:00Z --progress never >"$work/later.txt"
later=$(used)
rate=$(printf '%s\n' "${rates[@]}" | median)
echo
echo "customers: $N, SMTP sessions: $SESSIONS, runs: $RUNS"
echo "tidings (median): $rate messages/s, $(printf '%s\n' "${cpus[@]}" | median) µs CPU per message, $(printf '%s\n' "${rsss[@]}" | median) MB peak RSS, $calls system calls per message (strace -f -c, one run)"
echo "store in use (MB): imported $imported, after the campaign $sent, after a pass 8 days later $later ($(grep -h dropped "$work/later.txt" || echo 'nothing dropped'))"
echo "smtp-source -d -> smtp-sink: $ceiling messages/s"
echo "ratio: $(awk -v a="$rate" -v b="$ceiling" 'BEGIN { printf "%.2f", a / b }') of the ceiling"
