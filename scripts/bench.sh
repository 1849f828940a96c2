#!/usr/bin/env bash
# `make bench` (docs/benchmarks.md). Runs inside `ecomctl with-infra` (DATABASE_URL and
# ECOM_TEST_REDIS_URL are provided). Everything is on this machine: wrk -t1 leaves the servers
# the other core(s).
#
# 1. Products reads against a bare axum endpoint serving the same JSON.
# 2. GraphQL through gateways started here (logs at warn): against bare axum, the burst
#    limiter's cost, floods.
# 3. The whole platform as `make up` runs it (`ecomctl up`, default logging through its log
#    pipe, rate budgets raised): idle memory; its gateway with logs on against a twin with logs
#    off; the FastAPI + Strawberry reference; a product page and a search, cached and uncached
#    (ECOM_CACHE=off); checkout direct, through the gateway's REST and its GraphQL; the stock
#    invariant; memory after.
#
# BENCH_ONLY=graphql runs only the gateway parts (2 and 3 without checkout), BENCH_ONLY=checkout
# only the checkout (3 without the gateway measurements).
# Each part runs in a subshell of its own, its settings exported there only (on purpose).
# shellcheck disable=SC2030,SC2031
set -euo pipefail
BIN=${BIN:?release binaries directory}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DURATION=${BENCH_DURATION:-10s}
CONNECTIONS=${BENCH_CONNECTIONS:-64}
ROUNDS=${BENCH_AB_ROUNDS:-2}
PRODUCTS_PORT=${BENCH_PRODUCTS_PORT:-18102}
BARE_PORT=${BENCH_BARE_PORT:-18103}
PRODUCTS_GRPC_PORT=${BENCH_PRODUCTS_GRPC_PORT:-18104}
GATEWAY_PORT=${BENCH_GATEWAY_PORT:-18105}
# More gateways for the burst limiter's cost (ops ports beside them): off, and two floods.
GATEWAY_OFF_PORT=${BENCH_GATEWAY_OFF_PORT:-18106}
FLOOD_PORT=${BENCH_FLOOD_PORT:-18107}
FLOOD_OFF_PORT=${BENCH_FLOOD_OFF_PORT:-18108}
# The platform of part 3 and what is started beside it: ports from here up.
PLATFORM_BASE=${BENCH_PLATFORM_PORT_BASE:-${BENCH_CHECKOUT_PORT_BASE:-18200}}
CHECKOUT_MODES=${BENCH_CHECKOUT_MODES:-direct rest graphql}
# The FastAPI reference's virtualenv, reinstalled when its requirements change.
BENCH_VENV=${BENCH_VENV:-$HOME/.cache/ecom/bench-venv}
ONLY=${BENCH_ONLY:-}
case $ONLY in
  '' | graphql | checkout) ;;
  *) echo "BENCH_ONLY must be graphql or checkout (or unset for everything)" >&2; exit 1 ;;
esac
# Logs of the processes this script starts (the platform's through ecomctl's log pipe).
LOGS=${BENCH_LOG_DIR:-${TMPDIR:-/tmp}/ecom-bench-$$}
mkdir -p "$LOGS"

command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk (or brew install wrk)"; exit 1; }

wait_for() { # url [tries of 0.1 s]
  for _ in $(seq 1 "${2:-100}"); do curl -sf "$1" >/dev/null && return 0; sleep 0.1; done
  echo "no answer from $1" >&2
  return 1
}

# A wrk script POSTing a GraphQL body (a Lua long string: no escapes are processed in it).
lua_for() { # body -> path of the script
  local lua
  lua=$(mktemp --suffix .lua)
  printf 'wrk.method = "POST"\nwrk.body = [==[%s]==]\nwrk.headers["Content-Type"] = "application/json"\n' "$1" >"$lua"
  echo "$lua"
}

gql() { curl -s -H 'content-type: application/json' -d "$2" "$1/graphql"; }

