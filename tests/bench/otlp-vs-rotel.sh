#!/usr/bin/env bash
# The OTLP receive-path benchmark: Magpie (otlp → batch → blackhole,
# configs/bench-blackhole.yaml) against Rotel (`rotel-agent --exporter
# blackhole`) under the same load from `otlp_loadgen`.
#
# For each server, protocol (gRPC, HTTP/protobuf), request size (1000 and 25
# spans per request) and rate (the maximum, then a fixed 10k spans/s) it
# starts a fresh server pinned to one core, waits, reads its idle RSS, warms
# up, and runs the generator pinned to another core: at the maximum rate for
# spans per CPU-second of the server and peak RSS, at the fixed rate for the
# server's CPU% and RSS. Server CPU time comes from /proc/<pid>/stat
# (utime + stime of all threads) before and after each run, RSS from
# /proc/<pid>/status (VmRSS, VmHWM, and RssFile + RssAnon). It ends with the
# prost decode-only ceiling on one core and a table with the Magpie/Rotel
# ratios. With REPEAT > 1 every case runs that many times, Magpie and Rotel
# alternating, and the table shows the median of each figure with the
# spread of the figures the targets are about listed under it.
#
# Usage: tests/bench/otlp-vs-rotel.sh
# Environment (all optional):
#   CARGO_TARGET_DIR  where cargo builds (default: target/)
#   DURATION          seconds per measured run (default 15)
#   REPEAT            runs of every case; the table shows medians (default 3)
#   WARMUP            seconds of load before each measured run (default 2)
#   IDLE_WAIT         seconds between start and the idle RSS reading (default 3)
#   FIXED_RATE        spans per second of the fixed-rate runs (default 10000)
#   CONCURRENCY       requests in flight (default 8)
#   SERVER_CPU        core the servers are pinned to (default 1)
#   GEN_CPU           core the generator is pinned to (default 0)
#   ROTEL_VERSION     the rotel wheel installed from PyPI (default 0.0.1a15)
#   SERVERS           which servers to run (default "magpie rotel")
#   PROTOCOLS         default "grpc http"; SIZES default "1000 25"
#   MAGPIE_ENV        extra environment for magpie, e.g. "MIMALLOC_PURGE_DELAY=0"
#   MAGPIE_BIN        a magpie binary to measure instead of building one
set -euo pipefail
cd "$(dirname "$0")/../.."

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

TARGET_DIR=${CARGO_TARGET_DIR:-target}
DURATION=${DURATION:-15}
REPEAT=${REPEAT:-3}
WARMUP=${WARMUP:-2}
IDLE_WAIT=${IDLE_WAIT:-3}
FIXED_RATE=${FIXED_RATE:-10000}
CONCURRENCY=${CONCURRENCY:-8}
SERVER_CPU=${SERVER_CPU:-1}
GEN_CPU=${GEN_CPU:-0}
ROTEL_VERSION=${ROTEL_VERSION:-0.0.1a15}
SERVERS=${SERVERS:-magpie rotel}
PROTOCOLS=${PROTOCOLS:-grpc http}
SIZES=${SIZES:-1000 25}
MAGPIE_ENV=${MAGPIE_ENV:-}
MAGPIE_BIN=${MAGPIE_BIN:-}

for tool in taskset python3 curl dd sync; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is missing (Debian: apt-get install util-linux python3 python3-venv curl)"
done
[ "$(nproc --all)" -ge 2 ] || die "the bench pins server and generator to different cores and needs at least 2"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/magpie-bench.XXXXXX")
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
}
trap cleanup EXIT

if [ -z "$MAGPIE_BIN" ]; then
  say "building magpie (release)"
  cargo build --release -p magpie --bin magpie
fi
say "building otlp_loadgen (release)"
cargo build --release -p magpie-tests --bin otlp_loadgen
MAGPIE=${MAGPIE_BIN:-$TARGET_DIR/release/magpie}
LOADGEN="$TARGET_DIR/release/otlp_loadgen"

VENV="$TARGET_DIR/bench/rotel-venv"
if [[ " $SERVERS " == *" rotel "* ]]; then
  if [ ! -x "$VENV/bin/python" ]; then
    say "installing rotel $ROTEL_VERSION into $VENV"
    python3 -m venv "$VENV" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
  fi
  "$VENV/bin/pip" install --quiet "rotel==$ROTEL_VERSION"
  ROTEL=$("$VENV/bin/python" -c 'import os, rotel; print(os.path.join(os.path.dirname(rotel.__file__), "rotel-agent"))')
  [ -x "$ROTEL" ] || die "the rotel wheel has no rotel-agent at $ROTEL"
  say "rotel: $("$ROTEL" --version)"
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

