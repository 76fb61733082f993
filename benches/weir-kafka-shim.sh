#!/usr/bin/env bash
# `weir`, with `bench produce` and `bench consume` sent over the Kafka listener: hand it to a
# script that drives `weir bench` (such as the peers comparison) to measure the Kafka path
# instead of gRPC, everything else unchanged.
#
#   WEIR_BINARY=target/release/weir ../shared/peers/weir-vs-iggy.sh benches/weir-kafka-shim.sh
#
# The brokers those scripts start keep the default Kafka listener, 127.0.0.1:9092
# (WEIR_KAFKA to change it).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WEIR=${WEIR_BINARY:-$here/../target/release/weir}
if [[ ${1:-} == bench && ( ${2:-} == produce || ${2:-} == consume ) ]]; then
    exec "$WEIR" "$@" --protocol kafka --kafka "${WEIR_KAFKA:-127.0.0.1:9092}"
fi
exec "$WEIR" "$@"