run() { # name url [wrk args...] -> "rps p50 p99"
  local name=$1 url=$2 out rps p50 p99 errors; shift 2
  wrk -t1 -c"$CONNECTIONS" -d2s "$@" "$url" >/dev/null   # warm-up (and warm cache)
  out=$(wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency "$@" "$url")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  errors=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out")
  [[ -z $errors ]] || echo "  ($name: $errors)" >&2
  printf '%s %s %s\n' "$rps" "$p50" "$p99"
}

row() { printf '%-40s %12s %10s %10s %8s\n' "$@"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2fx", a / b}'; }
# wrk's latency ("850.00us", "2.31ms", "1.02s") in milliseconds.
ms() { awk -v v="$1" 'BEGIN {n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /[0-9]s$/ && v !~ /ms$/) n *= 1000; printf "%.2f", n}'; }
# "met" or "MISSED" for value OP aim.
aim() { awk -v v="$1" -v a="$3" -v op="$2" 'BEGIN {ok = (op == ">=") ? v >= a : v <= a; print ok ? "met" : "MISSED"}'; }

GRAPHQL_BODY='{"query":"{ products(limit: 20) { id name price } }"}'
PRODUCT_BODY='{"query":"{ product(id: 1) { id name description price currency stock category } }"}'
# The search of issue 15 (the demo catalogue has one desk lamp; "kit" or "pro" find a few).
SEARCH=${BENCH_SEARCH:-lamp}
[[ $SEARCH =~ ^[A-Za-z0-9\ -]+$ ]] || { echo "BENCH_SEARCH: letters, digits, spaces and dashes only" >&2; exit 1; }
SEARCH_BODY='{"query":"{ products(search: \"'"$SEARCH"'\") { id name price stock category } }"}'

printf '\nwrk -t1 -c%s -d%s, release builds, one machine (%s cores)\n' "$CONNECTIONS" "$DURATION" "$(nproc)"

# ---- 1 and 2: Products and gateways started here, access logs off (ECOM_LOG=warn) ----
if [[ $ONLY != checkout ]]; then (
  db_url="${DATABASE_URL%/*}/ecom_products_bench"
  export ECOM_PRODUCTS_DATABASE_URL="$db_url" ECOM_REDIS_URL="$ECOM_TEST_REDIS_URL" ECOM_REDIS_PREFIX="bench-$$"
  export ECOM_PRODUCTS_HTTP_PORT=$PRODUCTS_PORT ECOM_PRODUCTS_GRPC_PORT=$PRODUCTS_GRPC_PORT ECOM_BIND_ADDRESS=127.0.0.1
  export ECOM_SEED_DEMO=true ECOM_LOG=warn ECOM_CACHE_TTL_SECONDS=3600

  "$BIN/products" migrate >/dev/null
  "$BIN/products" & products_pid=$!
  gateway_pids=()
  trap 'kill $products_pid ${bare_pid:-} "${gateway_pids[@]}" 2>/dev/null || true' EXIT
  wait_for "http://127.0.0.1:$PRODUCTS_PORT/health/ready"
  # A gateway in front of Products (the other services are not needed for catalogue reads), its
  # ops port (/metrics) at port + 1000.
  start_gateway() { # port burst default-budget redis-prefix
    ECOM_GATEWAY_HTTP_PORT=$1 ECOM_GATEWAY_OPS_PORT=$(($1 + 1000)) ECOM_RATE_LIMIT_BURST=$2 \
      ECOM_RATE_LIMIT_DEFAULT=$3 ECOM_REDIS_PREFIX=$4 \
      ECOM_PRODUCTS_GRPC_URL="http://127.0.0.1:$PRODUCTS_GRPC_PORT" "$BIN/gateway" & gateway_pids+=($!)
    wait_for "http://127.0.0.1:$1/health/live"
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
  "$BIN/bench-bare" "http://127.0.0.1:$PRODUCTS_PORT" "$BARE_PORT" "http://127.0.0.1:$GATEWAY_PORT" & bare_pid=$!
  wait_for "http://127.0.0.1:$BARE_PORT/products/1"

  # Same bytes on both sides (the comparison is only fair if so).
  cmp <(curl -s "http://127.0.0.1:$PRODUCTS_PORT/products?limit=20") <(curl -s "http://127.0.0.1:$BARE_PORT/products?limit=20")
  cmp <(curl -s "http://127.0.0.1:$PRODUCTS_PORT/products/1") <(curl -s "http://127.0.0.1:$BARE_PORT/products/1")
  cmp <(gql "http://127.0.0.1:$GATEWAY_PORT" "$GRAPHQL_BODY") <(gql "http://127.0.0.1:$BARE_PORT" "$GRAPHQL_BODY")
  lua=$(lua_for "$GRAPHQL_BODY")

  printf '\nProducts and gateways started by the script, access logs off (ECOM_LOG=warn), warm cache\n\n'
  row endpoint req/s p50 p99 ratio
  paths=("/products?limit=20" "/products/1")
  [[ $ONLY != graphql ]] || paths=()
  for path in "${paths[@]}"; do
    read -r bare_rps bare_p50 bare_p99 < <(run bare "http://127.0.0.1:$BARE_PORT$path")
    read -r svc_rps svc_p50 svc_p99 < <(run products "http://127.0.0.1:$PRODUCTS_PORT$path")
    row "bare axum $path" "$bare_rps" "$bare_p50" "$bare_p99" "1.00x"
    row "products $path" "$svc_rps" "$svc_p50" "$svc_p99" "$(ratio "$svc_rps" "$bare_rps")"
  done
  read -r bare_rps bare_p50 bare_p99 < <(run bare "http://127.0.0.1:$BARE_PORT/graphql" -s "$lua")
  read -r gw_rps gw_p50 gw_p99 < <(run gateway "http://127.0.0.1:$GATEWAY_PORT/graphql" -s "$lua")
  row "bare axum POST /graphql" "$bare_rps" "$bare_p50" "$bare_p99" "1.00x"
  row "gateway products(limit: 20)" "$gw_rps" "$gw_p50" "$gw_p99" "$(ratio "$gw_rps" "$bare_rps")"
  # The in-process burst limiter's cost on a served request (same query, same run): off and on
  # alternately (this machine's noise is larger than the difference); ratio = on / off per round.
  ab_on=0 ab_off=0
  for round in $(seq 1 "$ROUNDS"); do
    read -r off_rps off_p50 off_p99 < <(run gateway-burst-off "http://127.0.0.1:$GATEWAY_OFF_PORT/graphql" -s "$lua")
    read -r on_rps on_p50 on_p99 < <(run gateway-burst-on "http://127.0.0.1:$GATEWAY_PORT/graphql" -s "$lua")
    row "  burst limiter off, #$round" "$off_rps" "$off_p50" "$off_p99" "1.00x"
    row "  burst limiter on, #$round" "$on_rps" "$on_p50" "$on_p99" "$(ratio "$on_rps" "$off_rps")"
    ab_on=$(awk -v a="$ab_on" -v b="$on_rps" 'BEGIN {print a + b}')
    ab_off=$(awk -v a="$ab_off" -v b="$off_rps" 'BEGIN {print a + b}')
  done
  awk -v a="$ab_on" -v b="$ab_off" 'BEGIN {printf "  burst limiter on / off, all rounds: %.3fx\n", a / b}'
  # A flood from one client (64 connections, default limits): what a refusal costs. The wrk line
  # on stderr counts the 429s; the ratio is to the in-process refusals.
  read -r fl_rps fl_p50 fl_p99 < <(run flood-burst "http://127.0.0.1:$FLOOD_PORT/graphql" -s "$lua")
  read -r fo_rps fo_p50 fo_p99 < <(run flood-redis "http://127.0.0.1:$FLOOD_OFF_PORT/graphql" -s "$lua")
  row "flood, 429 from burst (50/s)" "$fl_rps" "$fl_p50" "$fl_p99" "1.00x"
  row "flood, 429 from Redis budget" "$fo_rps" "$fo_p50" "$fo_p99" "$(ratio "$fo_rps" "$fl_rps")"
  metric() { curl -s "http://127.0.0.1:$(($1 + 1000))/metrics" | awk -v m="$2" 'index($0, m) == 1 {s += $2} END {print s + 0}'; }
  printf '\nflood: refused in process %s, by Redis %s (burst on); by Redis %s (burst off)\n' \
    "$(metric "$FLOOD_PORT" 'rate_limited_total{service="gateway",limit="burst"}')" \
    "$(metric "$FLOOD_PORT" 'rate_limited_total{service="gateway",limit="default"}')" \
    "$(metric "$FLOOD_OFF_PORT" 'rate_limited_total{service="gateway",limit="default"}')"
  rm -f "$lua"
  hits=$(curl -s "http://127.0.0.1:$PRODUCTS_PORT/metrics" | awk '/^cache_requests_total.*result="hit"/ {s += $2} END {print s + 0}')
  misses=$(curl -s "http://127.0.0.1:$PRODUCTS_PORT/metrics" | awk '/^cache_requests_total.*result="miss"/ {s += $2} END {print s + 0}')
  printf 'cache: %s hits, %s misses\n' "$hits" "$misses"
  gw_hits=$(curl -s "http://127.0.0.1:$((GATEWAY_PORT + 1000))/metrics" | awk '/^cache_requests_total.*result="hit"/ {s += $2} END {print s + 0}')
  printf 'gateway response cache: %s hits\n' "$gw_hits"
); fi

# ---- 3: the whole platform as `make up` runs it ----
(
  unset ECOM_LOG ECOM_LOG_FORMAT
  export ECOM_DATABASE_URL="${DATABASE_URL%/*}/postgres" ECOM_REDIS_URL="$ECOM_TEST_REDIS_URL"
  export ECOM_REDIS_PREFIX="bench-up-$$"
  # Budgets raised: the load comes from one address (and the checkout's 64 users would each
  # spend 1200/minute in a few seconds); every request still passes both limiters.
  export ECOM_RATE_LIMIT_DEFAULT=100000000/minute ECOM_RATE_LIMIT_BURST=100000000/second
  export ECOM_RATE_LIMIT_LOGIN=100000/minute ECOM_RATE_LIMIT_REGISTER=100000/minute
  i=1
  for svc in USERS PRODUCTS ORDERS PAYMENTS; do
    export "ECOM_${svc}_HTTP_PORT=$((PLATFORM_BASE + i))" "ECOM_${svc}_GRPC_PORT=$((PLATFORM_BASE + 50 + i))"
    export "BENCH_${svc}_URL=http://127.0.0.1:$((PLATFORM_BASE + i))"
    i=$((i + 1))
  done
  export ECOM_GATEWAY_HTTP_PORT=$((PLATFORM_BASE + 5)) ECOM_GATEWAY_OPS_PORT=$((PLATFORM_BASE + 6))
  export ECOM_PROMETHEUS_PORT=$((PLATFORM_BASE + 7))
  export BENCH_GATEWAY_URL="http://127.0.0.1:$ECOM_GATEWAY_HTTP_PORT"
  gateway=$BENCH_GATEWAY_URL
  # Beside the platform: its gateway's twin with logs off, bare axum, the FastAPI reference, and
  # Products + gateway with every cache off.
  quiet_port=$((PLATFORM_BASE + 10)) bare_port=$((PLATFORM_BASE + 12)) fastapi_port=$((PLATFORM_BASE + 13))
  nocache_products_port=$((PLATFORM_BASE + 14)) nocache_products_grpc=$((PLATFORM_BASE + 64))
  nocache_gateway_port=$((PLATFORM_BASE + 15))

  # ecomctl's stdout (every service's log lines, `name | line`) goes to a file; it is emptied
  # after each measurement, so a long run does not fill the disk.
  up_log="$LOGS/ecomctl-up.log"
  : >"$up_log"
  "$BIN/ecomctl" up --bin-dir "$BIN" --data-dir "$LOGS/up" >>"$up_log" 2>&1 & up_pid=$!
  side_pids=()
  # shellcheck disable=SC2329 # called by the trap
  stop_all() {
    kill "${side_pids[@]}" 2>/dev/null || true
    kill -INT "$up_pid" 2>/dev/null || true
    wait "$up_pid" 2>/dev/null || true
  }
  trap stop_all EXIT
  ready=
  for _ in $(seq 1 900); do   # up to 3 minutes
    curl -sf "$gateway/health/ready" >/dev/null && { ready=1; break; }
    kill -0 $up_pid 2>/dev/null || break
    sleep 0.2
  done
  if [[ -z $ready ]]; then
    echo "the platform did not become ready; ecomctl's log:" >&2
    cat "$up_log" >&2
    exit 1
  fi
  service_pid() { ps -o pid=,comm= --ppid "$up_pid" | awk -v n="$1" '$2 == n {print $1}'; }
  SERVICES=(users products orders payments gateway)
  rss_row() { # label: the services' resident memory (VmRSS) in MiB, and their sum
    local total=0 kb cells=()
    for s in "${SERVICES[@]}"; do
      kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$(service_pid "$s")/status")
      total=$((total + kb))
      cells+=("$(awk -v k="$kb" 'BEGIN {printf "%.1f", k / 1024}')")
    done
    printf '%-22s %9s %9s %9s %9s %9s %9s\n' "$1" "${cells[@]}" "$(awk -v k="$total" 'BEGIN {printf "%.1f", k / 1024}')"
  }
  sleep 2   # idle after start
  idle_rss=$(rss_row "idle after start")
  # A process beside the platform with the environment `ecomctl up` gave one of its services,
  # changed only by the given settings; its output goes to a file of its own.
  start_like() { # service log-name settings...
    local environ=() pid
    pid=$(service_pid "$1")
    mapfile -d '' environ <"/proc/$pid/environ"
    env -i "${environ[@]}" "${@:3}" "$BIN/$1" >>"$LOGS/$2.log" 2>&1 & side_pids+=($!)
  }
  truncate -s 0 "$up_log"

  if [[ $ONLY != checkout ]]; then
    start_like gateway gateway-logs-off ECOM_LOG=warn ECOM_GATEWAY_HTTP_PORT=$quiet_port ECOM_GATEWAY_OPS_PORT=$((quiet_port + 1))
    quiet="http://127.0.0.1:$quiet_port"
    wait_for "$quiet/health/ready" 300
    "$BIN/bench-bare" "$BENCH_PRODUCTS_URL" "$bare_port" "$gateway" & side_pids+=($!)
    bare="http://127.0.0.1:$bare_port"
    wait_for "$bare/products/1"
    cmp <(gql "$gateway" "$GRAPHQL_BODY") <(gql "$bare" "$GRAPHQL_BODY")
    cmp <(gql "$quiet" "$GRAPHQL_BODY") <(gql "$bare" "$GRAPHQL_BODY")
    lua=$(lua_for "$GRAPHQL_BODY")

    printf '\nthe platform as "make up" runs it (ecomctl up: default logging, ECOM_LOG_FORMAT=%s, through ecomctl'"'"'s log pipe to a file)\n' \
      "$(tr '\0' '\n' <"/proc/$(service_pid gateway)/environ" | awk -F= '$1 == "ECOM_LOG_FORMAT" {print $2}')"
    printf 'gateway logs on (the platform'"'"'s) vs off (ECOM_LOG=warn, same settings otherwise), alternately, %s rounds\n\n' "$ROUNDS"
    row endpoint req/s p50 p99 "vs bare"
    sum_bare=0 sum_on=0 sum_off=0 worst_p99=0
    for round in $(seq 1 "$ROUNDS"); do
      read -r b_rps b_p50 b_p99 < <(run bare "$bare/graphql" -s "$lua")
      read -r off_rps off_p50 off_p99 < <(run gateway-logs-off "$quiet/graphql" -s "$lua")
      read -r on_rps on_p50 on_p99 < <(run gateway-logs-on "$gateway/graphql" -s "$lua")
      truncate -s 0 "$up_log"
      row "bare axum POST /graphql, #$round" "$b_rps" "$b_p50" "$b_p99" "1.00x"
      row "  gateway logs off, #$round" "$off_rps" "$off_p50" "$off_p99" "$(ratio "$off_rps" "$b_rps")"
      row "  gateway logs on, #$round" "$on_rps" "$on_p50" "$on_p99" "$(ratio "$on_rps" "$b_rps")"
      sum_bare=$(awk -v a="$sum_bare" -v b="$b_rps" 'BEGIN {print a + b}')
      sum_off=$(awk -v a="$sum_off" -v b="$off_rps" 'BEGIN {print a + b}')
      sum_on=$(awk -v a="$sum_on" -v b="$on_rps" 'BEGIN {print a + b}')
      worst_p99=$(awk -v a="$worst_p99" -v b="$(ms "$on_p99")" 'BEGIN {print (b > a) ? b : a}')
    done
    on_ratio=$(awk -v a="$sum_on" -v b="$sum_bare" 'BEGIN {printf "%.3f", a / b}')
    off_ratio=$(awk -v a="$sum_off" -v b="$sum_bare" 'BEGIN {printf "%.3f", a / b}')
    cost=$(awk -v a="$sum_on" -v b="$sum_off" 'BEGIN {printf "%.1f", 100 * (1 - a / b)}')
    printf '\n  all rounds: logs on %.3fx bare (aim >= 0.6x: %s), logs off %.3fx bare\n' "$on_ratio" "$(aim "$on_ratio" '>=' 0.6)" "$off_ratio"
    printf '  gateway p99 with logs on, worst round: %s ms (aim <= 10 ms: %s)\n' "$worst_p99" "$(aim "$worst_p99" '<=' 10)"
    printf '  logging cost = 1 - on/off: %s%% (aim <= 10%%: %s)\n' "$cost" "$(aim "$cost" '<=' 10)"

    # ---- FastAPI + Strawberry, from memory, parser and validation caches on ----
    reqs="$ROOT/bench/reference/requirements.txt"
    stamp="$BENCH_VENV/.stamp-$(cksum <"$reqs" | cut -d' ' -f1)"
    if [[ ! -f $stamp ]]; then
      echo "installing the FastAPI reference into $BENCH_VENV" >&2
      python3 -m venv "$BENCH_VENV"
      "$BENCH_VENV/bin/pip" install --quiet --disable-pip-version-check -r "$reqs" >&2
      rm -f "$BENCH_VENV"/.stamp-*
      touch "$stamp"
    fi
    # One worker per core, uvloop and httptools, no access log.
    (cd "$ROOT/bench/reference" && PRODUCTS_URL=$BENCH_PRODUCTS_URL exec "$BENCH_VENV/bin/uvicorn" app:app \
      --host 127.0.0.1 --port "$fastapi_port" --workers "$(nproc)" --loop uvloop --http httptools \
      --no-access-log --log-level warning) >>"$LOGS/fastapi.log" 2>&1 & side_pids+=($!)
    fastapi="http://127.0.0.1:$fastapi_port"
    for _ in $(seq 1 300); do gql "$fastapi" "$GRAPHQL_BODY" 2>/dev/null | grep -q '"data"' && break; sleep 0.1; done
    # Every worker loads the catalogue at start: ask a few times, every answer must match.
    for _ in $(seq 1 8); do
      "$BENCH_VENV/bin/python" -c 'import json, sys; a, b = (json.loads(x)["data"] for x in sys.argv[1:]); sys.exit(a != b or len(a["products"]) != 20)' \
        "$(gql "$gateway" "$GRAPHQL_BODY")" "$(gql "$fastapi" "$GRAPHQL_BODY")" ||
        { echo "the FastAPI reference and the gateway answer different data" >&2; exit 1; }
    done
    read -r fa_rps fa_p50 fa_p99 < <(run fastapi "$fastapi/graphql" -s "$lua")
    rm -f "$lua"
    on_rps_avg=$(awk -v a="$sum_on" -v n="$ROUNDS" 'BEGIN {printf "%.2f", a / n}')
    fa_ratio=$(awk -v a="$on_rps_avg" -v b="$fa_rps" 'BEGIN {printf "%.1f", a / b}')
    printf '\n'
    row "FastAPI + Strawberry ($(nproc) workers)" "$fa_rps" "$fa_p50" "$fa_p99" ""
    printf '  gateway (logs on, all rounds) / FastAPI: %sx (aim >= 40x: %s)\n' "$fa_ratio" "$(aim "$fa_ratio" '>=' 40)"

    # ---- A product page and a search: cached (the platform) and uncached (ECOM_CACHE=off) ----
    start_like products products-nocache ECOM_CACHE=off ECOM_PRODUCTS_HTTP_PORT=$nocache_products_port \
      ECOM_PRODUCTS_GRPC_PORT=$nocache_products_grpc
    wait_for "http://127.0.0.1:$nocache_products_port/health/ready" 300
    start_like gateway gateway-nocache ECOM_CACHE=off ECOM_GATEWAY_HTTP_PORT=$nocache_gateway_port \
      ECOM_GATEWAY_OPS_PORT=$((nocache_gateway_port + 1)) ECOM_PRODUCTS_GRPC_URL="http://127.0.0.1:$nocache_products_grpc" \
      ECOM_PRODUCTS_HTTP_URL="http://127.0.0.1:$nocache_products_port"
    nocache="http://127.0.0.1:$nocache_gateway_port"
    wait_for "$nocache/health/ready" 300
    printf '\nproduct page and search through the gateway, logs on: cached (the platform) and uncached (ECOM_CACHE=off: Products and gateway)\n\n'
    row query req/s p50 p99 "vs cached"
    for what in product search; do
      if [[ $what == product ]]; then body=$PRODUCT_BODY; label="product(id: 1)"; else body=$SEARCH_BODY; label="products(search: \"$SEARCH\")"; fi
      cmp <(gql "$gateway" "$body") <(gql "$nocache" "$body")
      found=$(gql "$gateway" "$body" | "$BENCH_VENV/bin/python" -c 'import json, sys; d = json.load(sys.stdin)["data"]; v = next(iter(d.values())); print(len(v) if isinstance(v, list) else int(v is not None))')
      [[ $found -gt 0 ]] || { echo "$label found nothing" >&2; exit 1; }
      lua=$(lua_for "$body")
      read -r c_rps c_p50 c_p99 < <(run "$what-cached" "$gateway/graphql" -s "$lua")
      read -r u_rps u_p50 u_p99 < <(run "$what-uncached" "$nocache/graphql" -s "$lua")
      truncate -s 0 "$up_log"
      rm -f "$lua"
      row "$label cached ($found found)" "$c_rps" "$c_p50" "$c_p99" "1.00x"
      row "$label uncached" "$u_rps" "$u_p50" "$u_p99" "$(ratio "$u_rps" "$c_rps")"
    done
    hits=$(curl -s "http://127.0.0.1:$nocache_products_port/metrics" | awk '/^cache_requests_total.*result="hit"/ {s += $2} END {print s + 0}')
    gw_hits=$(curl -s "http://127.0.0.1:$((nocache_gateway_port + 1))/metrics" | awk '/^cache_requests_total.*result="hit"/ {s += $2} END {print s + 0}')
    printf '  cache hits with ECOM_CACHE=off: Products %s, gateway %s\n' "$hits" "$gw_hits"
    kill "${side_pids[@]}" 2>/dev/null || true
    wait "${side_pids[@]}" 2>/dev/null || true
    side_pids=()
  fi

  if [[ $ONLY != graphql ]]; then
    seconds=${DURATION%s}
    initial=1000000
    printf '\ncheckout: order then pay (idempotency keys), %s connections, %s users, %s s, the platform as "make up" runs it\n\n' "$CONNECTIONS" "$CONNECTIONS" "$seconds"
    printf '%-36s %12s %10s %10s %10s %10s %8s\n' "way" checkouts/s "p50" "p99" "req p50" "req p99" errors
    for mode in $CHECKOUT_MODES; do
      case $mode in
        direct) label="services' REST (direct)" ;;
        rest) label="gateway /api/orders, /api/payments" ;;
        graphql) label="gateway createOrder, payOrder" ;;
        *) echo "unknown checkout mode $mode" >&2; exit 1 ;;
      esac
      result=$(BENCH_MODE=$mode BENCH_RUN="$$-$mode" BENCH_STOCK=$initial BENCH_SECONDS=$seconds \
        BENCH_CONNECTIONS=$CONNECTIONS "$BIN/bench-checkout")
      read -r cps p50 p99 rp50 rp99 errors <<<"$result"
      truncate -s 0 "$up_log"
      printf '%-36s %12s %10s %10s %10s %10s %8s\n' "$label" "$cps" "$p50" "$p99" "$rp50" "$rp99" "$errors"
      printf '  aims: >= 500/s %s, request p99 <= 250 ms %s, 0 errors %s\n' "$(aim "$cps" '>=' 500)" \
        "$(aim "$(ms "$rp99")" '<=' 250)" "$(aim "$errors" '<=' 0)"
    done

    # The stock invariant, per product this run created: initial = available + reserved + sold,
    # where available + reserved = on_hand and sold = its committed reservations; reserved is its
    # active reservations; and, from Orders' side, sold = the units of its paid orders and
    # reserved = those of its orders awaiting payment. A payment's commit may trail its answer:
    # checked again for up to 10 s before failing.
    products_db="${DATABASE_URL%/*}/ecom_products" orders_db="${DATABASE_URL%/*}/ecom_orders"
    verdict=
    for _ in $(seq 1 20); do
      stock=$(psql "$products_db" -XAtqF ' ' -c "SELECT p.id, p.on_hand, p.reserved,
          coalesce(sum(l.quantity) FILTER (WHERE r.status = 'committed'), 0),
          coalesce(sum(l.quantity) FILTER (WHERE r.status = 'active'), 0)
        FROM products p
        LEFT JOIN reservation_lines l ON l.product_id = p.id
        LEFT JOIN reservations r ON r.order_id = l.order_id
        WHERE p.name LIKE 'Bench $$-%' GROUP BY p.id ORDER BY p.id")
      ids=$(awk '{printf "%s%s", sep, $1; sep = ","}' <<<"$stock")
      [[ -n $ids ]] || { echo "stock invariant: no products of this run found" >&2; exit 1; }
      ordered=$(psql "$orders_db" -XAtqF ' ' -c "SELECT i.product_id,
          coalesce(sum(i.quantity) FILTER (WHERE o.status = 'paid'), 0),
          coalesce(sum(i.quantity) FILTER (WHERE o.status = 'pending_payment'), 0)
        FROM order_items i JOIN orders o ON o.id = i.order_id
        WHERE i.product_id IN ($ids) GROUP BY i.product_id")
      verdict=$(awk -v initial=$initial '
        NR == FNR { if (NF) { paid[$1] = $2; pending[$1] = $3 }; next }
        {
          n++; on_hand = $2; reserved = $3; sold = $4; held = $5; units += sold
          available = on_hand - reserved
          if (available + reserved + sold != initial || reserved != held || sold != paid[$1] + 0 || reserved != pending[$1] + 0) {
            bad++
            if (bad <= 5) printf "  product %s: initial %s, available %s + reserved %s + sold %s = %s; active reservations %s; paid units %s, awaiting payment %s\n", $1, initial, available, reserved, sold, available + reserved + sold, held, paid[$1] + 0, pending[$1] + 0
          }
        }
        END { if (bad) printf "BROKEN for %d of %d products\n", bad, n; else printf "holds for %d products (%d units sold, each a paid order item)\n", n, units }
      ' <(printf '%s\n' "$ordered") <(printf '%s\n' "$stock"))
      [[ $verdict == *BROKEN* ]] || break
      sleep 0.5
    done
    printf '\nstock invariant (initial = available + reserved + sold): %s\n' "$(tail -n 1 <<<"$verdict")"
    if [[ $verdict == *BROKEN* ]]; then
      head -n -1 <<<"$verdict" >&2
      echo "the stock invariant does not hold: failing the bench" >&2
      exit 1
    fi
  fi

  printf '\nmemory of the services started by ecomctl up (VmRSS, MiB; aim for the idle sum <= 150)\n\n'
  printf '%-22s %9s %9s %9s %9s %9s %9s\n' "" "${SERVICES[@]}" sum
  printf '%s\n' "$idle_rss"
  [[ $ONLY == graphql ]] || rss_row "after the checkouts"
  idle_sum=$(awk '{print $NF}' <<<"$idle_rss")
  printf '  idle sum %s MiB: %s\n' "$idle_sum" "$(aim "$idle_sum" '<=' 150)"
)
rm -rf "$LOGS"