wait_port() { # port
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# CPU seconds (user + system, all threads) of a process, in clock ticks.
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
# A /proc/<pid>/status field in KiB (VmRSS, VmHWM).
status_kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
TICKS=$(getconf CLK_TCK)

# Drops a binary's pages from the page cache, so that every server starts
# as a daemon does after a reboot: its code read in by its own page faults.
# A binary just written by `cp` or an installer sits in the cache in large
# folios and starts with about 1 MiB more of its code resident; one written
# by the linker, in small ones. Evicting both servers' binaries before each
# start measures them alike.
evict_from_page_cache() { # file
  sync "$1"
  dd if="$1" iflag=nocache count=0 status=none
}

start_server() { # server; sets SERVER_PID, GRPC_PORT, HTTP_PORT
  GRPC_PORT=$(free_port)
  HTTP_PORT=$(free_port)
  case "$1" in
    magpie) evict_from_page_cache "$MAGPIE" ;;
    rotel) evict_from_page_cache "$ROTEL" ;;
  esac
  case "$1" in
    magpie)
      TELEMETRY_PORT=$(free_port)
      cat >"$WORK/ports.yaml" <<EOF
receivers:
  otlp:
    protocols:
      grpc: { endpoint: 127.0.0.1:$GRPC_PORT }
      http: { endpoint: 127.0.0.1:$HTTP_PORT }
service:
  telemetry:
    metrics: { address: 127.0.0.1:$TELEMETRY_PORT }
EOF
      # shellcheck disable=SC2086
      env $MAGPIE_ENV taskset -c "$SERVER_CPU" "$MAGPIE" -c configs/bench-blackhole.yaml -c "$WORK/ports.yaml" \
        >"$WORK/magpie.log" 2>&1 &
      ;;
    rotel)
      taskset -c "$SERVER_CPU" "$ROTEL" start --exporter blackhole \
        --otlp-grpc-endpoint "127.0.0.1:$GRPC_PORT" --otlp-http-endpoint "127.0.0.1:$HTTP_PORT" \
        --pid-file "$WORK/rotel.pid" --log-file "$WORK/rotel.log" >"$WORK/rotel.out" 2>&1 &
      ;;
  esac
  SERVER_PID=$!
  wait_port "$GRPC_PORT" && wait_port "$HTTP_PORT" || die "$1 did not start listening; see $WORK/$1.log"
}

stop_server() {
  kill -TERM "$SERVER_PID"
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}

# Spans Magpie's blackhole exporter has counted, from /metrics.
magpie_exported() {
  curl -fsS "http://127.0.0.1:$TELEMETRY_PORT/metrics" |
    awk '/^magpie_exporter_exported_items_total/ && /blackhole/ { n += $NF } END { print n + 0 }'
}

loadgen() { # protocol port spans rate seconds; prints the generator's line
  taskset -c "$GEN_CPU" "$LOADGEN" send --protocol "$1" --endpoint "127.0.0.1:$2" \
    --spans-per-request "$3" --rate "$4" --duration "${5}s" --concurrency "$CONCURRENCY"
}

field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p"; }

RESULTS="$WORK/results.tsv"
printf 'run\tserver\tprotocol\tspans_per_request\tmode\tspans\terrors\tcpu_s\twall_s\tspans_per_cpu_s\tcpu_pct\trss_kib\thwm_kib\tidle_kib\tfile_kib\tanon_kib\n' >"$RESULTS"

