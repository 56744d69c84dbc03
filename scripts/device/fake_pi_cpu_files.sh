#!/usr/bin/env bash
# fake_pi_cpu_files.sh ROOTFS [pi4|pi5]
#
# Raspberry-Pi-like CPU identity as plain files inside ROOTFS: /proc/cpuinfo (bind-mounted over
# the chroot's /proc by emulated_pi.sh), /sys/devices/system/cpu/* and the device-tree model.
# Why: pytorch-cpuinfo (inside onnxruntime and ai-edge-litert's XNNPACK) parses these; reading
# the host's x86 files under qemu-aarch64 it segfaults at import. /sys must NOT be mounted over
# them.
set -euo pipefail
R=${1:?usage: fake_pi_cpu_files.sh ROOTFS [pi4|pi5]}
KIND=${2:-pi4}
case $KIND in
  pi4) PART=0xd08; VAR=0x0; REV=3; MODEL="Raspberry Pi 4 Model B Rev 1.5"; MAXF=1800000
       FEAT="fp asimd evtstrm crc32 cpuid"; REVCODE=d03115 ;;
  pi5) PART=0xd0b; VAR=0x4; REV=1; MODEL="Raspberry Pi 5 Model B Rev 1.0"; MAXF=2400000
       FEAT="fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp"
       REVCODE=d04170 ;;
  *) echo "usage: fake_pi_cpu_files.sh ROOTFS pi4|pi5" >&2; exit 2 ;;
esac
for d in proc sys; do
  if [ -L "$R/$d" ]; then echo "$R/$d is a symlink; refusing" >&2; exit 1; fi
done
mkdir -p "$R/proc" "$R/sys/devices/system/cpu" "$R/proc/device-tree" \
  "$R/sys/firmware/devicetree/base" "$R/etc/edgepack"
{
  for i in 0 1 2 3; do
    printf 'processor\t: %d\nBogoMIPS\t: 108.00\nFeatures\t: %s\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: %s\nCPU part\t: %s\nCPU revision\t: %d\n\n' \
      "$i" "$FEAT" "$VAR" "$PART" "$REV"
  done
  printf 'Revision\t: %s\nSerial\t\t: 10000000deadbeef\nModel\t\t: %s\n' "$REVCODE" "$MODEL"
} > "$R/etc/edgepack/cpuinfo"
cp "$R/etc/edgepack/cpuinfo" "$R/proc/cpuinfo"
C="$R/sys/devices/system/cpu"
for f in possible present online; do echo 0-3 > "$C/$f"; done
echo 3 > "$C/kernel_max"
for i in 0 1 2 3; do
  mkdir -p "$C/cpu$i/topology" "$C/cpu$i/cpufreq" "$C/cpu$i/regs/identification"
  echo 0 > "$C/cpu$i/topology/physical_package_id"
  echo "$i" > "$C/cpu$i/topology/core_id"
  echo "$i" > "$C/cpu$i/topology/thread_siblings_list"
  echo 0-3 > "$C/cpu$i/topology/core_siblings_list"
  echo 0-3 > "$C/cpu$i/topology/package_cpus_list"
  echo 0-3 > "$C/cpu$i/topology/cluster_cpus_list"
  echo "$MAXF" > "$C/cpu$i/cpufreq/cpuinfo_max_freq"
  echo 600000 > "$C/cpu$i/cpufreq/cpuinfo_min_freq"
  printf '0x00000000%02x%x%x%03x%x\n' 0x41 "$VAR" 15 "$PART" "$REV" \
    > "$C/cpu$i/regs/identification/midr_el1"
done
printf '%s\0' "$MODEL" > "$R/proc/device-tree/model"
printf '%s\0' "$MODEL" > "$R/sys/firmware/devicetree/base/model"
