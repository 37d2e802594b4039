"""`tern queue list|show|flush|delete|hold|release` against real spools: entries written by the
test (hostile addresses and headers, delivery states of every kind) and entries a real ternd
queued for an authenticated user's foreign recipient; the real `tern` binary beside $TERND.

- list and show, as text and JSON: every state column, held entries, the header escaped for a
  terminal and never the body, exit statuses (0, 1 no such entry, 64 usage, 65 bad id or an
  unreadable state);
- the actions with ternd stopped: the files move, the state changes, one admin record each
  written by tern itself (refusals with their reason), files made as root given to ternd's user;
- the same with ternd running: each action reaches ternd's queue manager through the control
  socket (its log says so) and its admin record arrives through the same socket;
- hostile queue requests on the control socket are refused and change nothing;
- a real delivery attempt (to a closed port) leaves a state list shows, and flush makes the
  queue manager try again at once.
"""
from __future__ import annotations

import json
import os
import pwd
import smtplib
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tern_it import crypt_hash, free_port, make_message, tern_binary

PW = "queue-cli-pw"
USERS = [
    ("alice@example.org", "Alice Liddell", "", crypt_hash(PW)),
    ("bob@example.org", "Bob Smith", "", crypt_hash(PW)),
]
FUTURE = 4102444800  # 2100-01-01T00:00:00Z
ESC = "\x1b"


# ---------------------------------------------------------------------------------------------
# helpers

def tern(t, *args, ok=None):
    """`tern ARGS -c CONF` for ternd t (bytes out); ok: the exit status it must have."""
    p = subprocess.run([str(tern_binary()), *map(str, args), "-c", str(t.conf_path)],
                       capture_output=True, timeout=60)
    assert 0 <= p.returncode < 128, p
    assert b"Sanitizer" not in p.stderr and b"runtime error:" not in p.stderr, p.stderr
    if ok is not None and p.returncode != ok:
        raise AssertionError(f"tern {' '.join(map(str, args))} exited {p.returncode}, not {ok}:"
                             f"\n{p.stdout.decode(errors='replace')}"
                             f"{p.stderr.decode(errors='replace')}")
    return p


def out(p) -> str:
    return p.stdout.decode(errors="replace")


def admin_records(t) -> list[dict]:
    p = tern(t, "audit", "show", "--event", "admin", "--json", ok=0)
    return [json.loads(line) for line in p.stdout.decode().splitlines()]


def queue_records(t) -> list[tuple[str, list, str]]:
    return [(r["command"], r["args"], r["result"]) for r in admin_records(t)
            if r["command"].startswith("queue ")]


def assert_intact(t):
    p = tern(t, "audit", "verify")
    assert p.returncode == 0 and p.stdout.startswith(b"intact: "), p


_n = iter(range(1, 1000))


def new_id() -> str:
    n = next(_n)
    return f"{1732491234 + n}-{n:06d}-4242-{n}-{n:04x}"


def spool(t, sub="queue") -> Path:
    return t.data_dir / "spool" / sub


def owner(t) -> tuple[int, int]:
    pw = pwd.getpwnam(t.run_user)
    return pw.pw_uid, pw.pw_gid


def mkdir(t, d: Path):
    """d (in the spool) as ternd would make it: 0700, its user's."""
    if not d.exists():
        d.mkdir(mode=0o700)
        if os.geteuid() == 0:
            os.chown(d, *owner(t))


def put(t, path: Path, data: bytes):
    for d in (path.parent.parent, path.parent):
        mkdir(t, d)
    path.write_bytes(data)
    os.chmod(path, 0o600)
    if os.geteuid() == 0:
        os.chown(path, *owner(t))


def make_entry(t, qid, rcpts, frm="alice@example.org", auth="alice@example.org", msg=None,
               sub="queue", state=None, queued=None):
    """An entry as spool.c writes it (ID.msg, then ID.env; ID.state when given)."""
    msg = msg or (b"Received: from client.test\r\nFrom: <alice@example.org>\r\n"
                  b"Subject: plain\r\n\r\nBODY-SECRET\r\n")
    mkdir(t, spool(t, "tmp").parent)
    mkdir(t, spool(t, "tmp"))
    put(t, spool(t, sub) / f"{qid}.msg", msg)
    env = {"version": 1, "id": qid, "from": frm, "auth_user": auth,
           "queued": queued or int(qid.split("-")[0]), "size": len(msg), "rcpts": rcpts}
    put(t, spool(t, sub) / f"{qid}.env", json.dumps(env).encode())
    if state is not None:
        put(t, spool(t, sub) / f"{qid}.state", json.dumps(state).encode())
    return qid


