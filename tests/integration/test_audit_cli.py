"""`tern audit` as an admin runs it: the real `tern` binary (tern_it.tern_binary()) on a log in the
data dir of a (not started) ternd, found through -c. ternd does not write the log yet, so the log is
written here by a small writer that follows the format of src/audit/record.h and log.h on its own
(Python's hmac and json, not the C library): that `tern audit verify` finds it intact is also a
check that the format is what the headers say.

- verify: intact with the current key and with the first key, the exit status and the summary on
  standard output; an edited byte is exit 1 naming FILE:LINE and "edited"; a cut end "truncated";
  a missing --key file exit 66;
- show: --json gives the stored lines byte for byte, the table keeps control bytes off the
  terminal, --user picks the whole session;
- trace: the session of a Message-ID from connect to disconnect;
- rotate: with no ternd holding the log it rotates through the C library, which chains from the
  last record written here (verify with the first key proves it), and, run as root, gives the new
  files to the owner of audit/;
- help and usage exit statuses from main().
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tern_it import tern_binary

HOSTILE = "evil\x1b]0;title\x07\r\nfake 250 OK\x00\u202e"


def key_id(key: bytes) -> str:
    return hmac.new(key, b"tern-audit key id", hashlib.sha256).hexdigest()[:16]


class Writer:
    """Writes an audit log as record.h describes it: CANONICAL + ,"mac":"HEX"} per line, where
    mac = HMAC-SHA-256(k(epoch), previous mac || CANONICAL) and k(n+1) = SHA-256(k(n))."""

    def __init__(self, adir: Path):
        self.adir = adir
        adir.mkdir(mode=0o700)
        self.first = os.urandom(32)
        self.key, self.epoch, self.seq, self.prev = self.first, 0, 0, bytes(32)
        self.us = int((time.time() - 3600) * 1e6)
        self.log = adir / "audit.log"
        self.rotations = 0
        self.append("create", {"key_id": key_id(self.key)})

    def append(self, event: str, fields: dict) -> None:
        self.seq += 1
        self.us += 1000
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(self.us // 1_000_000))
        ts += ".%06dZ" % (self.us % 1_000_000)
        dump = lambda v: json.dumps(v, ensure_ascii=True, separators=(",", ":"))  # noqa: E731
        canon = dump({"seq": self.seq, "ts": ts, "epoch": self.epoch, "event": event})[:-1]
        canon += "".join(f",{dump(k)}:{dump(v)}" for k, v in fields.items())
        mac = hmac.new(self.key, self.prev + canon.encode(), hashlib.sha256).digest()
        with open(self.log, "a") as f:
            f.write(canon + ',"mac":"' + mac.hex() + '"}\n')
        self.prev = mac

    def evolve(self, reason: str) -> None:
        self.key = hashlib.sha256(self.key).digest()
        self.epoch += 1
        self.append("epoch", {"key_id": key_id(self.key), "reason": reason})

    def rotate(self) -> None:
        self.rotations += 1
        name = "audit.log.%06d" % self.rotations
        self.log.rename(self.adir / name)
        self.append("rotate", {"prev_file": name, "prev_mac": self.prev.hex(),
                               "key_id": key_id(self.key)})

    def close(self) -> None:
        for name, text, mode in (("key", f"{self.epoch} {self.key.hex()}\n", 0o600),
                                 ("first-key", f"0 {self.first.hex()}\n", 0o400),
                                 ("head", f"{self.seq} {self.prev.hex()}\n", 0o600)):
            p = self.adir / name
            p.write_text(text)
            p.chmod(mode)


def session(w: Writer, sid: str, ip: str, user: str | None, msgid: str | None,
            helo: str = "client.example") -> None:
    w.append("connect", {"session": sid, "ip": ip, "port": 40000, "listener": "submission"})
    w.append("helo", {"session": sid, "verb": "EHLO", "name": helo})
    if user:
        w.append("auth", {"session": sid, "user": user, "mech": "PLAIN", "result": "ok",
                          "code": 235})
    w.append("mail", {"session": sid, "from": user or "x@remote.test", "code": 250,
                      "enh": "2.1.0", "rule": "auth" if user else "local"})
    if msgid:
        w.append("message", {"session": sid, "id": "Q" + sid, "message_id": msgid, "size": 100,
                             "sha256": "ab" * 32, "from": user, "auth_user": user,
                             "rcpts": ["bob@example.org"], "mailboxes": ["bob@example.org"],
                             "files": ["mail/example.org/bob/new/1.M1P1.mx"], "queued": False})
    w.append("disconnect", {"session": sid, "ip": ip, "duration_ms": 5, "bytes_in": 10,
                            "bytes_out": 20, "messages": 1 if msgid else 0})


@pytest.fixture
def logged(ternd_factory):
    """A data dir (ternd not started) whose audit/ holds two files written by Writer: records
    1-13 in audit.log.000001, 14-22 in audit.log, over epochs 0-2."""
    t = ternd_factory(start=False)
    w = Writer(t.data_dir / "audit")
    w.append("start", {"version": "0.1", "config": str(t.conf_path), "config_sha256": "00",
                       "pid": 1})
    session(w, "a1", "192.0.2.7", "alice@example.org", "<m1@client.example>")
    w.evolve("timer")
    session(w, "b2", "198.51.100.9", None, None, helo=HOSTILE)
    w.rotate()
    w.evolve("start")
    session(w, "c3", "192.0.2.8", "carol@example.net", "<m3@client.example>")
    w.append("admin", {"unix_user": "root", "uid": 0, "command": "user",
                       "args": ["lock", "bob@example.org"], "result": "ok"})
    w.close()
    assert w.seq == 22
    t.writer = w
    return t


def tern(t, *args):
    return subprocess.run([str(tern_binary()), "audit", *args, "-c", str(t.conf_path)],
                          capture_output=True, timeout=60)


def test_verify(logged):
    t, adir = logged, logged.data_dir / "audit"
    p = tern(t, "verify")
    assert p.returncode == 0, p.stderr
    out = p.stdout.decode()
    assert out.startswith("intact: 22 records in 2 files\n"), out
    assert "proven: macs checked for 8 of 22 records (those of epoch 2 on)" in out
    assert "end: the log reaches the record" in out
    assert b"first-key is still on this machine" in p.stderr

    offline = t.root / "first-key"
    (adir / "first-key").rename(offline)
    p = tern(t, "verify", "--key", str(offline))
    assert p.returncode == 0, p.stderr
    assert b"proven: every record's mac checked\n" in p.stdout
    assert p.stderr == b""

    p = tern(t, "verify", "--key", str(t.root / "nope"))
    assert p.returncode == 66
    assert b"cannot read the key file" in p.stderr

    # One byte of an old epoch's record: only the first key reaches it.
    log = adir / "audit.log.000001"
    data = log.read_bytes()
    i = data.index(b"198.51.100.9")
    log.write_bytes(data[:i] + b"8" + data[i + 1:])
    assert tern(t, "verify").returncode == 0  # the current key does not reach epoch 1
    p = tern(t, "verify", "--key", str(offline))
    assert p.returncode == 1
    line = data[:i].count(b"\n") + 1
    assert p.stdout.decode().startswith(f"{log}:{line}: edited: its mac does not match"), p.stdout
    log.write_bytes(data)

    # The last two records cut off.
    cur = adir / "audit.log"
    lines = cur.read_bytes().splitlines(keepends=True)
    cur.write_bytes(b"".join(lines[:-2]))
    p = tern(t, "verify", "--key", str(offline))
    assert p.returncode == 1
    assert p.stdout.decode().startswith(f"{cur}:{len(lines) - 1}: truncated: "), p.stdout


def test_show_and_trace(logged):
    t, adir = logged, logged.data_dir / "audit"
    stored = (adir / "audit.log.000001").read_bytes() + (adir / "audit.log").read_bytes()
    p = tern(t, "show", "--json")
    assert p.returncode == 0, p.stderr
    assert p.stdout == stored

    p = tern(t, "show")
    assert p.returncode == 0, p.stderr
    assert p.stdout.count(b"\n") == 1 + 22
    for b in p.stdout:
        assert b >= 0x20 or b == 0x0a, f"control byte {b:#x} on the terminal"
    assert rb'name="evil\x1b]0;title\x07\x0d\x0afake 250 OK\x00\u202e"' in p.stdout

    p = tern(t, "show", "--user", "ALICE@example.org")
    assert p.returncode == 0, p.stderr
    rows = p.stdout.decode().splitlines()[1:]
    assert [r.split()[1] for r in rows] == ["connect", "helo", "auth", "mail", "message",
                                            "disconnect"]
    assert all(r.split()[2] == "a1" for r in rows)

    p = tern(t, "trace", "m3@client.example")
    assert p.returncode == 0, p.stderr
    out = p.stdout.decode()
    assert out.splitlines()[0].startswith("message id=Qc3 message_id=<m3@client.example>")
    assert "sha256=" + "ab" * 32 in out
    assert "a1 " not in out and "b2 " not in out
    p = tern(t, "trace", "<nothing@here>")
    assert p.returncode == 1 and p.stdout == b""


def test_rotate(logged):
    t, adir = logged, logged.data_dir / "audit"
    t.chown()  # as ternd would have it: its files, its folder
    p = tern(t, "rotate")
    assert p.returncode == 0, p.stderr
    assert b"is now audit.log.000002" in p.stdout
    assert sorted(x.name for x in adir.glob("audit.log*")) == [
        "audit.log", "audit.log.000001", "audit.log.000002"]
    if os.geteuid() == 0:
        owner = adir.stat().st_uid
        for name in ("audit.log", "key", "head"):
            assert (adir / name).stat().st_uid == owner, name
    # The C writer chained from the Python one: every mac holds with the first key.
    first = t.root / "first-key"
    first.write_bytes((adir / "first-key").read_bytes())
    p = tern(t, "verify", "--key", str(first))
    assert p.returncode == 0, p.stdout + p.stderr
    assert b"intact: 24 records in 3 files" in p.stdout  # + epoch 3, rotate
    assert b"every record's mac checked" in p.stdout


def test_usage():
    tern_path = str(tern_binary())
    p = subprocess.run([tern_path, "help", "audit"], capture_output=True, timeout=30)
    assert p.returncode == 0 and p.stdout.startswith(b"usage: tern audit verify")
    p = subprocess.run([tern_path, "audit"], capture_output=True, timeout=30)
    assert p.returncode == 64 and b"usage: tern audit" in p.stderr
    p = subprocess.run([tern_path, "--help"], capture_output=True, timeout=30)
    assert b"audit" in p.stdout
