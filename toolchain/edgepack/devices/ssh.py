"""SSH connections to devices, with a host-key policy that never guesses.

Host keys are checked against the device's known_hosts file. An unknown host is refused, with
its fingerprint, unless the caller passes ``trust_new_host`` (``--trust-new-host``), which
appends the key to that file once. A key that differs from the recorded one is always refused:
either someone is in the middle or the board was reinstalled, and only a person can tell which.
Login is by key file or agent; there is no password path.

Commands and SFTP uploads run with a deadline, and a command's captured output is capped (a
board that floods stdout fails the command instead of filling this machine's memory; stderr
keeps its last lines). A connection that drops mid-command (sshd killed, cable pulled) is told
apart from a command that fails, so the caller can clean up and say what happened.
"""

from __future__ import annotations

import base64
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DeviceConnectionError, DeviceError, HostKeyError
from .inventory import Device

#: seconds between keepalives: a dead peer is noticed while a long benchmark runs
KEEPALIVE_S = 5
#: stdout a command may send back unless its caller allows more
MAX_STDOUT_BYTES = 64 << 20
#: the tail of stderr kept (for error messages)
STDERR_TAIL_BYTES = 64 << 10


@dataclass
class Completed:
    """A command that ran to the end on the device."""

    exit_status: int
    stdout: bytes
    stderr: bytes


class DroppedError(DeviceConnectionError):
    """The connection went away while a command was running."""


class CommandTimeout(DeviceConnectionError):
    """A command did not finish before its deadline."""


