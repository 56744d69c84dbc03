#!/usr/bin/env bash
# emulated_pi.sh up|down|status -- an SSH-reachable emulated Raspberry Pi on 127.0.0.1.
#
# A Debian bookworm arm64 userland (python3.11 + numpy, onnxruntime and ai-edge-litert aarch64
# wheels) whose own /usr/sbin/sshd runs in a chroot; every aarch64 binary runs under
# qemu-aarch64 via binfmt_misc, with QEMU_CPU set to the Pi's core (pi4: cortex-a72, pi5:
# cortex-a76). qemu's default "max" CPU made ai-edge-litert's int8 path silently WRONG (SME
# kernels), so the core is pinned for sshd and, through `SetEnv`, for every session.
#
# `up` writes $EDGEPACK_BOARDS/emulated-pi.json (host, port, user, key, known_hosts) for the
# tests; `down` stops sshd and unmounts, keeping the rootfs cached for the next `up`.
# Root only: apt, mount (binfmt_misc, proc), chroot. About 40 s with the rootfs cached.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${EDGEPACK_PI_CACHE:-/var/tmp/edgepack-emulated-pi}
R=${EDGEPACK_PI_ROOTFS:-$CACHE/rootfs}
BOARDS=${EDGEPACK_BOARDS:-/tmp/edgepack-boards}
PORT=${EDGEPACK_PI_PORT:-2223}
KIND=${EDGEPACK_PI_KIND:-pi4}
U=pi
# the host's pins, so a fidelity difference is the board's kernels, not another release
WHEELS="numpy==2.4.6 onnxruntime==1.32.0 ai-edge-litert==2.3.0"
SITE="$R/usr/local/lib/python3.11/dist-packages"
PIDFILE="$R/run/sshd-edgepack.pid"
case $KIND in pi5) QCPU=cortex-a76 ;; *) QCPU=cortex-a72 ;; esac
export QEMU_CPU=$QCPU
log() { echo "[emulated-pi +${SECONDS}s] $*" >&2; }

need_root() {
  if [ "$(id -u)" != 0 ]; then log "needs root (apt, mount, chroot)"; exit 3; fi
}

apt_deps() {
  local need=()
  for p in qemu-user-static binfmt-support debootstrap openssh-client; do
    dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
  done
  if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
}

binfmt_on() {
  if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc \
      || { log "cannot mount binfmt_misc (no kernel support?)"; exit 4; }
  fi
  if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    update-binfmts --enable qemu-aarch64
  fi
  grep -q '^enabled' /proc/sys/fs/binfmt_misc/qemu-aarch64 || echo 1 > /proc/sys/fs/binfmt_misc/qemu-aarch64
  # F (fix binary): the interpreter is opened now, so it also works inside the chroot
  grep -q '^flags:.*F' /proc/sys/fs/binfmt_misc/qemu-aarch64 \
    || { log "qemu-aarch64 is registered without the F flag; it cannot run inside a chroot"; exit 4; }
}

rootfs() {
  if [ ! -x "$R/usr/sbin/sshd" ]; then
    rm -rf "$R.partial"; mkdir -p "$(dirname "$R")"
    "$HERE/make_arm64_rootfs.sh" "$R.partial" openssh-server,openssh-sftp-server >/dev/null
    rm -rf "$R"; mv "$R.partial" "$R"   # a half-built rootfs is never reused
  fi
  if [ "$(cat "$SITE/.edgepack-wheels" 2>/dev/null)" != "$WHEELS" ]; then
    local py=${PYTHON:-python3} platforms=()
    # pip needs every manylinux tag listed: manylinux2014 alone finds only old builds
    for g in 17 24 26 27 28 31 34 35 36; do platforms+=(--platform "manylinux_2_${g}_aarch64"); done
    rm -rf "$SITE"; mkdir -p "$SITE"
    # shellcheck disable=SC2086
    "$py" -m pip install -q --disable-pip-version-check --only-binary=:all: "${platforms[@]}" \
      --platform manylinux2014_aarch64 --platform linux_aarch64 --python-version 3.11 \
      --implementation cp --abi cp311 --target "$SITE" $WHEELS
    echo "$WHEELS" > "$SITE/.edgepack-wheels"
  fi
}

