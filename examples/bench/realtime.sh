#!/usr/bin/env bash
# The real-time benchmark: `order_placed` events POSTed to `tidings daemon --every 1h` at a
# steady rate; each makes a thank-you email due at once, which goes to Postfix's
# `smtp-sink` on loopback. Prints the percentiles of event accepted -> SMTP server
# accepted, from the daemons' own `/metrics` histogram (bucket bounds: 0.05, 0.1, 0.2, 0.5,
# 1, 2, 5 … s), and the idle cost of a daemon with nothing to do.
#
#   examples/bench/realtime.sh [RATE] [SECONDS] [sqlite|postgres] [REPLICAS]
#
# PostgreSQL: DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test; a schema of
# its own is made and dropped). Installs Postfix for smtp-sink when missing, and builds
# tidings in release mode.
set -euo pipefail
RATE=${1:-50}
SECONDS_=${2:-20}
STORE=${3:-sqlite}
REPLICAS=${4:-1}
CUSTOMERS=${CUSTOMERS:-2000}
PORT=${PORT:-2525}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=postfix.sh
. "$here/postfix.sh"

work=$(mktemp -d)
pids=()
schema=""
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "$schema" ]; then
    psql "$base" -qc "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
smtp-sink -u nobody "127.0.0.1:$PORT" 1024 &
pids+=($!)

case "$STORE" in
  sqlite) db="sqlite://$work/tidings.db" ;;
  postgres)
    base=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
    schema="bench_realtime_$$"
    psql "$base" -qc "CREATE SCHEMA $schema" >/dev/null
    db="$base?options=-c%20search_path%3D$schema"
    ;;
  *) echo "store: sqlite or postgres" >&2; exit 2 ;;
esac

mkdir -p "$work/workflows" "$work/templates/thanks"
cp "$root/templates/thanks/"* "$work/templates/thanks/"
cat >"$work/workflows/thanks.yaml" <<'YAML'
name: thanks
class: transactional
trigger:
  event: order_placed
reentry: always
steps:
  - email: thanks/order
    subject: "Thank you for your order, {{ customer.first_name or \"friend\" }}"
YAML
cat >"$work/tidings.yaml" <<YAML
database: "$db"
email:
  from: "Acme <orders@acme.example>"
  transport: smtp://127.0.0.1:$PORT
  concurrency: 8
server:
  public_url: https://mail.acme.example
  token: bench-token
YAML
{
  echo "id,email,first_name"
  for i in $(seq 0 $((CUSTOMERS - 1))); do printf 'c%07d,c%d@bench.example,Name%d\n' "$i" "$i" "$i"; done
} >"$work/customers.csv"
(cd "$work" && "$bin" validate >/dev/null && "$bin" import customers customers.csv >/dev/null)

ports=()
for r in $(seq 1 "$REPLICAS"); do
  p=$((18080 + r))
  (cd "$work" && exec "$bin" daemon --listen "127.0.0.1:$p" --every 1h 2>"$work/daemon$r.log") &
  pids+=($!)
  ports+=("$p")
done
for p in "${ports[@]}"; do
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$p/healthz" >/dev/null 2>&1 && break
    sleep 0.1
  done
done

echo "store: $STORE, replicas: $REPLICAS"
python3 "$here/realtime_load.py" "$RATE" "$SECONDS_" "$CUSTOMERS" bench-token "${ports[@]}"

# The idle cost: a minute of one daemon with nothing to do, in CPU ticks.
daemon=${pids[1]}
read -r t0 < <(awk '{ print $14 + $15 }' "/proc/$daemon/stat")
sleep "${IDLE_SECONDS:-60}"
read -r t1 < <(awk '{ print $14 + $15 }' "/proc/$daemon/stat")
ticks=$((t1 - t0))
echo "idle: $ticks CPU ticks in ${IDLE_SECONDS:-60} s ($(awk -v t="$ticks" -v s="${IDLE_SECONDS:-60}" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", 100 * t / hz / s }')% of a core)"
