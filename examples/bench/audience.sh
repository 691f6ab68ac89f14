#!/usr/bin/env bash
# The audience benchmark: N customers (default 1,000,000) in a fresh SQLite store, one
# schedule-triggered workflow whose 4-condition audience holds for about 1 in 1,000 of
# them, and `tidings run --once` timed under /usr/bin/time — every customer is looked at,
# the few who match are enrolled and mailed (to a folder). Run twice: with the audience
# written so that its three comparisons are pushed into SQL (`has_tag` last), and the same
# conditions with `has_tag` first, which pushes nothing and leaves every customer to Rhai.
#
#   examples/bench/audience.sh [CUSTOMERS]
#   DATABASE_URL=postgres://postgres@127.0.0.1:5432/test examples/bench/audience.sh
#     (PostgreSQL: the customers go into a schema `tidings_bench`, dropped first)
set -euo pipefail
N=${1:-1000000}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cargo build --release --quiet --manifest-path "$root/Cargo.toml"
bin="$root/target/release/tidings"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$here/templates" "$work/"
mkdir -p "$work/workflows"
database="sqlite://$work/tidings.db"
if [ -n "${DATABASE_URL:-}" ]; then
  psql -q "$DATABASE_URL" -c "DROP SCHEMA IF EXISTS tidings_bench CASCADE" -c "CREATE SCHEMA tidings_bench"
  sep='?'
  case "$DATABASE_URL" in *\?*) sep='&' ;; esac
  database="$DATABASE_URL${sep}options=-c%20search_path%3Dtidings_bench"
fi
cat >"$work/tidings.yaml" <<YAML
database: $database
email:
  from: "Acme <news@acme.example>"
  transport: folder:outbox
YAML
awk -v n="$N" 'BEGIN {
  print "id,email,first_name,locale,orders_count,total_spent,tags"
  split("en-GB de-DE fr-FR ja-JP", loc, " ")
  for (i = 0; i < n; i++) {
    tag = (i % 5 == 0) ? "vip" : ""
    printf "c%07d,customer%d@bench.example,Name%d,%s,%d,%d.50,%s\n", i, i, i, loc[i % 4 + 1], i % 7, (i * 37) % 1000, tag
  }
}' >"$work/customers.csv"
t0=$(date +%s.%N)
"$bin" -C "$work" import customers "$work/customers.csv" --progress never >/dev/null
t1=$(date +%s.%N)
echo "import of $N customers: $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s"

run() {
  local name=$1 audience=$2
  rm -rf "$work/outbox" "$work/workflows"/*
  cat >"$work/workflows/$name.yaml" <<YAML
name: $name
trigger:
  schedule: "0 10 * * MON"
audience: $audience
steps:
  - id: news
    email: campaign/news
    subject: "{{ customer.first_name }}, the autumn collection is here"
YAML
  /usr/bin/time -f "%e %U %S %M" -o "$work/time.txt" \
    "$bin" -C "$work" run --once --now 2026-06-01T10:00:00Z --progress never >"$work/run.txt"
  read -r wall user sys rss <"$work/time.txt"
  local enrolled
  enrolled=$(grep -o '[0-9]* enrolled' "$work/run.txt" | cut -d' ' -f1)
  awk -v n="$N" -v w="$wall" -v u="$user" -v s="$sys" -v r="$rss" -v e="$enrolled" -v what="$name" 'BEGIN {
    printf "%-10s %9.0f customers/s  %6.2f s wall  %6.2f s CPU  %5.1f MB peak RSS  %d enrolled\n", what, n / w, w, u + s, r / 1024, e
  }'
  # Both forms of the audience must pick the same customers.
  echo "$enrolled" >>"$work/enrolled.txt"
}
run pushed 'customer.orders_count >= 5 && customer.total_spent > 900 && customer.locale == "de-DE" && has_tag(customer, "vip")'
run in-rhai 'has_tag(customer, "vip") && customer.orders_count >= 5 && customer.total_spent > 900 && customer.locale == "de-DE"'
if [ "$(sort -u "$work/enrolled.txt" | wc -l)" != 1 ]; then
  echo "the two forms enrolled different numbers of customers" >&2
  exit 1
fi