run_case() { # run server protocol size mode: one fresh server, idle RSS, warm-up, one measured run
  local run=$1 server=$2 protocol=$3 size=$4 mode=$5 port idle line t0 t1 spans errors wall cpu sent_total=0
  start_server "$server"
  if [ "$protocol" = grpc ]; then port=$GRPC_PORT; else port=$HTTP_PORT; fi
  sleep "$IDLE_WAIT"
  idle=$(status_kib "$SERVER_PID" VmRSS)
  if [ "$WARMUP" != 0 ]; then
    line=$(loadgen "$protocol" "$port" "$size" "$mode" "$WARMUP")
    sent_total=$(field spans <<<"$line")
  fi
  t0=$(cpu_ticks "$SERVER_PID")
  line=$(loadgen "$protocol" "$port" "$size" "$mode" "$DURATION")
  t1=$(cpu_ticks "$SERVER_PID")
  spans=$(field spans <<<"$line")
  errors=$(field errors <<<"$line")
  wall=$(field seconds <<<"$line")
  sent_total=$((sent_total + spans))
  cpu=$(awk -v a="$t0" -v b="$t1" -v t="$TICKS" 'BEGIN { printf "%.2f", (b - a) / t }')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$run" "$server" "$protocol" "$size" "$mode" \
    "$spans" "$errors" "$cpu" "$wall" \
    "$(awk -v s="$spans" -v c="$cpu" 'BEGIN { printf "%.0f", (c > 0 ? s / c : 0) }')" \
    "$(awk -v c="$cpu" -v w="$wall" 'BEGIN { printf "%.1f", 100 * c / w }')" \
    "$(status_kib "$SERVER_PID" VmRSS)" "$(status_kib "$SERVER_PID" VmHWM)" "$idle" \
    "$(status_kib "$SERVER_PID" RssFile)" "$(status_kib "$SERVER_PID" RssAnon)" >>"$RESULTS"
  say "run $run/$REPEAT: $server $protocol $size/req rate=$mode: $line cpu_s=$cpu idle_kib=$idle"
  if [ "$server" = magpie ]; then
    # The batch processor flushes within its 200ms timeout.
    sleep 1
    local exported
    exported=$(magpie_exported)
    [ "$exported" = "$sent_total" ] ||
      die "magpie's blackhole counted $exported spans but the generator had $sent_total accepted"
  fi
  stop_server
}

# Rotel's blackhole counts nothing we can read, so one short run per protocol
# with its debug log on checks that it decodes every span it acknowledges.
verify_rotel() { # protocol
  local protocol=$1 port logged line
  GRPC_PORT=$(free_port)
  HTTP_PORT=$(free_port)
  "$ROTEL" start --exporter blackhole --debug-log traces --debug-log-verbosity basic \
    --otlp-grpc-endpoint "127.0.0.1:$GRPC_PORT" --otlp-http-endpoint "127.0.0.1:$HTTP_PORT" \
    --pid-file "$WORK/rotel-verify.pid" --log-file "$WORK/rotel-verify.log" >"$WORK/rotel-verify.out" 2>&1 &
  SERVER_PID=$!
  wait_port "$GRPC_PORT" && wait_port "$HTTP_PORT" || die "rotel did not start listening"
  if [ "$protocol" = grpc ]; then port=$GRPC_PORT; else port=$HTTP_PORT; fi
  line=$(loadgen "$protocol" "$port" 100 2000 2)
  sleep 1
  stop_server
  # Its debug log has one "Received traces. ... spans=N" line per request (with colour codes).
  logged=$(cat "$WORK"/rotel-verify.* | sed 's/\x1b\[[0-9;]*m//g' |
    awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^spans=[0-9]+$/) { sub(/^spans=/, "", $i); n += $i } } END { print n + 0 }')
  [ "$logged" = "$(field spans <<<"$line")" ] ||
    die "rotel logged $logged spans over $protocol but the generator had $(field spans <<<"$line") accepted; see $WORK/rotel-verify.out"
  say "rotel received all $logged spans over $protocol"
}

if [[ " $SERVERS " == *" rotel "* ]]; then
  for protocol in $PROTOCOLS; do verify_rotel "$protocol"; done
fi

for run in $(seq "$REPEAT"); do
  for protocol in $PROTOCOLS; do
    for size in $SIZES; do
      for mode in max "$FIXED_RATE"; do
        for server in $SERVERS; do
          run_case "$run" "$server" "$protocol" "$size" "$mode"
        done
      done
    done
  done
done

say "decode-only ceiling (prost, one core)"
DECODE="$WORK/decode.txt"
for size in $SIZES; do
  for decoder in prost magpie; do
    taskset -c "$SERVER_CPU" "$LOADGEN" decode --decoder "$decoder" --spans-per-request "$size" --duration 5s |
      tee -a "$DECODE" >&2
  done
done

python3 - "$RESULTS" "$DECODE" "$FIXED_RATE" <<'EOF'
import csv, statistics, sys
runs = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
fixed = sys.argv[3]
FIGURES = ["spans_per_cpu_s", "cpu_pct", "rss_kib", "hwm_kib", "idle_kib", "file_kib", "anon_kib"]
# One row per case: the median of each figure over its runs, plus the runs.
cases = {}
for r in runs:
    cases.setdefault((r["server"], r["protocol"], r["spans_per_request"], r["mode"]), []).append(r)
