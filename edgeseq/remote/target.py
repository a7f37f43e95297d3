"""A remote device named by `ssh://[user@]host[:port][?python=PATH&cache=DIR]`, reached through the
system's `ssh` client.

The system client is used (not asyncssh or paramiko) because it already knows how the user logs in:
~/.ssh/config (aliases, ProxyJump, keys), the agent, known_hosts. edgeseq stores no credentials and
never prompts (BatchMode=yes); one ControlMaster connection per target is shared by every command of
a run and closed at its end. EDGESEQ_SSH_OPTIONS adds client options (e.g. `-i KEY`).
"""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from ..errors import RemoteError, UsageError

DEFAULT_CACHE = "~/.cache/edgeseq-remote"
CONNECT_TIMEOUT_S = 10
_AGENT = Path(__file__).with_name("agent.py")

# what ssh (exit 255) or the remote shell print, mapped to one line and the fix
_UNREACHABLE = ("Connection refused", "No route to host", "Could not resolve hostname", "Connection timed out",
                "Network is unreachable", "Connection reset", "Operation timed out", "Name or service not known")
_AUTH = ("Permission denied", "Too many authentication failures", "no mutual signature", "Authentication failed")


@dataclass(frozen=True)
class Target:
    """Where to run: the login, the Python that runs edgeseq there, and the folder edgeseq owns there."""
    host: str
    user: str | None = None
    port: int | None = None
    python: str = "python3"
    cache: str = DEFAULT_CACHE

    @property
    def url(self) -> str:
        """The device as --on names it, its non-default settings included (they make another device)."""
        settings = [f"{k}={v}" for k, v, default in (("python", self.python, "python3"),
                                                       ("cache", self.cache, DEFAULT_CACHE)) if v != default]
        return f"ssh://{self.login}" + (f":{self.port}" if self.port else "") + \
            ("?" + "&".join(settings) if settings else "")

    @property
    def address(self) -> str:
        """ssh://login[:port], for messages about the connection."""
        return f"ssh://{self.login}" + (f":{self.port}" if self.port else "")

    @property
    def login(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    @property
    def name(self) -> str:
        """How reports label this device: host, with the port when it is not 22."""
        return self.host + (f":{self.port}" if self.port else "")

    # -- running commands ------------------------------------------------------------------------
    def ssh_argv(self, command: str | None = None) -> list[str]:
        """The ssh command line for `command` (a shell line run by the remote login shell)."""
        argv = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={CONNECT_TIMEOUT_S}",
                "-o", "ControlMaster=auto", "-o", f"ControlPath={_control_dir()}/%C", "-o", "ControlPersist=120",
                *shlex.split(os.environ.get("EDGESEQ_SSH_OPTIONS", ""))]
        if self.port:
            argv += ["-p", str(self.port)]
        argv.append(self.login)
        if command is not None:
            argv += ["--", command]
        return argv

    def run(self, argv: list[str], what: str = "a command") -> str:
        """Run `argv` there (each word quoted for the remote shell); its stdout."""
        return self.shell(shlex.join(argv), what)

    def shell(self, line: str, what: str = "a command") -> str:
        """Run a shell line there; its stdout. A failure is a one-line RemoteError: ssh's own (unreachable,
        login refused), an edgeseq command's error and hint, or the command's last stderr line."""
        r = subprocess.run(self.ssh_argv(line), stdin=subprocess.DEVNULL, capture_output=True)
        err = r.stderr.decode(errors="replace")
        if r.returncode != 0:
            raise self.error(r.returncode, err, what)
        return r.stdout.decode(errors="replace")

    def agent(self, command: str, *args: str, python: str | None = None) -> Any:
        """Run one command of the remote helper (agent.py) with the remote Python; its JSON answer."""
        out = self.run([python or self.python, "-c", _AGENT.read_text(), command, *args],
                       what=f"the remote helper ({command})")
        try:
            return json.loads(out.strip().splitlines()[-1])
        except (json.JSONDecodeError, IndexError):
            raise RemoteError(f"{self.address}: the remote helper ({command}) answered {out.strip()[-200:]!r}",
                              f"check that `{self.python}` on {self.host} is CPython >= 3.10") from None

    def error(self, code: int, stderr: str, what: str) -> RemoteError:
        """One line for a failed ssh call: the transport's failures by their text, else the command's."""
        lines = [ln.strip() for ln in stderr.splitlines() if ln.strip() and not ln.startswith("Warning: Permanently")]
        said = next((ln for ln in lines if ln.startswith("error:")), None)
        if said:  # an edgeseq command there failed: its own error and hint
            hint = next((ln[5:].strip() for ln in lines if ln.startswith("hint:")), None)
            return RemoteError(f"on {self.name}: {said[6:].strip()}", hint)
        last = lines[-1] if lines else f"exit status {code}"
        if any(p in stderr for p in ("No space left on device", "Disk quota exceeded")):
            return RemoteError(f"{self.name} has no disk space left for {what} under {self.cache}",
                               f"free space there, or use another folder: {self.address}?cache=/path/with/space")
        if code == 255:
            if any(p in stderr for p in _UNREACHABLE):
                return RemoteError(f"cannot reach {self.name}: {last}", f"check that {self.host} is up and sshd "
                                   f"listens on port {self.port or 22}: ssh -p {self.port or 22} {self.login} true")
            if "Host key verification failed" in stderr or "REMOTE HOST IDENTIFICATION HAS CHANGED" in stderr:
                return RemoteError(f"{self.name}'s host key is unknown or changed", "connect once with plain "
                                   "`ssh` to check and accept it (edgeseq never accepts host keys itself)")
            if any(p in stderr for p in _AUTH):
                return RemoteError(f"login to {self.address} refused: {last}", "edgeseq logs in with keys only "
                                   "(BatchMode): ssh-copy-id the key, load it in ssh-agent, or name it in "
                                   "~/.ssh/config (IdentityFile)")
            return RemoteError(f"ssh to {self.name} failed: {last}", "run the same login with `ssh -v` to see why")
        if code == 127 or "not found" in last:
            return RemoteError(f"{self.name} has no {self.python}: {last}", "install Python >= 3.10 there, or "
                               f"name one: {self.address}?python=/path/to/python3")
        return RemoteError(f"{what} failed on {self.name}: {last[:300]}", "run it with --debug, or over plain ssh")

    # -- the shared connection -------------------------------------------------------------------
    def master_pid(self) -> int | None:
        """The pid of this target's ControlMaster connection, if one is open."""
        r = subprocess.run([*self.ssh_argv()[:-1], "-O", "check", self.ssh_argv()[-1]], capture_output=True,
                           text=True)
        m = re.search(r"pid=(\d+)", r.stderr)
        return int(m.group(1)) if m else None

    def close(self) -> None:
        """Close the shared connection (it would otherwise linger ControlPersist seconds)."""
        subprocess.run([*self.ssh_argv()[:-1], "-O", "exit", self.ssh_argv()[-1]], capture_output=True)


