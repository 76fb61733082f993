#!/usr/bin/env bash
# Weir's Kafka listener beside Apache Iggy 0.8.0 in one run, the two alternating case by case, for
# the rows ../shared/peers/weir-vs-iggy.sh does not measure:
#
#   consume  each reads back what it just produced (page cache): Iggy's pinned consumer, and
#            `weir bench consume --protocol kafka`; batches of 1000 messages on both sides.
#   rate     p99 produce latency at half of Iggy's maximum rate: Iggy's full-speed produce is
#            measured in the round's first part (the `max` row), then Iggy at the rate its limiter can hold nearest
#            half of it (--rate-limit; see below), then Weir at the rate Iggy reached (--throughput). Iggy's producer sends one batch at a time, so
#            Weir's does too here (--max-in-flight 1): with more in flight a batch that goes out
#            late is followed by others at once and waits behind them in the broker, where one at
#            a time it waits in the client, outside the timing. Each batch of 1000 messages is
#            timed from its write to its answer on both sides.
#
#   benches/kafka-vs-iggy.sh [WEIR_BINARY]      # from the project root; default target/release/weir
#
# Uses the Iggy build that ../shared/peers/weir-vs-iggy.sh makes in $PEERS_CACHE (run that once
# first). Knobs: REPEAT (3), SIZE (1024 bytes a message), N (1000000 messages a case).
# Output: one RESULT line per case, as the peer script's. Only ratios within one run mean anything.
set -euo pipefail
WEIR=$(realpath "${1:-target/release/weir}")
[[ -x $WEIR ]] || { echo "no weir binary at $WEIR (cargo build --release)" >&2; exit 1; }
REPEAT=${REPEAT:-3}; SIZE=${SIZE:-1024}; N=${N:-1000000}
PEERS_CACHE=${PEERS_CACHE:-$HOME/.cache/weir-peers}
SRC=$PEERS_CACHE/iggy-server-0.8.0; BIN=$PEERS_CACHE/iggy-target/release
[[ -x $BIN/iggy-server && -x $BIN/iggy-bench ]] ||
    { echo "no Iggy build in $BIN: run ../shared/peers/weir-vs-iggy.sh once" >&2; exit 1; }
