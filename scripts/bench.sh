#!/usr/bin/env bash
# Whole-agent benchmark: N lines of ../shared/bench/gen_istio_cri.py in a node-like tree,
# read by `meshtrail run --once` → parse → classify → sink: blackhole (events counted, not
# encoded, as Vector's blackhole and Fluent Bit's null output), blackhole-encode (each event
# also encoded as its JSON document), file (encoded and written), elasticsearch (gzip bulk to
# the test server of tests/, started as a process; bytes on the wire per event reported).
# Prints lines/s, CPU seconds, lines per CPU-second and peak RSS for each, with a progress
# bar on a terminal. Where Fluent Bit is at hand (../shared/bench/peers/), it then ships the
# same lines (at most MESHTRAIL_BENCH_PEER_LINES, default 200000: it is slow) with its
# configuration from there, beside meshtrail on the same file, and prints the CPU ratio.
# The elasticsearch rows are run again against a cluster under write pressure (3 % and 20 %
# of the items of every bulk refused 429/503, 5 % of requests refused whole with 429, 3 % of
# answers 3 s late, 3 % lost after storing), beside the fault-free row, as a share of it.
# Last, it ships lines written live (MESHTRAIL_BENCH_RATE a second, default 5000) and prints
# their freshness (write → stored in Elasticsearch) p50 and p99; then lines written live at
# MESHTRAIL_BENCH_OUTAGE_RATE (default 20000) a second through a 30 s outage of
# Elasticsearch, and how long the backlog takes to drain once it is back.
#
# usage: scripts/bench.sh [LINES]        (default 1000000)
set -euo pipefail
cd "$(dirname "$0")/.."
lines=${1:-1000000}
gen=../shared/bench/gen_istio_cri.py
[ -f "$gen" ] || { echo "needs $gen (the shared folder beside this checkout)" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "needs /usr/bin/time (apt-get install -y time)" >&2; exit 2; }
cargo build --release --locked -p meshtrail >&2
bin=$PWD/target/release/meshtrail
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
input=${MESHTRAIL_BENCH_INPUT:-/tmp/meshtrail-bench-$lines.log}
[ -f "$input" ] || python3 "$gen" "$lines" "$input"
pod=$work/pods/istio-system_istio-ingressgateway-7d4f_7e0b4c1a-2f7e-4d0e-9a57-0d2c8b1e6f00/istio-proxy
mkdir -p "$pod" "$work/containers"
ln "$input" "$pod/0.log" 2>/dev/null || cp "$input" "$pod/0.log"
ln -s "$pod/0.log" "$work/containers/istio-ingressgateway-7d4f_istio-system_istio-proxy-$(printf 'a%.0s' $(seq 64)).log"
bytes=$(stat -c %s "$input")
# Writes lines of SRC live into DST at RATE a second for SECS, each stamped with its write
# time; DST.written holds the count so far, DST.count the total at the end.
cat >"$work/writer.py" <<'PY'
import sys, time, datetime
src, dst, rate, secs = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
bodies = []
with open(src) as f:
    for line in f:
        bodies.append(line.split(" ", 1)[1])
        if len(bodies) >= 10000:
            break
out = open(dst, "a", buffering=1 << 16)
step, n, start = 0.05, 0, time.time()
while time.time() - start < secs:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"
    for _ in range(int(rate * step)):
        out.write(now + " " + bodies[n % len(bodies)])
        n += 1
    out.flush()
    with open(dst + ".written", "w") as w:
        print(n, file=w)
    time.sleep(max(0, start + (n / rate) - time.time()))
