"""A real OpenSSH server on loopback for the tests (Debian's openssh-server).

The server has its own throwaway host key and accepts one throwaway client key for root;
the client trusts the host key through a known_hosts file, as in production. Used by the
``sshd`` fixture (tests/conftest.py) and by tests that need their own server.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# Debian's openssh-server (installed by .ci/run); the tests run as root. No skip: a
# missing sshd must fail the suite, not hide the tests.
SSHD = "/usr/sbin/sshd"

SCRIPTS = {
    "echo-args": "#!/bin/sh\n# poolwarden-args: A:re([a-z0-9-]{1,32}) N:int[1-100] "
                 "M:enum(on|off)\nprintf '%s|' \"$@\"\necho\nprintf 'to-stderr\\n' >&2\n",
    "fail": "#!/bin/sh\n# poolwarden-args: CODE:int[0-255]\necho failing\nexit \"$1\"\n",
    "sleepy": "#!/bin/sh\n# poolwarden-args: SECONDS:int[1-60]\nsleep \"$1\"\necho woke\n",
    "noisy": "#!/bin/sh\n# poolwarden-args: N:int[1-1000000]\nhead -c \"$1\" /dev/zero "
             "| tr '\\0' x\n",
    "uuid": "#!/bin/sh\n# poolwarden-args: HOST_UUID:uuid\necho \"$1\"\n",
    "free": "#!/bin/sh\n# poolwarden-args: ANY:re(.*)\necho \"$1\"\n",
}


@dataclass
class Sshd:
    port: int
    key_file: Path
    known_hosts: Path
    other_known_hosts: Path
    scripts: Path


def alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_dead(found: list[int], within: float) -> float:
    """Wait until none of ``found`` runs any more (a command's leftovers on the "host");
    how long that took."""
    t0 = time.monotonic()
    while any(alive(p) for p in found):
        assert time.monotonic() - t0 < within, f"still running: {found}"
        time.sleep(0.1)
    return time.monotonic() - t0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
                   check=True)


@contextlib.contextmanager
def start_sshd(tmp: Path, scripts: dict[str, str] | None = None) -> Iterator[Sshd]:
    """Start sshd in ``tmp`` (keys, config, a scripts directory with ``scripts``)."""
    host_key, client_key, other_key = tmp / "host_key", tmp / "client_key", tmp / "other_key"
    for k in (host_key, client_key, other_key):
        keygen(k)
    auth = tmp / "authorized_keys"
    auth.write_text((tmp / "client_key.pub").read_text())
    port = free_port()
    cfg = tmp / "sshd_config"
    cfg.write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {host_key}",
        f"AuthorizedKeysFile {auth}", "PasswordAuthentication no",
        "KbdInteractiveAuthentication no", "StrictModes no", f"PidFile {tmp / 'sshd.pid'}",
        "UsePAM no", "PermitRootLogin prohibit-password", ""]))
    Path("/run/sshd").mkdir(exist_ok=True)
    host_pub = (tmp / "host_key.pub").read_text().split()
    known = tmp / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    other_pub = (tmp / "other_key.pub").read_text().split()
    other_known = tmp / "other_known_hosts"
    other_known.write_text(f"[127.0.0.1]:{port} {other_pub[0]} {other_pub[1]}\n")
    directory = tmp / "scripts"
    directory.mkdir()
    for name, body in (SCRIPTS if scripts is None else scripts).items():
        (directory / name).write_text(body)
        (directory / name).chmod(0o755)
    (tmp / "outside").write_text("#!/bin/sh\necho outside\n")
    (tmp / "outside").chmod(0o755)
    (directory / "escape").symlink_to(tmp / "outside")
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(cfg)], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError as exc:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                log = proc.stderr.read() if proc.stderr else b""
                raise RuntimeError(f"sshd did not start: {log!r}") from exc
            time.sleep(0.05)
    try:
        yield Sshd(port, client_key, known, other_known, directory)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


