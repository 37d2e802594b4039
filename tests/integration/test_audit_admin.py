"""Admin actions in the audit log: every `tern user` / `tern mailbox` action that changes
something leaves one `admin` record (unix_user, uid, command, args, result), through ternd's
control socket DATA_DIR/audit/control when ternd runs and written by tern itself when it does
not. Real binaries throughout (tern_it.tern_binary() beside $TERND); the records are read back
with `tern audit show --event admin --json`, and `tern audit verify` must find the log intact.

- with ternd running: user add, mailbox add, add-member, user lock each leave one record with
  the right command and args, uid == os.getuid(), our user name and result "ok"; a refused
  action (user del of an unknown user) is recorded with its reason as the result;
- no record, nor anything else in the log, holds the password used;
- with ternd stopped: tern writes the record itself, the files stay ternd's (run as root), and
  ternd then starts on the same log, which still verifies;
- before ternd ever made the log, tern makes none and says so in one warning line;
- [audit] enabled = no: nothing written, no warning;
- hostile clients on the control socket (garbage, an oversized line, silence, too many at
  once) get "error ..." or are dropped, and ternd goes on serving SMTP and the socket.

Only admin and start records are relied on: which SMTP events ternd records is another test's.
"""
from __future__ import annotations

import json
import os
import pwd
import socket
import subprocess
import time
from pathlib import Path

from tern_it import make_message, send_message, tern_binary

SECRET = "Sw0rdf1sh-not-in-any-log"


def tern(t, *args, stdin: bytes | None = None, ok=True):
    """Runs `tern ARGS -c CONF` for ternd t; returns the CompletedProcess (bytes)."""
    p = subprocess.run([str(tern_binary()), *args, "-c", str(t.conf_path)], input=stdin,
                       capture_output=True, timeout=60)
    if ok and p.returncode != 0:
        raise AssertionError(f"tern {' '.join(args)} exited {p.returncode}:\n"
                             f"{p.stdout.decode(errors='replace')}"
                             f"{p.stderr.decode(errors='replace')}")
    return p


def admin_records(t) -> list[dict]:
    p = tern(t, "audit", "show", "--event", "admin", "--json")
    return [json.loads(line) for line in p.stdout.decode().splitlines()]


def assert_intact(t):
    p = tern(t, "audit", "verify", ok=False)
    assert p.returncode == 0, p.stdout.decode() + p.stderr.decode()
    assert p.stdout.startswith(b"intact: "), p.stdout


def control_path(t) -> Path:
    return t.data_dir / "audit" / "control"


def me() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


def check_record(r: dict, command: str, args: list[str], result="ok"):
    assert r["event"] == "admin"
    assert r["command"] == command, r
    assert r["args"] == args, r
    assert r["uid"] == os.getuid(), r
    assert r["unix_user"] == me(), r
    assert r["result"] == result, r


def assert_no_secret(t):
    for f in (t.data_dir / "audit").glob("audit.log*"):
        assert SECRET.encode() not in f.read_bytes(), f


# ---------------------------------------------------------------------------------------------
# through ternd

