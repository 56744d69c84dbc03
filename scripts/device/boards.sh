#!/usr/bin/env bash
# boards.sh up|down -- every test board: the emulated Raspberry Pi (aarch64, runtimes installed)
# and the loopback x86 board (python3 + numpy, no runtime). `up` exits with the emulated board's
# code: 3 not root, 4 no binfmt_misc (the device tests then skip and say so); `down` stops both.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
case "${1:-}" in
  up) "$HERE/loopback_sshd.sh" up || exit $?
      "$HERE/emulated_pi.sh" up ;;
  down) "$HERE/emulated_pi.sh" down; "$HERE/loopback_sshd.sh" down ;;
  *) echo "usage: boards.sh up|down" >&2; exit 2 ;;
esac
