#!/usr/bin/env bash
# CPU per full host scrape: Magpie's hostmetrics receiver, Prometheus
# node_exporter and Python psutil collecting the same figures, side by side in
# one run, with ratios. Then the agent itself (release build) with the
# hostmetrics, redis and postgresql receivers at a 5 s interval: its share of
# a core and its resident memory.
#
# Each figure is CPU time (user + system), not wall time:
# - Magpie: the `scrapers` bench, process CPU clock over N scrapes of the
#   default scrapers (cpu, memory, disk, filesystem, network, load, paging,
#   processes).
# - node_exporter: started on 127.0.0.1 at a free port with its default
#   collectors; utime + stime from /proc/<pid>/stat before and after N
#   requests of /metrics (the HTTP client's own CPU is not counted).
# - psutil: time.process_time() around N collections of the same figures
#   (cpu times, memory, swap, per-disk IO, mounted filesystems' usage,
#   per-interface network IO, load average, process counts by state).
# - The agent: utime + stime and VmRSS of the magpie process over S seconds,
#   after 10 s of warm-up.
#
# Usage: receivers/benches/compare-host-scrape.sh [N scrapes, default 200] [S seconds, default 60]
# Needs: prometheus-node-exporter (apt-get install -y prometheus-node-exporter),
# python3 with venv, Redis and PostgreSQL on their usual loopback ports (or
# MAGPIE_TEST_REDIS_URL / MAGPIE_TEST_POSTGRES_URL).
set -euo pipefail
cd "$(dirname "$0")/../.."

N="${1:-200}"
S="${2:-60}"
TICK=$(getconf CLK_TCK)
REDIS_URL="${MAGPIE_TEST_REDIS_URL:-redis://127.0.0.1:6379}"
PG_URL="${MAGPIE_TEST_POSTGRES_URL:-postgresql://postgres@127.0.0.1:5432/postgres}"
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

die() { printf 'error: %s\n' "$*" >&2; exit 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# utime + stime of a pid, in clock ticks.
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
wait_port() { for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }

command -v prometheus-node-exporter >/dev/null 2>&1 ||
  die "prometheus-node-exporter is missing: apt-get install -y prometheus-node-exporter"

echo "==> Magpie hostmetrics (cargo bench -p magpie-receivers --bench scrapers -- $N host)"
MAGPIE_MS=$(cargo bench -q -p magpie-receivers --bench scrapers -- "$N" host 2>/dev/null |
  sed -n 's/^host_scrape_cpu_ms=//p')
[ -n "$MAGPIE_MS" ] || die "the scrapers bench printed no host figure"

echo "==> node_exporter: $N scrapes of /metrics"
NE_PORT=$(free_port)
prometheus-node-exporter --web.listen-address="127.0.0.1:$NE_PORT" >"$WORK/ne.log" 2>&1 &
NE_PID=$!
PIDS+=("$NE_PID")
wait_port "$NE_PORT" || die "node_exporter did not start: $(tail -n 3 "$WORK/ne.log")"
for _ in 1 2 3 4 5; do curl -s -o /dev/null "http://127.0.0.1:$NE_PORT/metrics"; done
T0=$(cpu_ticks "$NE_PID")
for _ in $(seq 1 "$N"); do curl -s -o /dev/null "http://127.0.0.1:$NE_PORT/metrics"; done
T1=$(cpu_ticks "$NE_PID")
NE_MS=$(awk -v a="$T0" -v b="$T1" -v n="$N" -v t="$TICK" 'BEGIN { printf "%.3f", (b - a) * 1000 / t / n }')
NE_SERIES=$(curl -s "http://127.0.0.1:$NE_PORT/metrics" | grep -vc '^#')
kill "$NE_PID"

echo "==> psutil: $N collections"
python3 -m venv "$WORK/venv" >/dev/null
"$WORK/venv/bin/pip" install -q psutil >/dev/null
cat >"$WORK/collect.py" <<'PY'
import os, sys, time
import psutil

def collect():
    out = {
        "cpu": psutil.cpu_times(),
        "cpus": psutil.cpu_count(),
        "memory": psutil.virtual_memory(),
        "swap": psutil.swap_memory(),
        "disk": psutil.disk_io_counters(perdisk=True),
        "net": psutil.net_io_counters(pernic=True),
        "load": os.getloadavg(),
    }
    usage = {}
    for p in psutil.disk_partitions(all=False):
        try:
            usage[p.mountpoint] = psutil.disk_usage(p.mountpoint)
        except OSError:
            pass
    out["filesystems"] = usage
    states = {}
    for proc in psutil.process_iter(["status"]):
        s = proc.info["status"]
        states[s] = states.get(s, 0) + 1
    out["processes"] = states
    return out

n = int(sys.argv[1])
for _ in range(5):
    collect()
t0 = time.process_time()
for _ in range(n):
    collect()
print("%.3f" % ((time.process_time() - t0) * 1000 / n))
PY
PSUTIL_MS=$("$WORK/venv/bin/python" "$WORK/collect.py" "$N")

echo "==> the agent: hostmetrics + redis + postgresql at 5s for ${S}s (cargo build --release -p magpie)"
cargo build -q --release -p magpie --bin magpie
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
SELF_PORT=$(free_port)
cat >"$WORK/agent.yaml" <<YAML
receivers:
  hostmetrics:
    collection_interval: 5s
  redis:
    endpoint: $REDIS_URL
    collection_interval: 5s
  postgresql:
    endpoint: $PG_URL
    collection_interval: 5s
exporters:
  blackhole:
service:
  pipelines:
    metrics:
      receivers: [hostmetrics, redis, postgresql]
      exporters: [blackhole]
  telemetry:
    metrics:
      address: 127.0.0.1:$SELF_PORT
    logs:
      level: warn
YAML
"$TARGET_DIR/release/magpie" --config "$WORK/agent.yaml" >"$WORK/agent.log" 2>&1 &
AGENT_PID=$!
PIDS+=("$AGENT_PID")
sleep 10
kill -0 "$AGENT_PID" 2>/dev/null || die "the agent exited: $(tail -n 5 "$WORK/agent.log")"
A0=$(cpu_ticks "$AGENT_PID")
sleep "$S"
A1=$(cpu_ticks "$AGENT_PID")
AGENT_RSS=$(rss_kib "$AGENT_PID")
kill "$AGENT_PID"
AGENT_PCT=$(awk -v a="$A0" -v b="$A1" -v s="$S" -v t="$TICK" 'BEGIN { printf "%.3f", (b - a) / t / s * 100 }')

echo
printf '%-32s %12s %10s\n' "full host scrape" "CPU ms" "vs magpie"
printf '%-32s %12.3f %10s\n' "magpie hostmetrics (defaults)" "$MAGPIE_MS" "1.0x"
printf '%-32s %12.3f %9.1fx\n' "node_exporter /metrics" "$NE_MS" "$(awk -v a="$NE_MS" -v b="$MAGPIE_MS" 'BEGIN { print a / b }')"
printf '%-32s %12.3f %9.1fx\n' "python psutil, same figures" "$PSUTIL_MS" "$(awk -v a="$PSUTIL_MS" -v b="$MAGPIE_MS" 'BEGIN { print a / b }')"
echo "($N scrapes each; node_exporter served $NE_SERIES series per scrape)"
echo
printf 'agent idle, 3 receivers at 5s: %s%% of a core over %ss, RSS %.1f MiB (%s ticks/s)\n' \
  "$AGENT_PCT" "$S" "$(awk -v k="$AGENT_RSS" 'BEGIN { print k / 1024 }')" "$TICK"