def test_actions_recorded_through_ternd(ternd_factory):
    t = ternd_factory(mailboxes=[])
    assert control_path(t).is_socket()
    assert control_path(t).stat().st_mode & 0o777 == 0o600
    assert admin_records(t) == []

    p = tern(t, "user", "add", "erin@example.org", "--name", "Erin", "--password-stdin",
             stdin=(SECRET + "\n").encode())
    assert b"audit" not in p.stderr, p.stderr  # recorded: no warning
    tern(t, "mailbox", "add", "sales@example.org", "alice", "--quota", "10M")
    tern(t, "mailbox", "add-member", "sales@example.org", "bob@example.org")
    tern(t, "user", "lock", "bob@example.org")
    tern(t, "mailbox", "check", "sales@example.org")
    tern(t, "user", "list")  # read-only: nothing recorded
    tern(t, "mailbox", "members", "sales@example.org")
    tern(t, "mailbox", "list")

    recs = admin_records(t)
    assert len(recs) == 5, recs
    check_record(recs[0], "user add",
                 ["erin@example.org", "--name", "Erin", "--password-stdin"])
    check_record(recs[1], "mailbox add", ["sales@example.org", "alice", "--quota", "10M"])
    check_record(recs[2], "mailbox add-member", ["sales@example.org", "bob@example.org"])
    check_record(recs[3], "user lock", ["bob@example.org"])
    check_record(recs[4], "mailbox check", ["sales@example.org"])
    assert [r["seq"] for r in recs] == sorted(r["seq"] for r in recs)
    assert "control: admin record" in t.log_text()

    # a refusal after the configuration loaded is recorded with its reason
    p = tern(t, "user", "del", "nobody@example.org", ok=False)
    assert p.returncode == 67, p.stderr
    recs = admin_records(t)
    assert len(recs) == 6
    r = recs[-1]
    assert r["command"] == "user del" and r["args"] == ["nobody@example.org"]
    assert r["result"] != "ok" and "nobody@example.org" in r["result"], r
    assert r["result"] in p.stderr.decode(), (r, p.stderr)
    # refused before the configuration was even read: nothing to record
    tern(t, "user", "del", "not-an-address", ok=False)
    assert len(admin_records(t)) == 6

    assert_no_secret(t)
    assert_intact(t)
    assert t.alive()


def test_password_file_path_not_recorded(ternd_factory, tmp_path):
    t = ternd_factory()
    pwfile = tmp_path / "pw"
    pwfile.write_text(SECRET + "\n")
    tern(t, "user", "passwd", "alice@example.org", "--password-file", str(pwfile))
    recs = admin_records(t)
    check_record(recs[-1], "user passwd", ["alice@example.org", "--password-file"])
    assert str(pwfile) not in json.dumps(recs)
    assert_no_secret(t)


# ---------------------------------------------------------------------------------------------
# without ternd

def test_written_directly_when_ternd_is_stopped(ternd_factory):
    t = ternd_factory()
    t.stop()  # it made the log; now nobody holds it
    adir = t.data_dir / "audit"
    assert not control_path(t).exists()
    owner = adir.stat().st_uid

    p = tern(t, "user", "add", "frank@example.org", "--password-stdin",
             stdin=(SECRET + "\n").encode())
    assert p.stderr == b"", p.stderr
    tern(t, "user", "unlock", "frank@example.org")  # was not locked: still an action
    recs = admin_records(t)
    assert len(recs) == 2
    check_record(recs[0], "user add", ["frank@example.org", "--password-stdin"])
    check_record(recs[1], "user unlock", ["frank@example.org"])
    for name in ("audit.log", "key", "head", "lock"):
        assert (adir / name).stat().st_uid == owner, name  # still ternd's (we may be root)
    assert_no_secret(t)
    assert_intact(t)

    # ternd goes on with the same log, and takes the next record through its socket
    t.start()
    tern(t, "user", "del", "frank@example.org")
    recs = admin_records(t)
    check_record(recs[-1], "user del", ["frank@example.org"])
    assert_intact(t)


def test_stale_socket_of_a_killed_ternd(ternd_factory):
    t = ternd_factory()
    t.kill9()  # leaves audit/control behind, with nobody listening
    assert control_path(t).is_socket()
    p = tern(t, "user", "lock", "alice@example.org")
    assert p.stderr == b"", p.stderr
    check_record(admin_records(t)[-1], "user lock", ["alice@example.org"])
    t.start()  # replaces the stale socket
    tern(t, "user", "unlock", "alice@example.org")
    check_record(admin_records(t)[-1], "user unlock", ["alice@example.org"])
    assert_intact(t)


def test_no_log_yet(ternd_factory):
    t = ternd_factory(start=False)
    p = tern(t, "user", "lock", "alice@example.org")
    err = p.stderr.decode()
    assert err.count("\n") == 1, err
    assert "warning: done, but not recorded in the audit log" in err, err
    assert "ternd has not created its audit log" in err, err
    assert not (t.data_dir / "audit").exists()  # the CLI made nothing


