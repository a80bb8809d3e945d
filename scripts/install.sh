#!/usr/bin/env bash
# Installs a ChatPulse binary as a systemd service, as root:
#   /usr/local/bin/chatpulse                  the binary you give
#   user and group `chatpulse`                system account, no shell, no home
#   /var/lib/chatpulse                        its data dir, 0700 chatpulse:chatpulse
#   /etc/chatpulse/chatpulse.toml             from config.example.toml if absent, 0640 root:chatpulse
#   /etc/systemd/system/chatpulse.service     scripts/chatpulse.service; daemon-reload + enable
# Safe to run again (an upgrade replaces the binary and the unit, never the config).
#
#   sudo scripts/install.sh target/release/chatpulse
#   scripts/install.sh --dry-run target/release/chatpulse     # print the steps, change nothing
#   scripts/install.sh --root /tmp/stage target/release/chatpulse
#       # files only, under a staging root (packaging, tests): no user, no chown, no systemctl
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
usage() {
  echo "usage: $0 [--dry-run] [--root DIR] [--config-example FILE] BINARY" >&2
  exit 2
}

dry=0
root=""
example="$here/../config.example.toml"
unit="$here/chatpulse.service"
binary=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry=1 ;;
    --root) [ $# -ge 2 ] || usage; root="${2%/}"; shift ;;
    --config-example) [ $# -ge 2 ] || usage; example="$2"; shift ;;
    -h | --help) usage ;;
    -*) echo "unknown option: $1" >&2; usage ;;
    *) [ -z "$binary" ] || usage; binary="$1" ;;
  esac
  shift
done
[ -n "$binary" ] || usage

bin_path="$root/usr/local/bin/chatpulse"
etc_dir="$root/etc/chatpulse"
config="$etc_dir/chatpulse.toml"
data_dir="$root/var/lib/chatpulse"
unit_path="$root/etc/systemd/system/chatpulse.service"

# Preconditions: say everything that is missing at once.
problems=()
[ -f "$binary" ] && [ -x "$binary" ] || problems+=("binary '$binary' is not an executable file (build it: cargo build --release)")
[ -f "$example" ] || problems+=("config example '$example' not found (run from a ChatPulse checkout or pass --config-example)")
[ -f "$unit" ] || problems+=("unit file '$unit' not found")
if [ -z "$root" ] && [ "$dry" = 0 ] && [ "$(id -u)" != 0 ]; then
  problems+=("must run as root: it writes /usr/local/bin, /etc and /var/lib and creates the 'chatpulse' user (try: sudo $0 $binary, or --dry-run to see the steps)")
fi
if [ -z "$root" ] && ! command -v useradd >/dev/null 2>&1; then
  problems+=("useradd not found (package 'passwd'): needed to create the 'chatpulse' system user")
fi
if [ ${#problems[@]} -gt 0 ]; then
  for p in "${problems[@]}"; do echo "install.sh: $p" >&2; done
  exit 1
fi

# Each step prints what it does; --dry-run stops at the printing.
step() {
  echo "+ $*"
  [ "$dry" = 1 ] || "$@"
}

note=""
[ "$dry" = 0 ] || note=" (dry run: nothing is changed)"
echo "installing ChatPulse${root:+ under $root}$note"

step install -D -m 0755 "$binary" "$bin_path"

if [ -n "$root" ]; then
  echo "  (--root: skipping the 'chatpulse' user and file ownership)"
elif getent passwd chatpulse >/dev/null 2>&1; then
  echo "  user chatpulse exists"
else
  step useradd --system --user-group --no-create-home --home-dir /var/lib/chatpulse \
    --shell /usr/sbin/nologin --comment "ChatPulse" chatpulse
fi

step install -d -m 0700 "$data_dir"
[ -n "$root" ] || step chown chatpulse:chatpulse "$data_dir"

step install -d -m 0755 "$etc_dir"
if [ -e "$config" ]; then
  echo "  $config exists: kept"
else
  step install -m 0640 "$example" "$config"
  [ -n "$root" ] || step chown root:chatpulse "$config"
fi

step install -D -m 0644 "$unit" "$unit_path"
if [ -n "$root" ]; then
  echo "  (--root: skipping systemctl)"
elif [ -d /run/systemd/system ]; then
  step systemctl daemon-reload
  step systemctl enable chatpulse.service
else
  echo "  systemd is not running here: skipping daemon-reload and enable"
fi

cat <<EOF

Next steps:
  1. Edit $config: set your [[channel]] login (see the comments in the file).
     Behind a load balancer also set server.trusted_proxies, shutdown.drain_delay = "15s"
     and server.public_url (scripts/deploy/README.md).
  2. Check it:   sudo -u chatpulse /usr/local/bin/chatpulse check-config --config /etc/chatpulse/chatpulse.toml
  3. Start it:   systemctl start chatpulse && journalctl -u chatpulse -f
     (after an upgrade: systemctl restart chatpulse; overlays reconnect by themselves)
     The first start prints the dashboard admin password and the overlay URL to the journal.
  4. Probe it:   curl -fsS http://127.0.0.1:8080/health/ready
EOF
