#!/usr/bin/env bash
# loopback_sshd.sh up|down|status -- a plain x86_64 "board" on 127.0.0.1: Debian's own sshd
# and python3 with numpy, but NO inference runtime. The tests use it as the board a user forgot
# to install the runtime on (and as a native, non-emulated device).
#
# `up` writes $EDGEPACK_BOARDS/loopback.json. As root it logs in a dedicated user `edgetest`
# (created if missing) and installs openssh-server and python3-numpy; as another user it can
# only log in as that user (sshd cannot switch users) and needs both installed already.
set -euo pipefail
BOARDS=${EDGEPACK_BOARDS:-/tmp/edgepack-boards}
DIR="$BOARDS/loopback"
PORT=${EDGEPACK_LOOPBACK_PORT:-2222}
SSHD=/usr/sbin/sshd   # absolute: sshd re-executes itself
if [ "$(id -u)" = 0 ]; then U=edgetest; else U=$(id -un); fi
log() { echo "[loopback-sshd] $*" >&2; }
running() { [ -f "$DIR/sshd.pid" ] && kill -0 "$(cat "$DIR/sshd.pid")" 2>/dev/null; }

up() {
  if [ "$(id -u)" = 0 ]; then
    need=()
    for p in openssh-server openssh-client python3-numpy; do
      dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
    done
    if [ ${#need[@]} -gt 0 ]; then
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    fi
    if ! id "$U" >/dev/null 2>&1; then
      useradd -m -s /bin/bash "$U"
      usermod -p '*' "$U"   # no password, but not locked (UsePAM no refuses '!' accounts)
    fi
    mkdir -p /run/sshd; chmod 755 /run/sshd
  fi
  [ -x "$SSHD" ] || { log "no $SSHD: apt-get install openssh-server"; exit 3; }
  mkdir -p "$DIR"; chmod 755 "$BOARDS" "$DIR"
  [ -f "$DIR/host_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C loopback-host -f "$DIR/host_ed25519"
  [ -f "$BOARDS/client_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C edgepack-tests -f "$BOARDS/client_ed25519"
  cp "$BOARDS/client_ed25519.pub" "$DIR/authorized_keys"; chmod 644 "$DIR/authorized_keys"
  echo "[127.0.0.1]:$PORT $(cut -d' ' -f1,2 "$DIR/host_ed25519.pub")" > "$BOARDS/loopback.known_hosts"
  # StrictModes no: the keys live under /tmp, whose mode the owner check would refuse
  cat > "$DIR/sshd_config" <<CONF
Port $PORT
ListenAddress 127.0.0.1
HostKey $DIR/host_ed25519
PidFile $DIR/sshd.pid
AuthorizedKeysFile $DIR/authorized_keys
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin no
AllowUsers $U
X11Forwarding no
PrintMotd no
Subsystem sftp internal-sftp
CONF
  if ! running; then
    "$SSHD" -t -f "$DIR/sshd_config"
    "$SSHD" -f "$DIR/sshd_config" -E "$DIR/sshd.log"
  fi
  for _ in $(seq 1 50); do
    ssh-keyscan -T 1 -p "$PORT" 127.0.0.1 >/dev/null 2>&1 && break; sleep 0.1
  done
  cat > "$BOARDS/loopback.json" <<JSON
{"name": "loopback", "url": "ssh://$U@127.0.0.1:$PORT", "key": "$BOARDS/client_ed25519",
 "known_hosts": "$BOARDS/loopback.known_hosts", "sshd_pid_file": "$DIR/sshd.pid", "emulated": false}
JSON
  log "up: sshd pid $(cat "$DIR/sshd.pid") on 127.0.0.1:$PORT, user $U"
}

down() {
  if running; then kill "$(cat "$DIR/sshd.pid")"; fi
  rm -f "$DIR/sshd.pid" "$BOARDS/loopback.json"
  log "down"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) if running; then echo "running pid $(cat "$DIR/sshd.pid") port $PORT"; else echo stopped; exit 1; fi ;;
  *) echo "usage: loopback_sshd.sh up|down|status" >&2; exit 2 ;;
esac
