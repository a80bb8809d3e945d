#!/usr/bin/env bash
# Time from exec to the first 200 on /health/ready, and RSS right after, for the
# release binary with one channel (fresh data dir each run). Prints the median.
# Usage: scripts/bench-startup.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10}
cargo build --release -q --bin chatpulse
python3 - "$runs" <<'PY'
import os, socket, subprocess, sys, tempfile, time, statistics
runs = int(sys.argv[1]); times = []; rss = []
for _ in range(runs):
    d = tempfile.mkdtemp()
    with open(f"{d}/c.toml", "w") as f:
        f.write('[twitch]\nsource = "none"\n[[channel]]\nlogin = "bench"\n')
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    t0 = time.perf_counter()
    p = subprocess.Popen(["target/release/chatpulse", "serve", "--config", f"{d}/c.toml",
                          "--listen", f"127.0.0.1:{port}", "--data-dir", f"{d}/data"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        try:
            c = socket.create_connection(("127.0.0.1", port), timeout=1)
            c.sendall(b"GET /health/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            if c.recv(64).startswith(b"HTTP/1.1 200"):
                break
        except OSError:
            pass
        time.sleep(0.001)
    times.append((time.perf_counter() - t0) * 1000)
    for l in open(f"/proc/{p.pid}/status"):
        if l.startswith("VmRSS"): rss.append(int(l.split()[1]))
    p.terminate(); p.wait()
print(f"ready after exec: median {statistics.median(times):.1f} ms (min {min(times):.1f}, max {max(times):.1f}, n={runs}); RSS at ready: median {statistics.median(rss)} KiB")
PY
