#!/usr/bin/env bash
# Signed EventSub webhook throughput: a release node on loopback with the
# eventsub-webhook source, hammered by wrk over keep-alive connections with
# pre-signed requests (unique message ids, HMAC-SHA256 over id+timestamp+body,
# Twitch's channel.chat.message example payload). Bounded: RUNS × SECS seconds.
# Usage: scripts/bench-webhooks.sh [SECS] [RUNS] [CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}; runs=${2:-3}; conns=${3:-64}
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)"; exit 1; }
cargo build --release -q --bin chatpulse
dir=$(mktemp -d); trap 'kill $pid 2>/dev/null || true; rm -rf "$dir"' EXIT
port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
cat > "$dir/c.toml" <<TOML
[server]
listen = "127.0.0.1:$port"
[twitch]
source = "eventsub-webhook"
client_id = "bench"
client_secret = "bench"
bot_user_id = "2914196"
webhook_secret = "secretabcd"
callback_url = "https://example.invalid/webhooks/eventsub"
# No Twitch here: the conduit setup just retries; the webhook route works regardless.
helix_url = "http://127.0.0.1:9/helix"
auth_url = "http://127.0.0.1:9/oauth2"
[[channel]]
login = "streamer"
TOML
CHATPULSE_LOG_LEVEL=error target/release/chatpulse serve --config "$dir/c.toml" --data-dir "$dir/data" >/dev/null &
pid=$!
python3 - "$dir" "$((secs * 40000))" <<'PY'
import hmac, hashlib, sys, datetime
d, n = sys.argv[1], int(sys.argv[2])
body = '{"subscription":{"id":"0b7f3361-672b-4d39-b307-dd5b576c9b27","status":"enabled","type":"channel.chat.message","version":"1","condition":{"broadcaster_user_id":"1971641","user_id":"2914196"},"transport":{"method":"webhook","callback":"https://example.invalid/webhooks/eventsub"},"created_at":"2023-11-06T18:11:47.492253549Z","cost":0},"event":{"broadcaster_user_id":"1971641","broadcaster_user_login":"streamer","broadcaster_user_name":"streamer","chatter_user_id":"4145994","chatter_user_login":"viewer32","chatter_user_name":"viewer32","message_id":"cc106a89-1814-919d-454c-f4f2f970aae7","message":{"text":"yes","fragments":[{"type":"text","text":"yes","cheermote":null,"emote":null,"mention":null}]},"color":"#00FF7F","badges":[],"message_type":"text","cheer":null,"reply":null,"channel_points_custom_reward_id":null}}'
ts = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")
with open(f"{d}/body.json", "w") as f:
    f.write(body)
with open(f"{d}/reqs.txt", "w") as f:
    f.write(ts + "\n")
    for i in range(n):
        mid = f"bench-{i}"
        sig = hmac.new(b"secretabcd", (mid + ts + body).encode(), hashlib.sha256).hexdigest()
        f.write(f"{mid} sha256={sig}\n")
with open(f"{d}/wrk.lua", "w") as f:
    f.write('''
local dir = "%s"
local ids, sigs, ts, body = {}, {}, nil, nil
local count = 0
local threads = {}
function setup(thread) thread:set("offset", #threads); table.insert(threads, thread) end
function init(args)
  count = offset
  for line in io.lines(dir .. "/reqs.txt") do
    if ts == nil then ts = line else
      local id, sig = line:match("^(%%S+) (%%S+)$")
      ids[#ids + 1] = id; sigs[#sigs + 1] = sig
    end
  end
  local f = io.open(dir .. "/body.json"); body = f:read("*a"); f:close()
end
function request()
  count = count + 2
  local k = (count %% #ids) + 1
  local r = {ids[k], sigs[k]}
  return wrk.format("POST", "/webhooks/eventsub", {
    ["Content-Type"] = "application/json",
    ["Twitch-Eventsub-Message-Id"] = r[1],
    ["Twitch-Eventsub-Message-Retry"] = "0",
    ["Twitch-Eventsub-Message-Type"] = "notification",
    ["Twitch-Eventsub-Message-Signature"] = r[2],
    ["Twitch-Eventsub-Message-Timestamp"] = ts,
    ["Twitch-Eventsub-Subscription-Type"] = "channel.chat.message",
    ["Twitch-Eventsub-Subscription-Version"] = "1",
  }, body)
end
''' % d)
PY
sleep 0.5
for run in $(seq "$runs"); do
  wrk -t2 -c"$conns" -d"${secs}s" -s "$dir/wrk.lua" "http://127.0.0.1:$port" | grep -E "Requests/sec|Non-2xx|Latency|requests in"
done
curl -s "http://127.0.0.1:$port/metrics" | grep -E '^eventsub_webhook_requests_total' || true