def _control_dir() -> str:
    """A private folder for the connection sockets, short enough for a Unix socket's path limit."""
    d = Path(tempfile.gettempdir()) / f"edgeseq-ssh-{os.getuid()}"
    d.mkdir(mode=0o700, exist_ok=True)
    return str(d)


def parse(url: str) -> Target:
    """`ssh://[user@]host[:port][?python=PATH&cache=DIR]` as a Target; anything else is a UsageError."""
    example = "e.g. --on ssh://pi@raspberrypi.local or --on ssh://me@10.0.0.5:2222?python=python3.11"
    if not url.startswith("ssh://"):
        raise UsageError(f"--on takes ssh://[user@]host[:port], got '{url}'", example)
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise UsageError(f"--on {url}: the port is not a number from 1 to 65535", example) from None
    if not parts.hostname or parts.password or parts.path not in ("", "/") or parts.fragment:
        raise UsageError(f"--on {url}: expected ssh://[user@]host[:port] (no password, no path)", example)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    unknown = set(query) - {"python", "cache"}
    if unknown:
        raise UsageError(f"--on {url}: unknown setting(s) {', '.join(sorted(unknown))}",
                         "the settings are python=PATH (the Python there) and cache=DIR (edgeseq's folder there)")
    return Target(host=parts.hostname, user=unquote(parts.username) if parts.username else None, port=port,
                  python=query.get("python", "python3"), cache=query.get("cache", DEFAULT_CACHE))