print(n, file=open(dst + ".count", "w"))
PY
# The agent's configuration: the sink's lines ($1), then extra top-level YAML ($2).
config() {
  cat >"$work/config.yaml" <<YAML
node_name: bench-node
data_dir: $work/data
tail:
  include: ["$work/containers/*.log"]
sink:
  $1
${2:-}
YAML
}
# Draws a progress bar on a terminal while $1 runs: the bytes it has read of $2.
progress() {
  [ -t 2 ] || return 0
  local pid=$1 total=$2 label=$3 child read pct
  while kill -0 "$pid" 2>/dev/null; do
    child=$(pgrep -P "$pid" | head -1 || true)
    read=$(awk '/^rchar/ {print $2}' "/proc/${child:-$pid}/io" 2>/dev/null || echo 0)
    pct=$(( ${read:-0} * 100 / total )); [ "$pct" -gt 100 ] && pct=100
    printf '\r%-17s [%-40s] %3d%%' "$label" "$(printf '#%.0s' $(seq $(( pct * 40 / 100 + 1 ))) | cut -c2-)" "$pct" >&2
    sleep 0.2
  done
  printf '\r%70s\r' '' >&2
}
# Times the command after $1 (the row label, $2 the input size) into $work/time.
timed() {
  local label=$1 size=$2; shift 2
  /usr/bin/time -f "%e %U %S %M" -o "$work/time" "$@" & local pid=$!
  progress "$pid" "$size" "$label"
  wait "$pid"
}
row() {  # label, lines, bytes: prints a row from $work/time
  read -r wall user sys rss <"$work/time"
  awk -v s="$1" -v n="$2" -v b="$3" -v w="$wall" -v u="$user" -v y="$sys" -v r="$rss" 'BEGIN {
    cpu = u + y; printf "%-17s %10.0f %10.1f %8.2f %8.2f %14.0f %7.1f MiB\n", s, n / w, b / w / 1e6, w, cpu, n / cpu, r / 1024 }'
}
es_start() {  # starts the Elasticsearch test server, faults from file $1 if given; sets es_pid and es_url
  rm -f "$work/es.url"
  target/release/es-test-server "$work/es.url" ${1:+"$1"} 2>>"$work/es.log" & es_pid=$!
  for _ in $(seq 100); do [ -s "$work/es.url" ] && break; sleep 0.1; done
  es_url=$(cat "$work/es.url")
}
es_stat() {  # the test server's statistic $1
  curl -s "$es_url/_test/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"
}
es_sink() {  # the sink's configuration for the running test server
  printf 'type: elasticsearch\n  url: %s\n  dead_letter_path: %s\n' "$es_url" "$work/out/dead-letters.ndjson"
}
printf '%-17s %10s %10s %8s %8s %14s %10s\n' sink lines/s "MB/s" "wall s" "CPU s" "lines/CPU-s" "peak RSS"
cargo build --release --locked -p meshtrail-tests --bin es-test-server >&2
for sink in blackhole blackhole-encode file elasticsearch; do
  rm -rf "$work/data" "$work/out"
  sink_cfg="type: $sink"
  [ "$sink" = blackhole-encode ] && sink_cfg="type: blackhole
  encode: true"
  if [ "$sink" = elasticsearch ]; then
    es_start
    sink_cfg=$(es_sink)
  fi
  [ "$sink" = file ] && sink_cfg="type: file
  path: $work/out/events.ndjson
  max_file_bytes: 1000000000000"
  config "$sink_cfg"
  timed "$sink" "$bytes" env -u KUBERNETES_SERVICE_HOST "$bin" run --once --config "$work/config.yaml" 2>"$work/agent.log"
  row "$sink" "$lines" "$bytes"
  if [ "$sink" = elasticsearch ]; then
    docs=$(es_stat docs); wire=$(es_stat body_bytes)
    kill "$es_pid"; wait "$es_pid" 2>/dev/null || true
    [ "$docs" -eq "$lines" ] || { echo "Elasticsearch holds $docs documents, expected $lines" >&2; exit 1; }
    echo "                  elasticsearch: $docs documents, $(( wire / lines )) bytes on the wire per event (gzip)"
    clean_rate=$(awk -v n="$lines" '{print n / $1}' "$work/time")
    # The same lines to a cluster under write pressure.
    for items in 0.03 0.20; do
      label="es-pressure-$(awk -v i="$items" 'BEGIN {printf "%d%%", i * 100}')"
      echo "items=$items request_429=0.05 slow=0.03 slow_ms=3000 lost=0.03 seed=11" >"$work/faults"
      rm -rf "$work/data" "$work/out"; es_start "$work/faults"; config "$(es_sink)"
      timed "$label" "$bytes" env -u KUBERNETES_SERVICE_HOST "$bin" run --once --config "$work/config.yaml" 2>"$work/agent.log"
      row "$label" "$lines" "$bytes"
      docs=$(es_stat docs); kill "$es_pid"; wait "$es_pid" 2>/dev/null || true
      [ "$docs" -eq "$lines" ] || { echo "Elasticsearch holds $docs documents, expected $lines" >&2; exit 1; }
      awk -v n="$lines" -v c="$clean_rate" -v d="$docs" -v i="$items" '{
        printf "                  %d of %d stored once; %.0f%% of the fault-free lines/s (items refused: %s, requests 429: 0.05, slow 3 s: 0.03, lost: 0.03)\n", d, n, 100 * n / $1 / c, i }' "$work/time"
    done
  fi
  if [ "$sink" = file ]; then
    got=$(wc -l <"$work/out/events.ndjson")
    [ "$got" -eq "$lines" ] || { echo "file sink holds $got events, expected $lines" >&2; exit 1; }
  fi
done

