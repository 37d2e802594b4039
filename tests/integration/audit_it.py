"""Helpers for the audit-log integration tests (test_audit_events.py): read the audit log a real
ternd writes (DATA_DIR/audit/audit.log, one JSON record a line), wait for records with a deadline,
run `tern audit`, model how ternd bounds hostile strings and how `tern audit show` prints them, and
run a ternd inside a private mount namespace whose /dev/log is a socket the test listens on.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import threading
import time
from pathlib import Path

from tern_it import TIMEOUT, Ternd, tern_binary, ternd_binary


# ---------------------------------------------------------------------------------------------
# reading the log

def audit_dir(t: Ternd) -> Path:
    return t.data_dir / "audit"


def series(adir: Path) -> list[Path]:
    """audit.log.000001, ... then audit.log: the files of the log, oldest first."""
    rotated = sorted(p for p in adir.glob("audit.log.*")
                     if re.fullmatch(r"audit\.log\.\d{6}", p.name))
    cur = adir / "audit.log"
    return rotated + ([cur] if cur.exists() else [])


def raw_log(t: Ternd) -> bytes:
    return b"".join(p.read_bytes() for p in series(audit_dir(t)))


def log_lines(t: Ternd) -> list[bytes]:
    """The complete lines of the log (a line still being written is left out)."""
    data = raw_log(t)
    lines = data.split(b"\n")
    return lines[:-1]  # after the last newline: "" or a torn line


def records(t: Ternd) -> list[dict]:
    return [json.loads(line) for line in log_lines(t)]


def wait_records(t: Ternd, pred, n=1, timeout=TIMEOUT, what="records") -> list[dict]:
    """Polls the log until at least n records satisfy pred; returns all that do."""
    deadline = time.monotonic() + timeout
    while True:
        found = [r for r in records(t) if pred(r)]
        if len(found) >= n:
            return found
        if time.monotonic() > deadline:
            tail = "\n".join(l.decode(errors="replace") for l in log_lines(t)[-15:])
            raise AssertionError(f"{timeout}s on, the audit log has {len(found)} of the {n} "
                                 f"{what} expected; its last lines:\n{tail}")
        time.sleep(0.02)


def wait_record(t: Ternd, pred, timeout=TIMEOUT, what="record") -> dict:
    return wait_records(t, pred, 1, timeout, what)[0]


def session_of_port(t: Ternd, port: int, timeout=TIMEOUT) -> str:
    """The session id of the connect record for the client's source port."""
    r = wait_record(t, lambda r: r["event"] == "connect" and r.get("port") == port, timeout,
                    f"connect record for client port {port}")
    return r["session"]


def session_records(t: Ternd, sid: str, until="disconnect", timeout=TIMEOUT) -> list[dict]:
    """The records of session sid, once its `until` record is written."""
    wait_record(t, lambda r: r.get("session") == sid and r["event"] == until, timeout,
                f"{until} record of session {sid}")
    return [r for r in records(t) if r.get("session") == sid]


def one(recs: list[dict], event: str, **match) -> dict:
    """The single record of this event (whose fields equal match) among recs."""
    found = [r for r in recs
             if r["event"] == event and all(r.get(k) == v for k, v in match.items())]
    assert len(found) == 1, f"expected one {event} record with {match}, found {len(found)}:\n" + \
        "\n".join(json.dumps(r) for r in recs)
    return found[0]


def events(recs: list[dict]) -> list[str]:
    return [r["event"] for r in recs]


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------------
# tern audit

def tern_audit(*args, conf: Path | None = None, timeout=60) -> subprocess.CompletedProcess:
    """`tern audit ARGS... [-c conf]`, bytes out."""
    cmd = [str(tern_binary()), "audit", *map(str, args)]
    if conf is not None:
        cmd += ["-c", str(conf)]
    return subprocess.run(cmd, capture_output=True, timeout=timeout)


def assert_no_crash(p: subprocess.CompletedProcess, what: str):
    err = p.stderr.decode(errors="replace")
    assert 0 <= p.returncode < 128, \
        f"{what}: killed by a signal or crashed (status {p.returncode}):\n{err}"
    assert b"Sanitizer" not in p.stderr and b"runtime error:" not in p.stderr, p.stderr


def assert_verifies(t: Ternd, *extra):
    """`tern audit verify -c CONF` on the whole series: exit 0, intact, every record counted."""
    n = len(log_lines(t))
    p = tern_audit("verify", *extra, conf=t.conf_path)
    out = p.stdout.decode(errors="replace")
    assert p.returncode == 0, f"verify exit {p.returncode}:\n{out}\n{p.stderr.decode()}"
    nfiles = len(series(audit_dir(t)))
    assert out.startswith(f"intact: {n} records in {nfiles} file"), out
    return out


# ---------------------------------------------------------------------------------------------
# what ternd makes of hostile strings, and how `tern audit show` prints them

