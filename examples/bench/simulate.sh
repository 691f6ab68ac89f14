#!/usr/bin/env bash
# Issue 9, target 4: a 60-day `simulate` of the shipped example workflows over N generated
# customers (default 100,000: mixed zones, birthdays, order histories, and a sign-up event
# for one in fifty), timed with /usr/bin/time. Builds tidings in release mode.
#
#   examples/bench/simulate.sh [CUSTOMERS]
set -euo pipefail
N=${1:-100000}
root=$(cd "$(dirname "$0")/../.." && pwd)
cargo build --release --quiet --manifest-path "$root/Cargo.toml"
bin="$root/target/release/tidings"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$root/workflows" "$root/templates" "$root/stages.yaml" "$work/"
echo "database: sqlite://$work/tidings.db" >"$work/tidings.yaml"
awk -v n="$N" 'BEGIN {
  srand(7)
  split("Europe/London Asia/Tokyo Asia/Kolkata Asia/Shanghai America/Mexico_City Europe/Berlin America/New_York", zone, " ")
  split("0 0 1 1 2 3 5 12", orders, " ")
  print "id,email,first_name,locale,timezone,birthday,created_at,last_order_at,orders_count,total_spent" > "/dev/stdout"
  for (i = 0; i < n; i++) {
    o = orders[int(rand() * 8) + 1]
    last = o == 0 ? "" : sprintf("2026-%02d-%02dT10:00:00Z", int(rand() * 5) + 1, int(rand() * 28) + 1)
    printf "s%06d,s%d@example.com,S%d,en-GB,%s,%d-%02d-%02d,2025-06-01T10:00:00Z,%s,%d,%.2f\n",
      i, i, i, zone[int(rand() * 7) + 1], 1960 + int(rand() * 46), int(rand() * 12) + 1,
      int(rand() * 28) + 1, last, o, o * 57.5
  }
}' >"$work/customers.csv"
awk -v n="$N" 'BEGIN {
  print "customer_id,name,at"
  for (i = 0; i < n; i += 50) printf "s%06d,customer_created,2026-06-0%dT09:00:00Z\n", i, 1 + i % 7
}' >"$work/events.csv"
"$bin" -C "$work" import customers "$work/customers.csv"
"$bin" -C "$work" import events "$work/events.csv"
/usr/bin/time -f "simulate: %e s wall, %U s user, %S s sys, %M KB peak RSS" \
  "$bin" -C "$work" simulate --from 2026-06-01 --to 2026-07-31 --progress never | tail -6