def state_of(qid, rcpts, attempts=0, next_try=0, replies=None, statuses=None):
    replies = replies or {}
    statuses = statuses or {}
    return {"version": 1, "id": qid, "attempts": attempts, "last_try": 1732500000 if attempts
            else 0, "next_try": next_try, "delay_notified": False,
            "rcpts": [{"addr": a, "status": statuses.get(a, "pending"),
                       "code": int(replies[a][:3]) if a in replies else 0,
                       "reply": replies.get(a, ""),
                       "remote": "mx.far.example[192.0.2.1]" if a in replies else "",
                       "done": 1732500001 if statuses.get(a, "pending") != "pending" else 0}
                      for a in rcpts]}


def read_state(t, qid, sub="queue") -> dict:
    return json.loads((spool(t, sub) / f"{qid}.state").read_text())


def files_of(t, qid) -> dict[str, list[str]]:
    return {sub: sorted(p.name[len(qid):] for p in spool(t, sub).glob(f"{qid}.*"))
            for sub in ("queue", "hold")}


def stopped_ternd(factory, **kw):
    """A ternd started once (it makes its audit log) and stopped again."""
    t = factory(users=USERS, **kw)
    t.stop()
    return t


def wait_for(cond, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# ---------------------------------------------------------------------------------------------
# list and show

def hostile_spool(t):
    """Four entries: fresh, tried (two recipients, one sent), hostile, held."""
    fresh = make_entry(t, new_id(), ["friend@far.example"])
    tried_rcpts = ["bob@far.example", "carol@other.example"]
    tried = new_id()
    make_entry(t, tried, tried_rcpts, state=state_of(
        tried, tried_rcpts, attempts=2, next_try=FUTURE,
        replies={"bob@far.example": "451 4.7.1 Greylisted, try again",
                 "carol@other.example": "250 2.0.0 Ok: queued"},
        statuses={"carol@other.example": "sent"}))
    evil = make_entry(t, new_id(), [f"evil{ESC}[31m@x.example", "bidi\u202e@x.example"],
                      frm=f"mallory{ESC}]0;pwned\x07@x.example",
                      msg=b"Received: from client.test\r\nSubject: hi\x1b]0;pwned\x07\r\n"
                          b"X-Bidi: \xe2\x80\xaeevil\r\nX-Raw: \xff\xfe\r\n\r\nBODY-SECRET\r\n")
    held = make_entry(t, new_id(), ["later@far.example"], sub="hold", auth="")
    return fresh, tried, evil, held


def test_list_and_show(ternd_factory):
    t = stopped_ternd(ternd_factory)
    fresh, tried, evil, held = hostile_spool(t)

    p = tern(t, "queue", "list", ok=0)
    text = out(p)
    assert ESC not in text and "\u202e" not in text and "\x07" not in text, text
    lines = text.splitlines()
    assert [l.split()[0] for l in lines[:4]] == [fresh, tried, evil, held], text
    assert lines[0].endswith("  alice@example.org  queued"), lines[0]
    assert "  bob@far.example,carol@other.example  alice@example.org  queued  2 tries  next " \
           "2100-01-01T00:00:00Z  last: 451 4.7.1 Greylisted, try again" in lines[1], lines[1]
    assert f"evil\\x1b[31m@x.example,bidi\\u202e@x.example" in lines[2], lines[2]
    assert "mallory\\x1b]0;pwned\\x07@x.example" in lines[2], lines[2]
    assert lines[3].endswith("  -  held"), lines[3]
    size = sum((spool(t, s) / f"{q}.msg").stat().st_size
               for s, q in (("queue", fresh), ("queue", tried), ("queue", evil), ("hold", held)))
    assert lines[4] == f"4 messages, {size} bytes, 1 on hold", text
    assert p.stderr == b""

    p = tern(t, "queue", "list", "--json", ok=0)
    assert max(p.stdout) < 0x80  # ASCII only
    got = {e["id"]: e for e in json.loads(p.stdout)}
    assert list(got) == [fresh, tried, evil, held]
    assert got[fresh]["attempts"] == 0 and got[fresh]["next_try"] is None
    assert got[fresh]["last_reply"] is None and got[fresh]["held"] is False
    assert got[tried]["attempts"] == 2 and got[tried]["next_try"] == "2100-01-01T00:00:00Z"
    assert got[tried]["last_try"] == "2024-11-25T02:00:00Z"
    assert got[tried]["last_reply"] == "451 4.7.1 Greylisted, try again"
    assert got[evil]["rcpts"] == [f"evil{ESC}[31m@x.example", "bidi\u202e@x.example"]
    assert got[held]["held"] is True and got[held]["auth_user"] == ""

    p = tern(t, "queue", "show", tried, ok=0)
    text = out(p)
    assert f"id           {tried}\nstatus       queued\n" in text, text
    assert "attempts     2\nlast try     2024-11-25T02:00:00Z\n" \
           "next try     2100-01-01T00:00:00Z\n" in text, text
    assert "  pending  bob@far.example\n           451 4.7.1 Greylisted, try again " \
           "(mx.far.example[192.0.2.1])\n" in text, text
    assert "  sent     carol@other.example  2024-11-25T02:00:01Z\n" in text, text
    assert "header\n  Received: from client.test\n  From: <alice@example.org>\n" \
           "  Subject: plain\n" in text, text
    assert "BODY-SECRET" not in text

    p = tern(t, "queue", "show", evil, ok=0)
    text = out(p)
    assert ESC not in text and "\x07" not in text and "\u202e" not in text, text
    assert "  Subject: hi\\x1b]0;pwned\\x07\n" in text, text
    assert "  X-Bidi: \\u202eevil\n" in text, text
    assert b"  X-Raw: \xff\xfe\n" in p.stdout  # not UTF-8, but nothing a terminal obeys
    assert "BODY-SECRET" not in text
    p = tern(t, "queue", "show", evil, "--json", ok=0)
    j = json.loads(p.stdout)
    assert max(p.stdout) < 0x80
    assert j["header"][1] == f"Subject: hi{ESC}]0;pwned\x07"
    assert j["header"][2] == "X-Bidi: \u202eevil"
    assert j["header"][3] == "X-Raw: \\xff\\xfe"  # JSON is UTF-8: the bytes as text
    assert j["header_cut"] is False and len(j["header"]) == 4
    assert [r["addr"] for r in j["rcpts"]] == [f"evil{ESC}[31m@x.example", "bidi\u202e@x.example"]
    assert all(r["status"] == "pending" and r["code"] is None for r in j["rcpts"])
    assert j["attempts"] == 0 and j["next_try"] is None and j["held"] is False

    j = json.loads(tern(t, "queue", "show", tried, "--json", ok=0).stdout)
    assert j["rcpts"][0] == {"addr": "bob@far.example", "status": "pending", "code": 451,
                             "reply": "451 4.7.1 Greylisted, try again",
                             "remote": "mx.far.example[192.0.2.1]", "done": None}
    assert j["rcpts"][1]["status"] == "sent" and j["rcpts"][1]["done"] == "2024-11-25T02:00:01Z"
    assert "status       held" in out(tern(t, "queue", "show", held, ok=0))

    # what is not there, or not an id, or not the usage
    p = tern(t, "queue", "show", "1-2-3", ok=1)
    assert b"no message 1-2-3 in the queue or on hold" in p.stderr, p.stderr
    p = tern(t, "queue", "show", f"../{ESC}x", ok=65)
    assert ESC.encode() not in p.stderr and b"is not a queue id" in p.stderr, p.stderr
    tern(t, "queue", "show", ok=64)
    tern(t, "queue", "list", fresh, ok=64)
    tern(t, "queue", "flush", "--json", ok=64)
    tern(t, "queue", "hold", fresh, tried, ok=64)
    tern(t, "queue", "frobnicate", ok=64)
    assert b"usage: tern queue list" in tern(t, "queue", "--help", ok=0).stdout

    # a state that cannot be read: said, the others still listed, exit 65
    (spool(t) / f"{fresh}.state").write_text("{garbage")
    p = tern(t, "queue", "list", ok=65)
    assert f"{fresh}.state cannot be used".encode() in p.stderr, p.stderr
    assert out(p).count("\n") == 5 and "delivery state unreadable" in out(p)
    p = tern(t, "queue", "show", fresh, ok=65)
    assert "state        spool: " in out(p) and "cannot be used" in out(p), out(p)

    assert queue_records(t) == []  # reading is not an admin action


# ---------------------------------------------------------------------------------------------
# the actions

def test_actions_with_ternd_stopped(ternd_factory):
    t = stopped_ternd(ternd_factory)
    a = make_entry(t, new_id(), ["friend@far.example"])
    rc = ["bob@far.example"]
    b = new_id()
    make_entry(t, b, rc, state=state_of(b, rc, attempts=3, next_try=FUTURE))

    p = tern(t, "queue", "flush", b, ok=0)
    assert out(p) == f"flushed {b}: due now (ternd is not running)\n" and p.stderr == b""
    s = read_state(t, b)
    assert s["next_try"] == 0 and s["attempts"] == 3
    assert list(spool(t, "tmp").iterdir()) == []

    p = tern(t, "queue", "hold", a, ok=0)
    assert out(p).startswith(f"held {a}: it stays until tern queue release {a}")
    assert files_of(t, a) == {"queue": [], "hold": [".env", ".msg"]}
    assert "already on hold" in out(tern(t, "queue", "hold", a, ok=0))
    p = tern(t, "queue", "flush", a, ok=1)
    assert f"{a} is on hold".encode() in p.stderr, p.stderr
    p = tern(t, "queue", "release", a, ok=0)
    assert out(p) == f"released {a} back to the queue (ternd is not running)\n"
    assert files_of(t, a) == {"queue": [".env", ".msg"], "hold": []}
    assert "is not on hold" in out(tern(t, "queue", "release", a, ok=0))

    tern(t, "queue", "hold", b, ok=0)  # the state goes along
    assert files_of(t, b) == {"queue": [], "hold": [".env", ".msg", ".state"]}
    p = tern(t, "queue", "delete", b, ok=0)
    assert out(p) == f"deleted {b} (ternd is not running)\n"
    assert files_of(t, b) == {"queue": [], "hold": []}
    p = tern(t, "queue", "delete", b, ok=1)
    assert b"no entry" in p.stderr
    tern(t, "queue", "delete", "../../users", ok=65)  # refused before anything: no record
    assert (t.data_dir / "users").exists()

    p = tern(t, "queue", "flush", ok=0)
    assert out(p) == "flushed 1 message: due now (ternd is not running)\n"
    tern(t, "queue", "delete", a, ok=0)
    assert out(tern(t, "queue", "flush", ok=0)) == "the queue is empty: nothing to flush\n"

    recs = queue_records(t)
    assert [(c, a_) for c, a_, _ in recs] == [
        ("queue flush", [b]), ("queue hold", [a]), ("queue hold", [a]), ("queue flush", [a]),
        ("queue release", [a]), ("queue release", [a]), ("queue hold", [b]),
        ("queue delete", [b]), ("queue delete", [b]), ("queue flush", []),
        ("queue delete", [a]), ("queue flush", [])]
    results = [r for _, _, r in recs]
    assert results[3].startswith(f"{a} is on hold"), results[3]
    assert results[8].startswith(f"no entry {b}"), results[8]
    assert all(r == "ok" for i, r in enumerate(results) if i not in (3, 8)), results
    for r in admin_records(t):
        assert r["uid"] == os.getuid()
    assert_intact(t)


def test_files_made_as_root_are_ternds(ternd_factory):
    if os.geteuid() != 0:
        pytest.skip("only a tern run as root makes files someone else must own")
    t = stopped_ternd(ternd_factory)
    rc = ["bob@far.example"]
    b = new_id()
    make_entry(t, b, rc, state=state_of(b, rc, attempts=1, next_try=FUTURE))
    tern(t, "queue", "flush", b, ok=0)
    uid, gid = owner(t)
    st = (spool(t) / f"{b}.state").stat()
    assert (st.st_uid, st.st_gid) == (uid, gid)
    tern(t, "queue", "hold", b, ok=0)
    assert spool(t, "hold").stat().st_uid == uid
    assert all(p.stat().st_uid == uid for p in spool(t, "hold").iterdir())
    t.start()  # and ternd (as its own user) takes it from there
    tern(t, "queue", "release", b, ok=0)
    tern(t, "queue", "delete", b, ok=0)
    assert files_of(t, b) == {"queue": [], "hold": []}


def submit(t, rcpts, frm="alice@example.org"):
    msgid, msg = make_message(frm=frm, to=rcpts[0], subject="queue cli")
    with smtplib.SMTP("127.0.0.1", t.submission_port, timeout=20) as s:
        s.ehlo("client.test")
        s.login(frm, PW)
        assert s.sendmail(frm, rcpts, msg) == {}
    return msg


def queued_ids(t) -> set[str]:
    return {p.stem for p in spool(t).glob("*.env")}


def test_actions_with_ternd_running(ternd_factory):
    t = ternd_factory(users=USERS, config={"auth.plaintext": "loopback"})  # relay.defer = yes
    before = queued_ids(t)
    msg = submit(t, ["friend@other.test", "bob@example.org"])
    (qid,) = queued_ids(t) - before
    assert qid in out(tern(t, "queue", "list", ok=0))
    shown = out(tern(t, "queue", "show", qid, ok=0))
    assert "  pending  friend@other.test\n" in shown and "bob@example.org" not in shown.split(
        "header")[0]
    assert "  Subject: queue cli\n" in shown and msg.split(b"\r\n\r\n", 1)[1].decode() not in shown

    for verb, line in (("flush", f"flushed {qid}: due now (ternd told)"),
                       ("hold", f"held {qid}: it stays until tern queue release {qid} "
                                "(ternd told)"),
                       ("release", f"released {qid} back to the queue (ternd told)"),
                       ("delete", f"deleted {qid} (ternd told)")):
        p = tern(t, "queue", verb, qid, ok=0)
        assert out(p) == line + "\n" and p.stderr == b"", p
        wait_for(lambda: f"control: tern queue {verb} {qid} from uid {os.getuid()}"
                 in t.log_text(), what=f"ternd's log line for {verb}")
    assert files_of(t, qid) == {"queue": [], "hold": []}
    b = make_entry(t, new_id(), ["x@far.example"])
    tern(t, "queue", "flush", ok=0)
    wait_for(lambda: "control: tern queue flush (all) from uid" in t.log_text(),
             what="the flush of everything")
    tern(t, "queue", "delete", b, ok=0)

    assert [(c, a, r) for c, a, r in queue_records(t)] == [
        ("queue flush", [qid], "ok"), ("queue hold", [qid], "ok"),
        ("queue release", [qid], "ok"), ("queue delete", [qid], "ok"),
        ("queue flush", [], "ok"), ("queue delete", [b], "ok")]
    assert t.log_text().count("control: admin record") >= 6
    assert t.alive()
    assert_intact(t)


def ask(t, data: bytes) -> bytes:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(str(t.data_dir / "audit" / "control"))
    try:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        got = b""
        while chunk := s.recv(4096):
            got += chunk
        return got
    finally:
        s.close()


def test_hostile_queue_requests(ternd_factory):
    t = ternd_factory(users=USERS)
    qid = make_entry(t, new_id(), ["x@far.example"])
    bad = [{"queue": "nuke", "id": qid}, {"queue": "delete"}, {"queue": 5},
           {"queue": "hold", "id": "../../users"}, {"queue": "hold", "id": "A" * 10},
           {"queue": "hold", "id": "1" * 96}, {"queue": "flush", "id": 7},
           {"queue": "flush", "id": qid, "extra": 1}, {"queue": "release", "id": ""}]
    for req in bad:
        r = ask(t, json.dumps(req).encode() + b"\n")
        assert r.startswith(b"error ") and r.endswith(b"\n") and r.count(b"\n") == 1, (req, r)
    r = ask(t, b'{"queue":"hold","id":"1-2-3\\u0000x"}\n')
    assert r.startswith(b"error "), r
    r = ask(t, b'{"queue":"flush","queue":"delete","id":"1-2"}\n')
    assert r.startswith(b"error "), r  # duplicate keys: not even JSON to ternd
    assert ask(t, b'{"queue":"flush"}\n') == b"ok\n"
    assert ask(t, json.dumps({"queue": "hold", "id": "1-2-3"}).encode() + b"\r\n") == b"ok\n"
    wait_for(lambda: "control: tern queue hold 1-2-3 from uid" in t.log_text(),
             what="the well-formed request")
    assert "queue request of uid" in t.log_text()  # the refusals are logged
    assert files_of(t, qid) == {"queue": [".env", ".msg"], "hold": []}  # nothing moved
    assert queue_records(t) == []  # a poke is not an admin record
    assert t.alive()


def test_a_real_attempt_shows_and_flush_retries(ternd_factory):
    closed = free_port()  # nothing listens there: every attempt is refused
    t = ternd_factory(users=USERS, start=False, config={
        "auth.plaintext": "loopback", "relay.defer": "no", "relay.retry_min": "1h",
        "relay.retry_max": "2h"})
    t.sections["relay"]["route"] = f"other.test [127.0.0.1]:{closed}"
    t.write_files()
    t.start()
    submit(t, ["friend@other.test"])
    (qid,) = queued_ids(t)
    state = spool(t) / f"{qid}.state"
    wait_for(lambda: state.exists() and read_state(t, qid)["attempts"] >= 1,
             what="the first attempt")
    st = read_state(t, qid)
    assert st["next_try"] > time.time() + 1800, st
    line = [l for l in out(tern(t, "queue", "list", ok=0)).splitlines() if l.startswith(qid)][0]
    assert "  queued  1 try  next " in line and "  last: " in line, line
    tern(t, "queue", "flush", qid, ok=0)
    wait_for(lambda: read_state(t, qid)["attempts"] >= 2, what="the attempt flush asked for")