# Fluent Bit beside meshtrail, the same lines to the same test server, gzip bulk both.
peers=../shared/bench/peers
if [ -x "$peers/unpack.sh" ] && fluent_bit=$("$peers/unpack.sh" fluent-bit 2>/dev/null); then
  peer_lines=$(( lines < ${MESHTRAIL_BENCH_PEER_LINES:-200000} ? lines : ${MESHTRAIL_BENCH_PEER_LINES:-200000} ))
  head -n "$peer_lines" "$input" >"$work/peer.log"
  peer_bytes=$(stat -c %s "$work/peer.log")
  echo "Fluent Bit beside meshtrail, $peer_lines lines to Elasticsearch (gzip bulk), $peers/fluent-bit-es.conf:"
  rm -f "$pod"/*.log; ln "$work/peer.log" "$pod/0.log"
  rm -rf "$work/data" "$work/out"; es_start; config "$(es_sink)"
  timed meshtrail "$peer_bytes" env -u KUBERNETES_SERVICE_HOST "$bin" run --once --config "$work/config.yaml" 2>"$work/agent.log"
  row meshtrail "$peer_lines" "$peer_bytes"; ours=$(awk '{print $2 + $3}' "$work/time")
  ours_docs=$(es_stat docs); kill "$es_pid"; wait "$es_pid" 2>/dev/null || true
  es_start
  here=$(cd "$peers" && pwd)
  timed fluent-bit "$peer_bytes" bash -c "cd '$here' && ES_PORT=${es_url##*:} MT_INPUT='$work/peer.log' exec '$fluent_bit' -q -c fluent-bit-es.conf >/dev/null 2>&1"
  row fluent-bit "$peer_lines" "$peer_bytes"; theirs=$(awk '{print $2 + $3}' "$work/time")
  their_docs=$(es_stat docs); kill "$es_pid"; wait "$es_pid" 2>/dev/null || true
  awk -v a="$ours" -v b="$theirs" -v m="$ours_docs" -v f="$their_docs" 'BEGIN {
    printf "                  CPU seconds, meshtrail / Fluent Bit: %.3f (%.1f× less CPU); documents stored: %d and %d\n", a / b, b / a, m, f }'
else
  echo "(no Fluent Bit at $peers: the side-by-side row is skipped)"
fi

# Freshness: lines written live (RATE a second for 20 s, each stamped with its write time)
# into a fresh container log, shipped by the running agent to the test server, which
# measures arrival minus the line's time (event.created): p50 and p99.
rate=${MESHTRAIL_BENCH_RATE:-5000}
rm -rf "$work/data" "$work/out" "$work/pods" "$work/containers" "$work/es.url"
live=$work/pods/shop_web-0_8f1c5d2b-3a8f-4e1f-8b68-1e3d9c2f7a11/istio-proxy
mkdir -p "$live" "$work/containers"
: >"$live/0.log"
ln -s "$live/0.log" "$work/containers/web-0_shop_istio-proxy-$(printf 'b%.0s' $(seq 64)).log"
es_start
config "$(es_sink)" "metrics:
  address: 127.0.0.1:0"
env -u KUBERNETES_SERVICE_HOST "$bin" run --config "$work/config.yaml" 2>"$work/agent.log" & agent_pid=$!
sleep 1
python3 "$work/writer.py" "$input" "$live/0.log" "$rate" 20
written=$(cat "$live/0.log.count")
for _ in $(seq 300); do
  docs=$(es_stat docs)
  [ "$docs" -ge "$written" ] && break
  sleep 0.1
done
stats=$(curl -s "$es_url/_test/stats")
kill "$agent_pid" "$es_pid"; wait 2>/dev/null || true
echo "$stats" | python3 -c '
import json, sys
s = json.load(sys.stdin); f = s["freshness_ms"]
print("live, %s lines/s: %d of %s lines delivered; freshness (write to Elasticsearch) p50 %s ms, p99 %s ms, max %s ms"
      % (sys.argv[1], s["docs"], sys.argv[2], f["p50"], f["p99"], f["max"]))' "$rate" "$written"

# A 30 s outage while lines are written live at OUTAGE_RATE a second for 60 s: down from
# 10 s to 40 s; how long after Elasticsearch is back every line written until then is stored.
orate=${MESHTRAIL_BENCH_OUTAGE_RATE:-20000}
rm -rf "$work/data" "$work/out" "$work/pods" "$work/containers" "$work/es.url"
mkdir -p "$live" "$work/containers"
: >"$live/0.log"; : >"$work/faults"
ln -s "$live/0.log" "$work/containers/web-0_shop_istio-proxy-$(printf 'b%.0s' $(seq 64)).log"
es_start "$work/faults"
config "$(es_sink)" "metrics:
  address: 127.0.0.1:0"
env -u KUBERNETES_SERVICE_HOST "$bin" run --config "$work/config.yaml" 2>"$work/agent.log" & agent_pid=$!
sleep 1
python3 "$work/writer.py" "$input" "$live/0.log" "$orate" 60 & writer_pid=$!
sleep 10; echo down >"$work/faults"
sleep 30; : >"$work/faults"; back=$(date +%s.%N)
sleep 0.3  # the test server reads its faults file every 100 ms
backlog=$(cat "$live/0.log.written")
stored_then=$(es_stat docs)
drained=
for _ in $(seq 1200); do
  docs=$(es_stat docs)
  if [ "$docs" -ge "$backlog" ]; then drained=$(awk -v a="$back" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}'); break; fi
  sleep 0.1
done
wait "$writer_pid"
written=$(cat "$live/0.log.count")
for _ in $(seq 600); do [ "$(es_stat docs)" -ge "$written" ] && break; sleep 0.1; done
docs=$(es_stat docs)
kill "$agent_pid" "$es_pid"; wait 2>/dev/null || true
echo "outage, $orate lines/s for 60 s, Elasticsearch down 30 s: backlog of $(( backlog - stored_then )) lines at recovery drained in ${drained:-more than 120} s; $docs of $written lines delivered"
