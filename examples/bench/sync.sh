#!/usr/bin/env bash
# The sync benchmark: a PostgreSQL "shop" of CUSTOMERS customers and ORDERS orders (defaults
# 200,000 and 1,000,000; updated_at shared by 1,000 rows at a time, a line or two per order
# as JSON) read by `tidings sync` into a fresh store, timed under /usr/bin/time (wall time
# and peak RSS); then 1,000 orders changed in the shop (500 cancelled, 500 with a new total)
# and synced again. The store is SQLite, or PostgreSQL when STORE_URL names a server
# (the store then lives in a schema `tidings_bench`, dropped first).
#
#   SHOP_URL=postgres://postgres@127.0.0.1:5432/test examples/bench/sync.sh [CUSTOMERS] [ORDERS]
#   STORE_URL=postgres://postgres@127.0.0.1:5432/test SHOP_URL=... examples/bench/sync.sh
#
# The shop's tables go into a schema `shop_bench` of SHOP_URL, dropped first.
set -euo pipefail
C=${1:-200000}
O=${2:-1000000}
SHOP_URL=${SHOP_URL:-postgres://postgres@127.0.0.1:5432/test}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cargo build --release --quiet --manifest-path "$root/Cargo.toml"
bin="$root/target/release/tidings"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sep() { case "$1" in *\?*) echo '&' ;; *) echo '?' ;; esac; }

psql -q -v ON_ERROR_STOP=1 "$SHOP_URL" <<SQL
DROP SCHEMA IF EXISTS shop_bench CASCADE;
CREATE SCHEMA shop_bench;
SET search_path = shop_bench;
CREATE TABLE customers (id BIGINT PRIMARY KEY, email TEXT NOT NULL, first_name TEXT,
  locale TEXT, timezone TEXT, created_at TIMESTAMPTZ, updated_at TIMESTAMPTZ NOT NULL);
CREATE TABLE orders (id BIGINT PRIMARY KEY, customer_id BIGINT NOT NULL, total NUMERIC(10,2),
  currency CHAR(3), status TEXT, coupon TEXT, placed_at TIMESTAMPTZ, updated_at TIMESTAMPTZ NOT NULL,
  lines JSONB);
INSERT INTO customers
  SELECT i, 'customer' || i || '@bench.example', 'Name' || i,
         (ARRAY['en-GB','de-DE','fr-FR','ja-JP'])[1 + i % 4],
         (ARRAY['Europe/London','Europe/Berlin','Europe/Paris','Asia/Tokyo'])[1 + i % 4],
         timestamptz '2024-01-01' + i * interval '1 minute',
         timestamptz '2025-01-01' + (i / 1000) * interval '1 minute'
  FROM generate_series(1, $C) AS i;
INSERT INTO orders
  SELECT j, 1 + (j * 7919) % $C, ((j * 37) % 20000) / 100.0, 'EUR',
         CASE WHEN j % 20 = 0 THEN 'cancelled' WHEN j % 31 = 0 THEN 'refunded' ELSE 'completed' END,
         CASE WHEN j % 9 = 0 THEN 'WELCOME10' END,
         timestamptz '2024-06-01' + j * interval '30 seconds',
         timestamptz '2025-06-01' + (j / 1000) * interval '1 minute',
         jsonb_build_array(jsonb_build_object('sku', 'SKU-' || (j % 500), 'quantity', 1 + j % 3,
                                              'price', ((j * 37) % 20000) / 100.0))
  FROM generate_series(1::bigint, $O) AS j;
CREATE INDEX ON customers (updated_at, id);
CREATE INDEX ON orders (updated_at, id);
ANALYZE;
SQL
shop="$SHOP_URL$(sep "$SHOP_URL")options=-c%20search_path%3Dshop_bench"
store="sqlite://$work/tidings.db"
if [ -n "${STORE_URL:-}" ]; then
  psql -q "$STORE_URL" -c "DROP SCHEMA IF EXISTS tidings_bench CASCADE" -c "CREATE SCHEMA tidings_bench"
  store="$STORE_URL$(sep "$STORE_URL")options=-c%20search_path%3Dtidings_bench"
fi
cat >"$work/tidings.yaml" <<YAML
database: $store
sources:
  shop:
    database: $shop
    customers: |
      SELECT id, email, first_name, locale, timezone, created_at, updated_at
      FROM customers WHERE updated_at >= :since
    orders: |
      SELECT id, customer_id, total, currency, status, coupon, placed_at, updated_at, lines
      FROM orders WHERE updated_at >= :since
YAML

timed() {
  local label=$1
  shift
  /usr/bin/time -f "%e %M" -o "$work/time" "$@" >"$work/out" 2>&1 || { cat "$work/out"; exit 1; }
  read -r secs kb <"$work/time"
  grep '^source' "$work/out" | sed 's/^/  /'
  echo "$label: ${secs} s, peak RSS $((kb / 1024)) MB"
}

kind=SQLite
[ -n "${STORE_URL:-}" ] && kind=PostgreSQL
echo "store: $kind; shop: $C customers, $O orders"
timed "full sync" "$bin" -C "$work" sync
psql -q -v ON_ERROR_STOP=1 "$SHOP_URL" <<SQL
SET search_path = shop_bench;
UPDATE orders SET status = 'cancelled', updated_at = now() WHERE id IN (SELECT id FROM orders WHERE status = 'completed' ORDER BY id LIMIT 500);
UPDATE orders SET total = total + 1, updated_at = now() WHERE id IN (SELECT id FROM orders WHERE status = 'completed' ORDER BY id DESC LIMIT 500);
SQL
timed "incremental sync of 1,000 changed orders" "$bin" -C "$work" sync
timed "sync with nothing changed" "$bin" -C "$work" sync
