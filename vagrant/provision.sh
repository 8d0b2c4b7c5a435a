#!/usr/bin/env bash
# Provisions the Vagrant VM: the scenario tools, Rust, bpf-linker, and a
# release build of probe-tracer, then installs `probe-tracer-scenario`.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq build-essential curl ipvsadm iproute2 runc busybox-static kmod jq
if ! command -v cargo >/dev/null; then
    curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
fi
. "$HOME/.cargo/env"
cd /probe-tracer
# The same setup as CI, without the QEMU/kernel parts this VM does not need.
cargo xtask setup
cargo build --release -p tracer-user
install -m 0755 target/release/probe-tracer /usr/local/bin/probe-tracer
install -m 0755 vagrant/probe-tracer-scenario /usr/local/bin/probe-tracer-scenario