def _utf8_len(b: bytes, i: int) -> int:
    """As src/audit/record.c utf8_len: the length of the valid sequence at i, else 0."""
    c = b[i]
    if c < 0x80:
        return 1
    if 0xC2 <= c <= 0xDF:
        n = 2
    elif c & 0xF0 == 0xE0:
        n = 3
    elif 0xF0 <= c <= 0xF4:
        n = 4
    else:
        return 0
    piece = b[i:i + n]
    if len(piece) < n:
        return 0
    try:
        piece.decode("utf-8")  # strict: no overlongs, no surrogates, nothing past U+10FFFF
    except UnicodeDecodeError:
        return 0
    return n


def bounded(raw: bytes, limit: int = 1000) -> str:
    """The string ternd records for raw bytes from a client: each byte that starts no valid UTF-8
    sequence becomes U+FFFD, and past `limit` bytes it is cut with "...[+N bytes]"."""
    out = bytearray()
    i = 0
    while i < len(raw):
        n = _utf8_len(raw, i)
        piece = raw[i:i + n] if n else "\ufffd".encode()
        if len(out) + len(piece) > limit:
            break
        out += piece
        i += n if n else 1
    s = out.decode("utf-8")
    if i < len(raw):
        s += f"...[+{len(raw) - i} bytes]"
    return s


_BIDI = {0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)}


def shown(s: str) -> str:
    """How `tern audit show` prints a string (doc/tern.1): C0 controls and DEL as \\xNN, C1 and
    bidirectional controls as \\uNNNN, a backslash doubled."""
    out = []
    for ch in s:
        o = ord(ch)
        if o < 0x20 or o == 0x7F:
            out.append(f"\\x{o:02x}")
        elif ch == "\\":
            out.append("\\\\")
        elif 0x80 <= o <= 0x9F or o in _BIDI:
            out.append(f"\\u{o:04x}")
        else:
            out.append(ch)
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# syslog: a ternd in its own mount namespace, with /dev/log a socket we listen on

# Run by `unshare --mount --propagation private`: in the new namespace only, a small tmpfs goes
# over /dev holding the few device nodes a daemon needs (bind-mounted from the real /dev) and
# `log`, a bind mount of the test's socket; then it becomes ternd. Nothing is mounted in the
# namespace the tests run in, and the namespace goes away with its last process, ternd.
_NS_SCRIPT = r'''
set -eu
work=$1 sock=$2 ternd=$3
shift 3
mkdir -p "$work/realdev"
mount --bind /dev "$work/realdev"
mount -t tmpfs -o mode=0755,size=256k tern-it-dev /dev
for n in null zero full random urandom; do
  : > "/dev/$n"
  mount --bind "$work/realdev/$n" "/dev/$n"
done
ln -s /proc/self/fd /dev/fd
ln -s /proc/self/fd/0 /dev/stdin
ln -s /proc/self/fd/1 /dev/stdout
ln -s /proc/self/fd/2 /dev/stderr
: > /dev/log
mount --bind "$sock" /dev/log
umount "$work/realdev"
exec "$ternd" "$@"
'''

# glibc syslog(3) on a local socket: "<PRI>Mmm dd hh:mm:ss TAG[PID]: MESSAGE"
SYSLOG_RE = re.compile(rb"^<(\d+)>([A-Z][a-z]{2} [ 0-9]\d \d\d:\d\d:\d\d) ([^\[: ]+)\[(\d+)\]: "
                       rb"(.*)$", re.S)


class SyslogSink:
    """A Unix datagram socket (the /dev/log of ternd's namespace) and a thread draining it."""

    def __init__(self, path: Path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        os.chmod(path, 0o666)  # ternd writes to it after dropping to its own user
        self.sock.settimeout(0.1)
        self.datagrams: list[bytes] = []
        self.lock = threading.Lock()
        self.stopping = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopping:
            try:
                d = self.sock.recv(1 << 20)
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.datagrams.append(d)

    def messages(self) -> list[tuple[int, str, int, bytes]]:
        """(priority, tag, pid, message) of each datagram; asserts each is in syslog form."""
        with self.lock:
            dgrams = list(self.datagrams)
        out = []
        for d in dgrams:
            m = SYSLOG_RE.match(d)
            assert m, f"not a syslog(3) datagram: {d[:200]!r}"
            out.append((int(m.group(1)), m.group(3).decode(), int(m.group(4)), m.group(5)))
        return out

    def close(self):
        self.stopping = True
        self.thread.join(5)
        self.sock.close()


def put_in_namespace(t: Ternd, sock: Path) -> Path:
    """Makes t.start() run ternd through unshare in a private mount namespace whose /dev/log is
    sock. The wrapper execs all the way down, so t.pid is ternd's pid."""
    work = t.root / "ns"
    work.mkdir()
    wrapper = t.root / "ternd-in-namespace"
    unshare = shutil.which("unshare")
    assert unshare, "unshare(1) (util-linux) is needed for the syslog test"
    wrapper.write_text("#!/bin/sh\n"
                       f"exec {unshare} --mount --propagation private -- /bin/sh -c '{_NS_SCRIPT}' "
                       f"ternd-ns '{work}' '{sock}' '{ternd_binary()}' \"$@\"\n")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    t.binary = wrapper
    return work


def host_mounts() -> str:
    with open("/proc/self/mountinfo") as f:
        return f.read()
