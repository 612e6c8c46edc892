"""ssh and scp to the board: command lines, running them, and their faults as one line.

Every ssh failure people meet on a fresh board (unreachable, root login refused, host key
changed or unknown, scp without sftp-server) becomes a UserError naming the cause and the fix.
"""
from __future__ import annotations

import re
import subprocess

from toolchain.errors import UserError

_TARGET_RE = re.compile(r"^(?:[A-Za-z0-9._][A-Za-z0-9._-]*@)?"
                        r"(?:[A-Za-z0-9][A-Za-z0-9.-]*|\[[0-9A-Fa-f:.]+\])$")


def check_target(target: str) -> str:
    """`[user@]host` (host: name, IPv4 or [IPv6]); anything else is a UserError."""
    t = (target or "").strip()
    if not t or not _TARGET_RE.match(t):
        raise UserError(f"board target {target!r} is not user@host: pass BOARD=root@<board-ip> "
                        f"(e.g. make deploy BOARD=root@192.168.1.50)")
    return t


def target_host(target: str) -> str:
    return target.rsplit("@", 1)[-1].strip("[]")


def ssh_options(cfg) -> list[str]:
    """board.ssh_options, plus BatchMode=yes and ConnectTimeout=10 unless they set their own:
    never a password prompt, never an endless wait."""
    opts = [str(o) for o in cfg.board.ssh_options]
    joined = " ".join(opts).lower()
    if "batchmode" not in joined:
        opts += ["-o", "BatchMode=yes"]
    if "connecttimeout" not in joined:
        opts += ["-o", "ConnectTimeout=10"]
    return opts


def ssh_argv(cfg, target: str, command: str, tty: bool = False) -> list[str]:
    return ["ssh", *ssh_options(cfg), *(["-tt"] if tty else []), target, command]


def scp_argv(cfg, sources: list[str], dest: str, legacy: bool = False) -> list[str]:
    """`scp -r [-O] <options> sources... dest`; -O (the classic scp protocol) for boards whose
    ssh server has no SFTP subsystem (OpenSSH >= 9 scp uses SFTP by default)."""
    return ["scp", "-r", *(["-O"] if legacy else []), *ssh_options(cfg), *sources, dest]


def last_line(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def ssh_fault(target: str, stderr: str, what: str) -> UserError:
    """Turn ssh's own failure (exit 255) into one line naming the cause and the fix."""
    return (known_ssh_fault(target, stderr, what)
            or UserError(f"ssh to {target} failed while {what}: "
                         f"{last_line(stderr) or 'exit 255'}"))


_UNREACHABLE = ("Connection timed out", "No route to host", "Network is unreachable",
                "Connection refused", "Could not resolve hostname", "Operation timed out",
                "Name or service not known", "Connection reset")


def known_ssh_fault(target: str, stderr: str, what: str) -> UserError | None:
    host = target_host(target)
    err = stderr or ""
    for pat in _UNREACHABLE:
        if pat.lower() in err.lower():
            return UserError(
                f"board {target} is unreachable over ssh ({pat}) while {what}: check that it "
                f"is powered and booted from the Vitis AI SD card, the Ethernet cable, and its "
                f"IP address (serial console: ifconfig eth0), then retry with "
                f"BOARD=root@<that-ip>")
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in err:
        return UserError(
            f"the ssh host key of {host} changed (a re-flashed SD card makes a new one) while "
            f"{what}: if this is your board, forget the old key with `ssh-keygen -R {host}`, "
            f"then retry")
    if "Host key verification failed" in err:
        return UserError(
            f"ssh does not know {host}'s host key yet (BatchMode never asks) while {what}: "
            f"log in once with `ssh {target}` and accept the key, or add "
            f"-o StrictHostKeyChecking=accept-new to board.ssh_options")
    if "Permission denied" in err or "Too many authentication failures" in err:
        return UserError(
            f"ssh login to {target} was refused ({last_line(err)}) while {what}: the Vitis AI "
            f"3.0 image (PetaLinux 2022.2) refuses root's default login over ssh, and "
            f"BatchMode never types a password: on the board's serial console set a password "
            f"(`passwd`) and run `ssh-copy-id {target}` from this PC, or paste your public key "
            f"into /home/root/.ssh/authorized_keys there (README, section Board)")
    return None


def _run(argv: list[str], what: str, timeout: float, capture: bool = True):
    try:
        return subprocess.run(argv, capture_output=capture, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise UserError(f"`{argv[0]}` is not installed on this machine (needed for {what}): "
                        f"apt-get install openssh-client") from None
    except subprocess.TimeoutExpired:
        raise UserError(f"no answer from the board within {timeout:.0f} s while {what}: check "
                        f"that it is up (ssh into it by hand) and retry") from None


def run_ssh(cfg, target: str, command: str, what: str, timeout: float = 120):
    """Run one remote command; ssh's own failures become UserError, the remote exit code is
    returned to the caller in the CompletedProcess."""
    proc = _run(ssh_argv(cfg, target, command), what, timeout)
    if proc.returncode == 255:
        raise ssh_fault(target, proc.stderr, what)
    return proc


# The board image has no sftp-server, and OpenSSH >= 9 scp speaks SFTP by default. The server
# says so in different words ("sftp-server: not found", "subsystem request failed"), or just
# drops the channel ("Connection closed"): all of them are worth one retry with -O.
SFTP_MISSING = ("sftp-server", "subsystem request failed", "connection closed",
                "lost connection")


def run_scp(cfg, target: str, sources: list[str], dest: str, what: str,
            timeout: float = 600) -> list[str]:
    """scp -r; retried once with -O (the classic protocol) when the board's ssh server has no
    SFTP subsystem. Returns the argv that worked."""
    argv = scp_argv(cfg, sources, dest)
    proc = _run(argv, what, timeout)
    if proc.returncode != 0:
        fault = known_ssh_fault(target, proc.stderr, what)
        if fault is not None:
            raise fault
        if any(p in (proc.stderr or "").lower() for p in SFTP_MISSING):
            argv = scp_argv(cfg, sources, dest, legacy=True)
            proc = _run(argv, what, timeout)
    if proc.returncode != 0:
        fault = known_ssh_fault(target, proc.stderr, what)
        if fault is not None:
            raise fault
        raise UserError(f"scp to/from {target} failed while {what}: "
                        f"{last_line(proc.stderr) or f'exit {proc.returncode}'}")
    return argv