rows = []
for (server, protocol, size, mode), rs in cases.items():
    row = {"server": server, "protocol": protocol, "spans_per_request": size, "mode": mode, "runs": rs,
           "errors": str(sum(int(r["errors"]) for r in rs))}
    for f in FIGURES:
        row[f] = statistics.median(float(r[f]) for r in rs)
    rows.append(row)
decode = {}
for line in open(sys.argv[2]):
    f = dict(kv.split("=", 1) for kv in line.split()[1:])
    decode[(f["decoder"], f["spans_per_request"])] = float(f["spans_per_cpu_s"])
def get(server, protocol, size, mode):
    for r in rows:
        if (r["server"], r["protocol"], r["spans_per_request"], r["mode"]) == (server, protocol, size, mode):
            return r
    return None
mib = lambda kib: f"{float(kib) / 1024:.1f}"
print()
k = f"{int(fixed) // 1000}k"
print(f"| protocol | spans/req | Magpie spans/CPU-s | Rotel spans/CPU-s | Magpie/Rotel | prost decode ceiling | Magpie/ceiling "
      f"| peak RSS MiB M / R | {k} spans/s CPU% M / R | {k} spans/s RSS MiB M / R | idle RSS MiB M / R |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
pct = lambda v: f"{float(v):.1f}"
for protocol in ["grpc", "http"]:
    for size in ["1000", "25"]:
        m, r = get("magpie", protocol, size, "max"), get("rotel", protocol, size, "max")
        mf, rf = get("magpie", protocol, size, fixed), get("rotel", protocol, size, fixed)
        if not (m or r):
            continue
        ms = float(m["spans_per_cpu_s"]) if m else 0
        rs = float(r["spans_per_cpu_s"]) if r else 0
        ratio = f"{ms / rs:.2f}x" if ms and rs else "-"
        ceil = decode.get(("prost", size))
        frac = f"{100 * ms / ceil:.0f}%" if ceil and ms else "-"
        pair = lambda a, b, k, fmt: f"{fmt(a[k]) if a else '-'} / {fmt(b[k]) if b else '-'}"
        num = lambda v: f"{v:,.0f}" if v else "-"
        print(f"| {protocol} | {size} | {num(ms)} | {num(rs)} | {ratio} | {ceil or 0:,.0f} | {frac} "
              f"| {pair(m, r, 'hwm_kib', mib)} | {pair(mf, rf, 'cpu_pct', pct)} | {pair(mf, rf, 'rss_kib', mib)} "
              f"| {pair(m, r, 'idle_kib', mib)} |")
print()
print(f"RSS at {k} spans/s, mapped from files (mostly the binary's code) + anonymous (heap), MiB:")
for r in rows:
    if r["mode"] == fixed:
        print(f"  {r['server']} {r['protocol']} {r['spans_per_request']}/req: "
              f"{mib(r['file_kib'])} + {mib(r['anon_kib'])} = {mib(r['rss_kib'])}")
if any(len(r["runs"]) > 1 for r in rows):
    print()
    print(f"Each figure is the median of {max(len(r['runs']) for r in rows)} runs. Every run, in order:")
    spread = lambda r, f, fmt: " ".join(fmt(x[f]) for x in r["runs"])
    for r in rows:
        if r["mode"] == "max":
            print(f"  {r['server']} {r['protocol']} {r['spans_per_request']}/req spans/CPU-s: "
                  f"{spread(r, 'spans_per_cpu_s', lambda v: f'{float(v):,.0f}')}")
        else:
            print(f"  {r['server']} {r['protocol']} {r['spans_per_request']}/req at {k} spans/s CPU%: "
                  f"{spread(r, 'cpu_pct', pct)}; RSS MiB: {spread(r, 'rss_kib', mib)}")
print()
for size in ["1000", "25"]:
    p, m = decode.get(("prost", size)), decode.get(("magpie", size))
    if p and m:
        print(f"decode only, {size} spans/request, one core: prost {p:,.0f} spans/CPU-s, Magpie's decoder {m:,.0f} ({m / p:.2f}x)")
errors = [r for r in rows if r["errors"] != "0"]
for r in errors:
    print(f"warning: {r['server']} {r['protocol']} {r['spans_per_request']}/req {r['mode']}: {r['errors']} failed requests")
EOF
say "raw results: $RESULTS"
