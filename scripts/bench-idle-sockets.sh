#!/usr/bin/env bash
# Idle-overlay memory: starts the release binary on loopback with one channel,
# opens N overlay WebSockets (default 3000) from a Python client, and prints
# the server's RSS per socket over its baseline. Bounded: N sockets, ~10 s.
# Usage: scripts/bench-idle-sockets.sh [N] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-3000}; runs=${2:-3}
cargo build --release -q
bin=target/release/chatpulse
ulimit -n $((n * 2 + 1024))
for run in $(seq "$runs"); do
  dir=$(mktemp -d); port=$((20000 + RANDOM % 20000))
  printf '[[channel]]\nlogin = "bench"\n' > "$dir/c.toml"
  CHATPULSE_LIMITS_MAX_CONNECTIONS_PER_IP=1000000 CHATPULSE_LIMITS_CONNECTION_RATE_PER_IP=1000000 \
  CHATPULSE_LIMITS_CONNECTION_BURST_PER_IP=1000000 CHATPULSE_LIMITS_MAX_OVERLAYS_PER_BROADCASTER=100000 \
  CHATPULSE_LIMITS_MAX_CONNECTIONS=1000000 CHATPULSE_LOG_LEVEL=error \
    "$bin" serve --config "$dir/c.toml" --listen "127.0.0.1:$port" --data-dir "$dir/data" >"$dir/out" 2>"$dir/err" &
  pid=$!
  sleep 1
  token=$(sed -n 's#.*/overlay/##p' "$dir/out" | head -1)
  python3 - "$port" "$token" "$n" "$pid" <<'PY'
import socket, base64, os, sys, time
port, token, n, pid = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
def rss():
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS"): return int(l.split()[1])
base = rss(); socks = []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(f"GET /ws/overlay/{token} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    d = b""
    while b"\r\n\r\n" not in d: d += s.recv(4096)
    assert b" 101 " in d.split(b"\r\n")[0], d[:80]
    socks.append(s)
time.sleep(2)
after = rss()
print(f"sockets={n} baseline_rss_kib={base} rss_kib={after} bytes_per_socket={(after-base)*1024/n:.0f}")
PY
  kill "$pid" 2>/dev/null || cat "$dir/err"; wait "$pid" || true; rm -rf "$dir"
done
