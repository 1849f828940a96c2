#!/usr/bin/env bash
# `make bench`: the Products read path against a bare axum endpoint serving the same JSON.
# Runs inside `ecomctl with-infra` (DATABASE_URL and ECOM_TEST_REDIS_URL are provided).
# Everything is on this machine: wrk -t1 leaves the servers the other core(s).
set -euo pipefail
BIN=${BIN:?release binaries directory}
DURATION=${BENCH_DURATION:-10s}
CONNECTIONS=${BENCH_CONNECTIONS:-64}
PRODUCTS_PORT=${BENCH_PRODUCTS_PORT:-18102}
BARE_PORT=${BENCH_BARE_PORT:-18103}
PRODUCTS_GRPC_PORT=${BENCH_PRODUCTS_GRPC_PORT:-18104}
GATEWAY_PORT=${BENCH_GATEWAY_PORT:-18105}
# More gateways for the burst limiter's cost (ops ports beside them): off, and two floods.
GATEWAY_OFF_PORT=${BENCH_GATEWAY_OFF_PORT:-18106}
FLOOD_PORT=${BENCH_FLOOD_PORT:-18107}
FLOOD_OFF_PORT=${BENCH_FLOOD_OFF_PORT:-18108}
# BENCH_ONLY=graphql runs only the gateway part (reads and checkout skipped).
ONLY=${BENCH_ONLY:-}

command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk (or brew install wrk)"; exit 1; }

db_url="${DATABASE_URL%/*}/ecom_products_bench"
export ECOM_PRODUCTS_DATABASE_URL="$db_url" ECOM_REDIS_URL="$ECOM_TEST_REDIS_URL" ECOM_REDIS_PREFIX="bench-$$"
export ECOM_PRODUCTS_HTTP_PORT=$PRODUCTS_PORT ECOM_PRODUCTS_GRPC_PORT=$PRODUCTS_GRPC_PORT ECOM_BIND_ADDRESS=127.0.0.1
export ECOM_SEED_DEMO=true ECOM_LOG=warn ECOM_CACHE_TTL_SECONDS=3600

"$BIN/products" migrate >/dev/null
"$BIN/products" & products_pid=$!
gateway_pids=()
trap 'kill $products_pid ${bare_pid:-} "${gateway_pids[@]}" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PRODUCTS_PORT/health/ready" >/dev/null && break; sleep 0.1; done
# A gateway in front of Products (the other services are not needed for catalogue reads), its
# ops port (/metrics) at port + 1000.
start_gateway() { # port burst default-budget redis-prefix
  ECOM_GATEWAY_HTTP_PORT=$1 ECOM_GATEWAY_OPS_PORT=$(($1 + 1000)) ECOM_RATE_LIMIT_BURST=$2 \
    ECOM_RATE_LIMIT_DEFAULT=$3 ECOM_REDIS_PREFIX=$4 \
    ECOM_PRODUCTS_GRPC_URL="http://127.0.0.1:$PRODUCTS_GRPC_PORT" "$BIN/gateway" & gateway_pids+=($!)
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$1/health/live" >/dev/null && break; sleep 0.1; done
}
# The budgets are raised: 64 connections from one address would otherwise be one client. The
# in-process burst limiter stays on (checked on every request, never refusing) in the first,
# off in the second: the pair is its cost on a served request.
start_gateway "$GATEWAY_PORT" 100000000/second 100000000/minute "bench-$$"
start_gateway "$GATEWAY_OFF_PORT" off 100000000/minute "bench-$$"
# Floods from one client with the default limits: refused in process by the burst limiter,
# or (burst off) by the Redis budget. Own Redis prefix: their spent budget is theirs alone.
start_gateway "$FLOOD_PORT" 50/second 1200/minute "bench-$$-flood"
start_gateway "$FLOOD_OFF_PORT" off 1200/minute "bench-$$-flood-off"
GRAPHQL_BODY='{"query":"{ products(limit: 20) { id name price } }"}'
"$BIN/bench-bare" "http://127.0.0.1:$PRODUCTS_PORT" "$BARE_PORT" "http://127.0.0.1:$GATEWAY_PORT" & bare_pid=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$BARE_PORT/products/1" >/dev/null && break; sleep 0.1; done

# Same bytes on both sides (the comparison is only fair if so).
cmp <(curl -s "http://127.0.0.1:$PRODUCTS_PORT/products?limit=20") <(curl -s "http://127.0.0.1:$BARE_PORT/products?limit=20")
cmp <(curl -s "http://127.0.0.1:$PRODUCTS_PORT/products/1") <(curl -s "http://127.0.0.1:$BARE_PORT/products/1")
gql() { curl -s -H 'content-type: application/json' -d "$GRAPHQL_BODY" "$1/graphql"; }
cmp <(gql "http://127.0.0.1:$GATEWAY_PORT") <(gql "http://127.0.0.1:$BARE_PORT")
lua=$(mktemp --suffix .lua)
printf 'wrk.method = "POST"\nwrk.body = '"'"'%s'"'"'\nwrk.headers["Content-Type"] = "application/json"\n' "$GRAPHQL_BODY" >"$lua"