def fingerprint(key: Any) -> str:
    """OpenSSH's SHA256 fingerprint of a host key, as ``ssh-keygen -lf`` prints it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return f"{key.get_name()} SHA256:{base64.b64encode(digest).decode().rstrip('=')}"


class Connection:
    """An open SSH connection to one device."""

    def __init__(self, device: Device, client: Any):
        self.device = device
        self._client = client
        self._sftp: Any = None

    @property
    def active(self) -> bool:
        transport = self._client.get_transport()
        return transport is not None and transport.is_active()

    def run(self, command: str, stdin: bytes | None = None, timeout: float = 60,
            max_stdout: int = MAX_STDOUT_BYTES) -> Completed:
        """Run ``command`` through the login shell; its exit status is returned, not raised.

        Raises DroppedError if the connection goes away before the command exits,
        CommandTimeout after ``timeout`` seconds (the command may still be running then), and
        DeviceError when it sends more than ``max_stdout`` bytes on stdout (it is stopped).
        """
        transport = self._client.get_transport()
        if transport is None or not transport.is_active():
            raise self._dropped(command)
        try:
            channel = transport.open_session(timeout=min(timeout, 30))
            channel.exec_command(command)
            if stdin:
                channel.sendall(stdin)
            channel.shutdown_write()
        except (OSError, EOFError) as exc:
            raise self._dropped(command) from exc
        except Exception as exc:  # paramiko.SSHException: channel refused
            if not self.active:
                raise self._dropped(command) from exc
            raise
        out, err = bytearray(), bytearray()
        deadline = time.monotonic() + timeout
        with channel:
            while True:
                busy = False
                if channel.recv_ready():
                    out += channel.recv(1 << 16)
                    busy = True
                    self._check_size(out, max_stdout, command)
                if channel.recv_stderr_ready():
                    err += channel.recv_stderr(1 << 16)
                    del err[:-STDERR_TAIL_BYTES]
                    busy = True
                if busy:
                    continue
                if channel.exit_status_ready():
                    break
                if not transport.is_active():
                    raise self._dropped(command)
                if time.monotonic() > deadline:
                    raise CommandTimeout(f"{self.device.name}: no answer within {timeout:.0f} s "
                                         f"to `{_short(command)}`",
                                         hint="raise --timeout for slow boards")
                time.sleep(0.01)
            while channel.recv_ready():  # the tail that arrived with the exit status
                out += channel.recv(1 << 16)
                self._check_size(out, max_stdout, command)
            while channel.recv_stderr_ready():
                err += channel.recv_stderr(1 << 16)
                del err[:-STDERR_TAIL_BYTES]
            status = channel.exit_status
        # a closed channel without an exit status: sshd died or the network went away
        if status == -1 or not transport.is_active():
            raise self._dropped(command)
        return Completed(status, bytes(out), bytes(err))

    def _check_size(self, out: bytearray, limit: int, command: str) -> None:
        if len(out) > limit:
            raise DeviceError(f"{self.device.name}: `{_short(command)}` sent more than "
                              f"{limit >> 20} MB of output; stopped",
                              hint="the board is not running edgepack's runner as expected")

    def put(self, local: Path, remote: str, timeout: float = 120) -> None:
        """Upload one file over SFTP within ``timeout`` seconds (the connection's SFTP session
        is reused; after a timeout it is dropped, as its state is unknown)."""
        deadline = time.monotonic() + timeout

        def on_the_clock(sent: int, total: int) -> None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{sent:,} of {total:,} bytes sent")

        try:
            if self._sftp is None:
                self._sftp = self._client.open_sftp()
            self._sftp.get_channel().settimeout(max(1.0, timeout))  # a board that stops answering
            self._sftp.put(str(local), remote, callback=on_the_clock)
        except TimeoutError as exc:  # socket.timeout too: the channel's own deadline
            self._drop_sftp()
            raise CommandTimeout(f"{self.device.name}: the upload of {local.name} did not finish "
                                 f"within {timeout:.0f} s ({exc or 'no answer'})",
                                 hint="raise --timeout for slow links") from exc
        except (OSError, EOFError) as exc:
            if not self.active:
                raise self._dropped(f"upload {local.name}") from exc
            raise DeviceConnectionError(f"{self.device.name}: cannot upload {local.name} to "
                                        f"{remote}: {exc}") from exc

    def _drop_sftp(self) -> None:
        if self._sftp is not None:
            try:
                self._sftp.close()
            except Exception:  # a session stuck mid-transfer: nothing to close politely
                pass
            self._sftp = None

    def close(self) -> None:
        self._drop_sftp()
        self._client.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _dropped(self, what: str) -> DroppedError:
        d = self.device
        return DroppedError(f"{d.name}: the connection to {d.host}:{d.port} dropped during "
                            f"`{_short(what)}`",
                            hint="check the board is powered and reachable, then run again")


def connect(device: Device, trust_new_host: bool = False, timeout: float = 15) -> Connection:
    """Open an authenticated connection, checking the host key first (see the module doc)."""
    import paramiko

    client = paramiko.SSHClient()
    known = device.known_hosts
    if known.is_file():
        try:
            client.load_host_keys(str(known))
        except (OSError, paramiko.SSHException) as exc:
            raise HostKeyError(f"{device.name}: cannot read known_hosts: {exc}",
                               path=known) from exc
    client.set_missing_host_key_policy(_TrustOnce(device) if trust_new_host
                                       else _Refuse(device))
    key = device.key
    if key is not None and not key.is_file():
        raise DeviceConnectionError(f"{device.name}: no key file {key}",
                                    hint="fix the device's key with `edgepack devices add --force`")
    try:
        client.connect(device.host, port=device.port, username=device.user,
                       key_filename=str(key) if key else None, look_for_keys=key is None,
                       allow_agent=True, timeout=timeout, banner_timeout=timeout,
                       auth_timeout=timeout)
    except HostKeyError:
        client.close()
        raise
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise HostKeyError(
            f"{device.name}: the host key of {device.address} has CHANGED (it now presents "
            f"{fingerprint(exc.key)}, {known} has {fingerprint(exc.expected_key)}): someone may "
            "be intercepting the connection, or the board was reinstalled",
            hint=f"if you know why, remove the old key with `ssh-keygen -R '{device.address}' "
                 f"-f {known}` and run again with --trust-new-host") from exc
    except paramiko.AuthenticationException as exc:
        client.close()
        raise DeviceConnectionError(
            f"{device.name}: {device.user}@{device.host} refused the login ({exc})",
            hint="add your public key to ~/.ssh/authorized_keys on the board, or give the "
                 "device a --key") from exc
    except (TimeoutError, OSError, paramiko.SSHException, EOFError) as exc:
        client.close()
        raise DeviceConnectionError(
            f"{device.name}: cannot connect to {device.host}:{device.port}: {exc or type(exc)}",
            hint="is the board on and sshd running? `edgepack devices check` tells") from exc
    client.get_transport().set_keepalive(KEEPALIVE_S)
    return Connection(device, client)


class _Refuse:
    """Refuses an unknown host, naming its fingerprint so a person can check it."""

    def __init__(self, device: Device):
        self.device = device

    def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
        d = self.device
        raise HostKeyError(
            f"{d.name}: the host key of {hostname} is not in {d.known_hosts} "
            f"(it presents {fingerprint(key)})",
            hint="compare it with `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on the "
                 "board, then run again with --trust-new-host to accept it once")


class _TrustOnce:
    """Accepts an unknown host and appends its key to the device's known_hosts file."""

    def __init__(self, device: Device):
        self.device = device

    def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
        path = self.device.known_hosts
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as fh:
            fh.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
        client.get_host_keys().add(hostname, key.get_name(), key)


def _short(command: str) -> str:
    text = " ".join(command.split())
    return text if len(text) <= 60 else text[:57] + "..."