SCRATCH=$(mktemp -d -t kafka-vs-iggy-XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do [[ -n $p ]] && { kill "$p" 2>/dev/null || true; }; done; rm -rf "$SCRATCH"; }
trap cleanup EXIT
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 600); do (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }
stop() { kill "$1" 2>/dev/null || true; for _ in $(seq 1 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done; kill -9 "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
drop_cache() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true; }

# Prints "records_per_s MBps p99_ms" from the report iggy-bench wrote under $1.
iggy_figures() { python3 - "$1" <<'PY'
import json, pathlib, sys
found = []
def walk(o):
    if isinstance(o, dict):
        if "total_throughput_messages_per_second" in o: found.append(o)
        for v in o.values(): walk(v)
    elif isinstance(o, list):
        for v in o: walk(v)
for f in pathlib.Path(sys.argv[1]).rglob("*.json"): walk(json.loads(f.read_text()))
g = found[0] if found else {}
print(f"{g.get('total_throughput_messages_per_second', 0):.0f} "
      f"{g.get('total_throughput_megabytes_per_second', 0):.1f} {g.get('average_p99_latency_ms')}")
PY
}

weir_figures() { python3 - "$1" <<'PY'
import json, sys
try: d = json.load(open(sys.argv[1]))
except Exception: d = {}
print(f"{d.get('records_per_sec', 0):.0f} {d.get('mb_per_sec', 0):.1f} {(d.get('latency_ms') or {}).get('p99')}")
PY
}

result() { # peer op run "records_per_s MBps p99_ms" [rate]
    read -r rps mbps p99 <<<"$4"
    echo "RESULT peer=$1 op=$2 size=$SIZE run=$3 records_per_s=$rps MBps=$mbps p99_ms=$p99${5:+ asked_per_s=$5}"
}

iggy_start() { # dir port
    rm -rf "$1"; mkdir -p "$1/data"
    env IGGY_CONFIG_PATH="$SRC/core/server/config.toml" IGGY_SYSTEM_PATH="$1/data" \
        IGGY_TCP_ADDRESS="127.0.0.1:$2" IGGY_HTTP_ENABLED=false IGGY_QUIC_ENABLED=false \
        IGGY_WEBSOCKET_ENABLED=false \
        "$BIN/iggy-server" --with-default-root-credentials >"$1/server.log" 2>&1 &
    PIDS+=("$!"); wait_port "$2"
}

iggy_bench() { # dir port out role [rate-limit args...]
    local dir=$1 port=$2 out=$3 role=$4; shift 4
    mkdir -p "$dir/$out"
    (cd "$dir" && timeout 300 "$BIN/iggy-bench" -m "$SIZE" -P 1000 -T "$((SIZE * N / 1000000))MB" "$@" \
        "$role" --streams 1 "--${role#pinned-}s" 1 tcp --server-address "127.0.0.1:$port" --nodelay \
        output -o "$dir/$out" --identifier "$out") >"$dir/$out.log" 2>&1 || tail -5 "$dir/$out.log" >&2
    iggy_figures "$dir/$out"
}

weir_start() { # dir port kafka-port
    rm -rf "$1"; mkdir -p "$1"
    "$WEIR" broker --data-dir "$1/data" --listen "127.0.0.1:$2" --kafka-listen "127.0.0.1:$3" \
        --metrics-listen "" --fsync never >"$1/server.log" 2>&1 &
    PIDS+=("$!"); wait_port "$2"; wait_port "$3"
}

weir_bench() { # dir port kafka-port op out [args...]
    local dir=$1 port=$2 kafka=$3 op=$4 out=$5; shift 5
    "$WEIR" bench "$op" --protocol kafka --broker "127.0.0.1:$port" --kafka "127.0.0.1:$kafka" \
        --topic t --records "$N" --record-size "$SIZE" --batch-size $(((SIZE + 10) * 1000)) \
        --output json "$@" >"$dir/$out.json" 2>"$dir/$out.err" || log "weir $op failed: $(tail -1 "$dir/$out.err")"
    weir_figures "$dir/$out.json"
}

echo "# $(date -u +%FT%TZ) $(uname -r) cores=$(nproc) weir=$("$WEIR" --version 2>/dev/null) size=$SIZE n=$N"
# Full speed, then the read-back, on one side. Sets $max on Iggy's.
iggy_max_and_consume() { # run
    local dir=$SCRATCH/iggy port; port=$(free_port); drop_cache; iggy_start "$dir" "$port"
    max=$(iggy_bench "$dir" "$port" max pinned-producer); result iggy max "$1" "$max"
    result iggy consume "$1" "$(iggy_bench "$dir" "$port" consume pinned-consumer)"
    stop "${PIDS[-1]}"
}
weir_max_and_consume() { # run
    local dir=$SCRATCH/weir port kafka; port=$(free_port); kafka=$(free_port); drop_cache
    weir_start "$dir" "$port" "$kafka"
    result weir max "$1" "$(weir_bench "$dir" "$port" "$kafka" produce max)"
    result weir consume "$1" "$(weir_bench "$dir" "$port" "$kafka" consume consume)"
    stop "${PIDS[-1]}"
}

for run in $(seq 1 "$REPEAT"); do
    # Which side goes first alternates round by round: on this VM a case run just
    # after the other server's was measured slower (Weir's consume 1.39-1.47 M/s
    # right after Iggy's, 1.7-2.1 M/s with no Iggy run before it).
    if ((run % 2)); then
        iggy_max_and_consume "$run"; weir_max_and_consume "$run"
    else
        weir_max_and_consume "$run"; iggy_max_and_consume "$run"
    fi

    # Half of Iggy's full speed: Iggy first, then Weir at the rate Iggy reached.
    # Iggy's limiter (governor) spaces bytes by a whole number of nanoseconds, so it keeps
    # only rates of 1e9/k bytes a second (500 MB/s, 333 MB/s, ...): ask for the one nearest
    # half of its full speed, which it then holds (asked 400 MB/s, it would run at 500).
    half=$(( ${max%% *} * SIZE / 2 ))
    ns_per_byte=$(( (1000000000 + half / 2) / (half > 0 ? half : 1) )); ((ns_per_byte >= 1)) || ns_per_byte=1
    half_bytes=$(( 1000000000 / ns_per_byte ))
    dir=$SCRATCH/iggy; port=$(free_port); drop_cache; iggy_start "$dir" "$port"
    at=$(iggy_bench "$dir" "$port" rate pinned-producer -r "${half_bytes}B")
    result iggy rate "$run" "$at" "$(( half_bytes / SIZE ))"
    stop "${PIDS[-1]}"
    dir=$SCRATCH/weir; port=$(free_port); kafka=$(free_port); drop_cache; weir_start "$dir" "$port" "$kafka"
    result weir rate "$run" "$(weir_bench "$dir" "$port" "$kafka" produce rate --throughput "${at%% *}" --max-in-flight 1)" "${at%% *}"
    stop "${PIDS[-1]}"
done
