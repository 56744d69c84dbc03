"""What a board has, printed as one JSON object. Runs ON THE BOARD: `python3 - < probe.py`.

Standard library only and nothing newer than Python 3.6, so that even a board whose Python is
too old for the runner still says what it has instead of failing with a SyntaxError. Package
versions come from their metadata, without importing the runtimes (an import of onnxruntime
takes seconds under emulation and proves little that the benchmark does not prove anyway).

Emulation: under qemu-user, ``uname`` and ``/proc/cpuinfo`` look like the emulated board, but
the executable behind any other process of this session (the parent shell) is the qemu binary
itself, and its ELF header names the host's architecture.
"""

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile

PACKAGES = ("numpy", "ai-edge-litert", "tflite-runtime", "onnxruntime", "openvino",
            "tensorflow", "tensorflow-cpu")
# ARM CPU part numbers (MIDR) of the cores boards carry
ARM_PARTS = {"0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55",
             "0xd07": "Cortex-A57", "0xd08": "Cortex-A72", "0xd09": "Cortex-A73",
             "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76", "0xd0c": "Neoverse-N1",
             "0xd0d": "Cortex-A77", "0xd41": "Cortex-A78", "0xd44": "Cortex-X1",
             "0xd46": "Cortex-A510", "0xd47": "Cortex-A710", "0xd4b": "Cortex-A78C"}
# ELF e_machine values
MACHINES = {3: "i386", 40: "arm", 62: "x86_64", 183: "aarch64", 243: "riscv64"}


def read(path):
    try:
        with open(path, "rb") as fh:
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return None


def os_name():
    for line in (read("/etc/os-release") or "").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return platform.system()


def cpu_model():
    text = read("/proc/cpuinfo") or ""
    fields = {}
    parts = []
    for line in text.splitlines():
        if ":" in line:
            key, value = (s.strip() for s in line.split(":", 1))
            fields.setdefault(key, value)
            if key == "CPU part":
                parts.append(value)
    core = fields.get("model name") or ARM_PARTS.get(fields.get("CPU part", ""), "")
    board = fields.get("Model") or (read("/sys/firmware/devicetree/base/model") or "").strip("\0")
    if board and core:
        return f"{board} ({len(parts) or os.cpu_count() or 1}x {core})"
    return board or core or platform.processor() or platform.machine()


def cpu_flags():
    """The first core's feature flags ("flags" on x86, "Features" on ARM): whether its int8
    dot products add in 32 bits is read from them on the host (devices/facts.py)."""
    for line in (read("/proc/cpuinfo") or "").splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return value.split()
    return []


def memory_mb():
    info = {}
    for line in (read("/proc/meminfo") or "").splitlines():
        key, _, rest = line.partition(":")
        if rest.strip().endswith("kB"):
            info[key] = int(rest.split()[0]) // 1024
    return info.get("MemTotal"), info.get("MemAvailable")


def packages():
    try:
        from importlib import metadata
    except ImportError:  # Python < 3.8: the runner cannot run here anyway
        return {}
    found = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except Exception:
            continue
    return found


def elf_machine(path):
    try:
        with open(path, "rb") as fh:
            head = fh.read(20)
    except OSError:
        return None
    if head[:4] != b"\x7fELF":
        return None
    order = "little" if head[5] == 1 else "big"
    return MACHINES.get(int.from_bytes(head[18:20], order), "other")


def emulation():
    """(emulated, how we know) for this process; None when it cannot be told.

    A child of ours is looked at, not ourselves: qemu answers for /proc/self, and sshd's own
    processes are not readable by the session.
    """
    try:
        child = subprocess.Popen(["sh", "-c", "read _"], stdin=subprocess.PIPE)
    except OSError:
        return None, "unknown"
    exe = f"/proc/{child.pid}/exe"
    try:
        target = os.readlink(exe)
        machine = elf_machine(exe)
    except OSError:
        target, machine = "", None
    finally:
        child.communicate(b"\n")
    if "qemu" in os.path.basename(target):
        return True, f"the session runs under {target}"
    if machine and machine != platform.machine():
        return True, (f"the session's binaries are {machine}, the userland "
                      f"{platform.machine()}")
    if machine:
        return False, "native"
    return None, "unknown"


def throttling():
    """The Raspberry Pi firmware's throttled flags (under-voltage, capping), when readable."""
    flags = read("/sys/devices/platform/soc/soc:firmware/get_throttled")
    if flags is not None:
        return hex(int(flags.strip() or "0", 16))
    if shutil.which("vcgencmd"):
        try:
            out = subprocess.run(["vcgencmd", "get_throttled"], stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL, timeout=5).stdout.decode()
            return out.strip().partition("=")[2] or None
        except (OSError, subprocess.SubprocessError):
            return None
    return None


def temperature_c():
    raw = read("/sys/class/thermal/thermal_zone0/temp")
    try:
        return round(int(raw.strip()) / 1000.0, 1) if raw else None
    except ValueError:
        return None


def main():
    tmp = tempfile.gettempdir()
    total, available = memory_mb()
    emulated, how = emulation()
    facts = {
        "arch": platform.machine(), "os": os_name(), "kernel": platform.release(),
        "hostname": platform.node(), "python": platform.python_version(),
        "python_executable": sys.executable, "cpu": cpu_model(), "cores": os.cpu_count(),
        "cpu_flags": cpu_flags(),
        "memory_total_mb": total, "memory_available_mb": available, "tmp_dir": tmp,
        "disk_free_mb": shutil.disk_usage(tmp).free // (1 << 20),
        "packages": packages(), "emulated": emulated, "emulation": how,
        "qemu_cpu": os.environ.get("QEMU_CPU"), "throttled": throttling(),
        "temperature_c": temperature_c(),
    }
    sys.stdout.write(json.dumps(facts) + "\n")


if __name__ == "__main__":
    main()