def test_disabled(ternd_factory):
    t = ternd_factory(config={"audit.enabled": "no"})
    p = tern(t, "user", "lock", "alice@example.org")
    assert p.stderr == b"", p.stderr
    tern(t, "mailbox", "check")
    assert not (t.data_dir / "audit").exists()
    t.stop()
    p = tern(t, "user", "unlock", "alice@example.org")
    assert p.stderr == b"", p.stderr
    assert not (t.data_dir / "audit").exists()


# ---------------------------------------------------------------------------------------------
# hostile clients on the control socket

def ask(t, data: bytes, shut=True, timeout=10.0) -> bytes:
    """Sends data on the control socket and returns everything ternd answers until it closes."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(str(control_path(t)))
    try:
        try:
            s.sendall(data)
            if shut:
                s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass
        out = b""
        while True:
            try:
                chunk = s.recv(4096)
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
        return out
    finally:
        s.close()


def deliver_one(t):
    _, msg = make_message(to="bob@example.org")
    with t.smtp() as c:
        c.ehlo()
        send_message(c, "someone@client.test", ["bob@example.org"], msg)
        c.quit()


def test_hostile_control_clients(ternd_factory):
    t = ternd_factory()
    before = len(t.mailbox("bob@example.org"))
    bad = [b"garbage\n", b"\x00\xff\xfe{\n", b"[1,2,3]\n", b"{\"command\":\"x\"}\n",
           b"{\"command\":\"x\",\"args\":[1],\"result\":\"ok\"}\n",
           b"{\"command\":\"\",\"args\":[],\"result\":\"ok\"}\n",
           b"{\"command\":\"x\",\"command\":\"y\",\"result\":\"ok\"}\n",
           b"[" * 5000 + b"\n"]
    for data in bad:
        r = ask(t, data)
        assert r.startswith(b"error ") and r.endswith(b"\n") and r.count(b"\n") == 1, (data, r)
    # a line over 16 KiB: refused before it ends
    r = ask(t, b"{\"command\":\"" + b"a" * 20000 + b"\"}\n")
    assert r.startswith(b"error the request is longer than 16384 bytes"), r
    # silence: dropped after 5 s
    start = time.monotonic()
    r = ask(t, b"", shut=False, timeout=15)
    assert r.startswith(b"error no whole request line"), r
    assert 4 <= time.monotonic() - start < 10
    # connected, then gone: nothing happens
    ask(t, b"", shut=True)
    # more than 32 at once: the rest are told to retry, the first 32 still get served
    socks = []
    for _ in range(40):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        for _ in range(100):  # a full backlog says EAGAIN until ternd accepts
            try:
                s.connect(str(control_path(t)))
                break
            except BlockingIOError:
                time.sleep(0.01)
        socks.append(s)
    time.sleep(0.5)
    busy = 0
    for s in socks[32:]:
        if s.recv(4096).startswith(b"error ternd serves 32 control clients"):
            busy += 1
    assert busy == 8
    for s in socks:
        s.close()

    # a well-formed request from anyone who can connect: recorded under its real uid, whatever
    # it claims; args past 64 are summed up
    req = {"command": "test", "args": [str(i) for i in range(100)], "result": "ok",
           "uid": 12345, "unix_user": "mallory"}
    r = ask(t, json.dumps(req).encode() + b"\n")
    assert r.startswith(b"ok ") and r.endswith(b"\n"), r
    seq = int(r[3:])
    rec = [x for x in admin_records(t) if x["seq"] == seq]
    assert len(rec) == 1
    check_record(rec[0], "test", [str(i) for i in range(63)] + ["...[+37 more args]"])

    assert t.alive()
    deliver_one(t)
    assert len(t.mailbox("bob@example.org")) == before + 1
    assert_intact(t)