run() { # name url [wrk args...] -> "rps p50 p99"
  local name=$1 url=$2; shift 2
  wrk -t1 -c"$CONNECTIONS" -d2s "$@" "$url" >/dev/null   # warm-up (and warm cache)
  out=$(wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency "$@" "$url")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  errors=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out")
  [[ -z $errors ]] || echo "  ($name: $errors)" >&2
  printf '%s %s %s\n' "$rps" "$p50" "$p99"
}

printf '\nwrk -t1 -c%s -d%s, release builds, warm cache, one machine (%s cores)\n\n' "$CONNECTIONS" "$DURATION" "$(nproc)"
printf '%-28s %12s %10s %10s %8s\n' endpoint req/s p50 p99 ratio
paths=("/products?limit=20" "/products/1")
[[ $ONLY != graphql ]] || paths=()
for path in "${paths[@]}"; do
  read -r bare_rps bare_p50 bare_p99 < <(run bare "http://127.0.0.1:$BARE_PORT$path")
  read -r svc_rps svc_p50 svc_p99 < <(run products "http://127.0.0.1:$PRODUCTS_PORT$path")
  ratio=$(awk -v a="$svc_rps" -v b="$bare_rps" 'BEGIN {printf "%.2fx", a / b}')
  printf '%-28s %12s %10s %10s %8s\n' "bare axum $path" "$bare_rps" "$bare_p50" "$bare_p99" "1.00x"
  printf '%-28s %12s %10s %10s %8s\n' "products $path" "$svc_rps" "$svc_p50" "$svc_p99" "$ratio"
done
read -r bare_rps bare_p50 bare_p99 < <(run bare "http://127.0.0.1:$BARE_PORT/graphql" -s "$lua")
read -r gw_rps gw_p50 gw_p99 < <(run gateway "http://127.0.0.1:$GATEWAY_PORT/graphql" -s "$lua")
ratio=$(awk -v a="$gw_rps" -v b="$bare_rps" 'BEGIN {printf "%.2fx", a / b}')
printf '%-28s %12s %10s %10s %8s\n' "bare axum POST /graphql" "$bare_rps" "$bare_p50" "$bare_p99" "1.00x"
printf '%-28s %12s %10s %10s %8s\n' "gateway products(limit: 20)" "$gw_rps" "$gw_p50" "$gw_p99" "$ratio"
# The in-process burst limiter's cost on a served request (same query, same run): off and on
# alternately (this machine's noise is larger than the difference); ratio = on / off per round.
ab_on=0 ab_off=0
for round in $(seq 1 "${BENCH_AB_ROUNDS:-2}"); do
  read -r off_rps off_p50 off_p99 < <(run gateway-burst-off "http://127.0.0.1:$GATEWAY_OFF_PORT/graphql" -s "$lua")
  read -r on_rps on_p50 on_p99 < <(run gateway-burst-on "http://127.0.0.1:$GATEWAY_PORT/graphql" -s "$lua")
  ratio=$(awk -v a="$on_rps" -v b="$off_rps" 'BEGIN {printf "%.2fx", a / b}')
  printf '%-28s %12s %10s %10s %8s\n' "  burst limiter off, #$round" "$off_rps" "$off_p50" "$off_p99" "1.00x"
  printf '%-28s %12s %10s %10s %8s\n' "  burst limiter on, #$round" "$on_rps" "$on_p50" "$on_p99" "$ratio"
  ab_on=$(awk -v a="$ab_on" -v b="$on_rps" 'BEGIN {print a + b}')
  ab_off=$(awk -v a="$ab_off" -v b="$off_rps" 'BEGIN {print a + b}')