accounts_and_sshd() {
  if [ ! -s "$R/etc/passwd" ]; then   # maintainer scripts never ran in this rootfs
    cp "$R/usr/share/base-passwd/passwd.master" "$R/etc/passwd"
    cp "$R/usr/share/base-passwd/group.master" "$R/etc/group"
    awk -F: '{print $1":*:19000:0:99999:7:::"}' "$R/etc/passwd" > "$R/etc/shadow"
    chmod 640 "$R/etc/shadow"
  fi
  grep -q '^sshd:' "$R/etc/passwd" || echo 'sshd:x:100:65534::/run/sshd:/usr/sbin/nologin' >> "$R/etc/passwd"
  if ! grep -q "^$U:" "$R/etc/passwd"; then
    echo "$U:x:1000:1000:emulated pi:/home/$U:/bin/bash" >> "$R/etc/passwd"
    echo "$U:x:1000:" >> "$R/etc/group"
    echo "$U:*:19000:0:99999:7:::" >> "$R/etc/shadow"   # '*': no password, not locked
  fi
  mkdir -p "$R/home/$U/.ssh" "$R/run/sshd" "$R/var/log" "$R/tmp" "$BOARDS"
  chmod 1777 "$R/tmp"; chmod 755 "$R/run/sshd"
  echo raspberrypi > "$R/etc/hostname"
  printf '127.0.0.1 localhost\n127.0.1.1 raspberrypi\n' > "$R/etc/hosts"
  # keys are made natively (fast): the host key lives in the rootfs, the client key with the boards
  [ -f "$R/etc/ssh/ssh_host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$R/etc/ssh/ssh_host_ed25519_key"
  [ -f "$BOARDS/client_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C edgepack-tests -f "$BOARDS/client_ed25519"
  cp "$BOARDS/client_ed25519.pub" "$R/home/$U/.ssh/authorized_keys"
  chown -R 1000:1000 "$R/home/$U"; chmod 700 "$R/home/$U/.ssh"; chmod 600 "$R/home/$U/.ssh/authorized_keys"
  echo "[127.0.0.1]:$PORT $(cut -d' ' -f1,2 "$R/etc/ssh/ssh_host_ed25519_key.pub")" > "$BOARDS/emulated-pi.known_hosts"
  cat > "$R/etc/ssh/sshd_config.edgepack" <<CONF
Port $PORT
ListenAddress 127.0.0.1
HostKey /etc/ssh/ssh_host_ed25519_key
PidFile /run/sshd-edgepack.pid
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin no
AllowUsers $U
PrintMotd no
Subsystem sftp internal-sftp
LogLevel VERBOSE
# qemu reads QEMU_CPU at every exec and sshd scrubs the environment: sessions get it here
SetEnv QEMU_CPU=$QCPU
CONF
  "$HERE/fake_pi_cpu_files.sh" "$R" "$KIND"
}

# the pid file outlives a board cut off with its machine's run: the pid counts only while that
# process lives inside this rootfs (another process may have the number by now)
running() {
  [ -f "$PIDFILE" ] && [ "$(readlink "/proc/$(cat "$PIDFILE")/root" 2>/dev/null)" = "$R" ]
}
sshd_log() { tail -n 3 "$R/var/log/sshd-edgepack.log" 2>/dev/null | tr '\n' ' '; }

up() {
  need_root
  SECONDS=0
  apt_deps; binfmt_on; log "binfmt ok"
  rootfs; log "rootfs and wheels ok"
  if running; then
    log "already running"  # its /proc is mounted: the board's files are written before that
  else
    release  # a board whose sshd died (killed, or a run cut off) left its mounts and sessions
    accounts_and_sshd
    mountpoint -q "$R/proc" || mount -t proc proc "$R/proc"
    mountpoint -q "$R/proc/cpuinfo" || mount --bind "$R/etc/edgepack/cpuinfo" "$R/proc/cpuinfo"
    mountpoint -q "$R/dev/pts" || mount -t devpts -o newinstance,ptmxmode=0666 devpts "$R/dev/pts" 2>/dev/null || true
    chroot "$R" /usr/sbin/sshd -f /etc/ssh/sshd_config.edgepack -E /var/log/sshd-edgepack.log \
      || { log "the board's sshd did not start: $(sshd_log)"; exit 1; }
  fi
  for _ in $(seq 1 150); do
    ssh-keyscan -T 2 -p "$PORT" 127.0.0.1 >/dev/null 2>&1 && break; sleep 0.2
  done
  ssh -p "$PORT" -i "$BOARDS/client_ed25519" -o UserKnownHostsFile="$BOARDS/emulated-pi.known_hosts" \
    -o StrictHostKeyChecking=yes -o BatchMode=yes "$U@127.0.0.1" \
    'python3 -c "import numpy, onnxruntime, ai_edge_litert"' \
    || { log "the board is up but its runtimes do not import (sshd log: $(sshd_log))"; exit 5; }
  cat > "$BOARDS/emulated-pi.json" <<JSON
{"name": "emulated-pi", "url": "ssh://$U@127.0.0.1:$PORT", "key": "$BOARDS/client_ed25519",
 "known_hosts": "$BOARDS/emulated-pi.known_hosts", "kind": "$KIND", "qemu_cpu": "$QCPU",
 "rootfs": "$R", "sshd_pid_file": "$PIDFILE", "emulated": true}
JSON
  log "up: sshd pid $(cat "$PIDFILE") on 127.0.0.1:$PORT, user $U, QEMU_CPU=$QCPU"
}

# release: end every process still inside the rootfs and unmount what `up` mounted. Why before
# a fresh `up` too: the board's files are written under $R/proc, which a mounted /proc hides
release() {
  # sessions still open keep qemu processes inside the rootfs: end them before unmounting
  for pid in $(ls /proc | grep -E '^[0-9]+$'); do
    if [ "$(readlink "/proc/$pid/root" 2>/dev/null)" = "$R" ]; then kill "$pid" 2>/dev/null || true; fi
  done
  sleep 0.3
  for m in "$R/dev/pts" "$R/proc/cpuinfo" "$R/proc"; do
    if mountpoint -q "$m"; then umount "$m" || umount -l "$m"; fi
  done
}

down() {
  if running; then kill "$(cat "$PIDFILE")"; fi
  rm -f "$PIDFILE" "$BOARDS/emulated-pi.json"
  release
  log "down"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) if running; then echo "running pid $(cat "$PIDFILE") port $PORT"; else echo stopped; exit 1; fi ;;
  *) echo "usage: emulated_pi.sh up|down|status" >&2; exit 2 ;;
esac
