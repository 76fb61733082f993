#!/bin/bash
# acks=all on three brokers (topic with 3 replicas) against acks=1 on one broker,
# all on this machine, one after the other.
# Usage: benches/cluster_acks_all.sh WEIR_BIN [RECORDS] [RECORD_SIZE]
set -u
BIN=$1; N=${2:-2000000}; SIZE=${3:-100}
ROOT=$(mktemp -d /tmp/cbench.XXXX)
P1=39101; P2=39102; P3=39103
PEERS="1=127.0.0.1:$P1,2=127.0.0.1:$P2,3=127.0.0.1:$P3"
pids=()
for i in 1 2 3; do
  port=$((39100+i))
  $BIN broker --listen 127.0.0.1:$port --kafka-listen "" --metrics-listen "" --node-id $i --peers "$PEERS" --data-dir $ROOT/d$i > $ROOT/n$i.log 2>&1 &
  pids+=($!)
done
for t in $(seq 1 100); do
  $BIN --broker 127.0.0.1:$P1 cluster status --output json 2>/dev/null | python3 -c 'import json,sys; s=json.load(sys.stdin); sys.exit(0 if all(b["registered"] for b in s["brokers"]) and len(s["brokers"])==3 else 1)' 2>/dev/null && break
  sleep 0.3
done
echo "== 3 brokers, replication factor 3, acks=all, $N x $SIZE B"
$BIN --broker 127.0.0.1:$P1,127.0.0.1:$P2,127.0.0.1:$P3 bench produce --records $N --record-size $SIZE --acks all --replication-factor 3 --topic rf3-$SIZE
kill ${pids[@]}; wait
rm -rf $ROOT/d*
$BIN broker --listen 127.0.0.1:$P1 --kafka-listen "" --metrics-listen "" --data-dir $ROOT/solo > $ROOT/solo.log 2>&1 &
solo=$!
sleep 1.5
echo "== 1 broker, RF 1, acks=1, $N x $SIZE B"
$BIN --broker 127.0.0.1:$P1 bench produce --records $N --record-size $SIZE --acks 1 --topic rf1-$SIZE
kill $solo; wait
rm -rf $ROOT