done
awk -v a="$ab_on" -v b="$ab_off" 'BEGIN {printf "  burst limiter on / off, all rounds: %.3fx\n", a / b}'
# A flood from one client (64 connections, default limits): what a refusal costs. The wrk line
# on stderr counts the 429s; the ratio is to the in-process refusals.
read -r fl_rps fl_p50 fl_p99 < <(run flood-burst "http://127.0.0.1:$FLOOD_PORT/graphql" -s "$lua")
read -r fo_rps fo_p50 fo_p99 < <(run flood-redis "http://127.0.0.1:$FLOOD_OFF_PORT/graphql" -s "$lua")
ratio=$(awk -v a="$fo_rps" -v b="$fl_rps" 'BEGIN {printf "%.2fx", a / b}')
printf '%-28s %12s %10s %10s %8s\n' "flood, 429 from burst (50/s)" "$fl_rps" "$fl_p50" "$fl_p99" "1.00x"
printf '%-28s %12s %10s %10s %8s\n' "flood, 429 from Redis budget" "$fo_rps" "$fo_p50" "$fo_p99" "$ratio"
metric() { curl -s "http://127.0.0.1:$(($1 + 1000))/metrics" | awk -v m="$2" 'index($0, m) == 1 {s += $2} END {print s + 0}'; }
printf '\nflood: refused in process %s, by Redis %s (burst on); by Redis %s (burst off)\n' \
  "$(metric "$FLOOD_PORT" 'rate_limited_total{service="gateway",limit="burst"}')" \
  "$(metric "$FLOOD_PORT" 'rate_limited_total{service="gateway",limit="default"}')" \
  "$(metric "$FLOOD_OFF_PORT" 'rate_limited_total{service="gateway",limit="default"}')"
rm -f "$lua"
hits=$(curl -s "http://127.0.0.1:$PRODUCTS_PORT/metrics" | awk '/^cache_requests_total.*result="hit"/ {s += $2} END {print s + 0}')
misses=$(curl -s "http://127.0.0.1:$PRODUCTS_PORT/metrics" | awk '/^cache_requests_total.*result="miss"/ {s += $2} END {print s + 0}')
printf '\ncache: %s hits, %s misses\n' "$hits" "$misses"

# ---- Checkout: create an order and pay it, distinct users and products, the whole platform ----
gw_hits=$(curl -s "http://127.0.0.1:$((GATEWAY_PORT + 1000))/metrics" | awk '/^cache_requests_total.*result="hit"/ {s += $2} END {print s + 0}')
printf 'gateway response cache: %s hits\n' "$gw_hits"
kill $products_pid ${bare_pid:-} "${gateway_pids[@]}" 2>/dev/null || true
wait $products_pid 2>/dev/null || true
[[ $ONLY != graphql ]] || exit 0
(
  unset ECOM_PRODUCTS_DATABASE_URL ECOM_PRODUCTS_HTTP_PORT ECOM_PRODUCTS_GRPC_PORT ECOM_SEED_DEMO
  export ECOM_DATABASE_URL="${DATABASE_URL%/*}/postgres" ECOM_REDIS_URL="$ECOM_TEST_REDIS_URL"
  export ECOM_REDIS_PREFIX="bench-checkout-$$" ECOM_LOG=warn ECOM_LOG_FORMAT=json
  export ECOM_RATE_LIMIT_LOGIN=100000/minute
  # bench-checkout registers one account per connection from one address.
  export ECOM_RATE_LIMIT_REGISTER=100000/minute
  base=${BENCH_CHECKOUT_PORT_BASE:-18200}
  i=1
  for svc in USERS PRODUCTS ORDERS PAYMENTS; do
    export "ECOM_${svc}_HTTP_PORT=$((base + i))" "ECOM_${svc}_GRPC_PORT=$((base + 50 + i))"
    export "BENCH_${svc}_URL=http://127.0.0.1:$((base + i))"
    i=$((i + 1))
  done
  export ECOM_GATEWAY_HTTP_PORT=$((base + i))
  "$BIN/ecomctl" up --bin-dir "$BIN" >/tmp/ecom-bench-checkout.log 2>&1 & up_pid=$!
  trap 'kill -INT $up_pid 2>/dev/null; wait $up_pid 2>/dev/null || true' EXIT
  ready=
  for _ in $(seq 1 900); do   # up to 3 minutes
    curl -sf "$BENCH_PAYMENTS_URL/health/ready" >/dev/null && { ready=1; break; }
    kill -0 $up_pid 2>/dev/null || break
    sleep 0.2
  done
  if [[ -z $ready ]]; then
    echo "the platform did not become ready; ecomctl's log:" >&2
    cat /tmp/ecom-bench-checkout.log >&2
    exit 1
  fi
  seconds=${DURATION%s}
  read -r cps p50 p99 errors < <(BENCH_SECONDS=$seconds BENCH_CONNECTIONS=$CONNECTIONS "$BIN/bench-checkout")
  printf '\ncheckout (POST /orders + POST /payments, %s connections, %s users, %s s)\n\n' "$CONNECTIONS" "$CONNECTIONS" "$seconds"
  printf '%-28s %12s %10s %10s %8s\n' scenario checkouts/s p50 p99 errors
  printf '%-28s %12s %10s %10s %8s\n' "order + pay" "$cps" "$p50" "$p99" "$errors"
)
