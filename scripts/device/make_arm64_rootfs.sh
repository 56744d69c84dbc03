#!/usr/bin/env bash
# make_arm64_rootfs.sh DIR [extra,debian,packages]
#
# A Debian bookworm arm64 userland for qemu-aarch64, built without running any emulated code:
#   1. debootstrap --foreign downloads every .deb and unpacks the essential set (native);
#   2. every downloaded .deb is unpacked natively (dpkg-deb | tar). Maintainer scripts never
#      run: fine for python3 + wheels + sshd, not for apt/dpkg inside the rootfs.
# Why not a second-stage debootstrap: it runs dpkg under emulation, several minutes instead of
# about 30 s. Needs root (device nodes, ownership).
set -euo pipefail
DIR=${1:?usage: make_arm64_rootfs.sh DIR [extra,packages]}
EXTRA=${2:-}
MIRROR=${MIRROR:-}   # empty: debootstrap's own default mirror
INC=python3${EXTRA:+,$EXTRA}
debootstrap --arch=arm64 --foreign --variant=minbase --include="$INC" bookworm "$DIR" \
  ${MIRROR:+"$MIRROR"} >/dev/null
# --keep-directory-symlink keeps the merged-/usr links (/bin -> usr/bin ...): plain
# `dpkg-deb -x` replaces them with directories and breaks every /bin/* path
for deb in "$DIR"/var/cache/apt/archives/*.deb; do
  dpkg-deb --fsys-tarfile "$deb" | tar -x --keep-directory-symlink -C "$DIR"
done
rm -f "$DIR"/var/cache/apt/archives/*.deb
# debootstrap links proc -> /proc when it believes it runs in a container; make them folders
for d in proc sys; do
  if [ -L "$DIR/$d" ]; then rm "$DIR/$d"; fi
  mkdir -p "$DIR/$d"
done
echo "rootfs ready: $(du -sh "$DIR" | cut -f1)"
