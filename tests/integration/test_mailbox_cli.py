"""`tern mailbox` against a running ternd: the real `tern` binary (tern_it.tern_binary(), the one
beside $TERND) edits the data dir of a real ternd, which must follow without a restart.

- add makes a shared mailbox that ternd accepts mail for within seconds (RCPT polled until 250,
  bounded), with its Maildir and a dovecot-acl naming its members; members, add-member,
  del-member (not the last) and del behave, and the ACL file follows every edit;
- list and show read a mailbox after two messages came in over SMTP: show prints the stored
  bytes exactly, a short ID prefix is refused as ambiguous, hostile header bytes never reach the
  terminal, --json agrees with the files;
- check removes a tmp/ file older than 36 hours, keeps a fresh one and rewrites maildirsize;
- tern init writes the commented, empty mailboxes file.
"""
from __future__ import annotations

import json
import os
import pwd
import re
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tern_it import make_message, send_message, tern_binary

POLL_SECONDS = 10.0  # ternd looks at its files every 2 s


def tern(t, *args, ok=True):
    """Runs `tern mailbox ARGS -c CONF` for ternd t; returns the CompletedProcess (bytes)."""
    p = subprocess.run([str(tern_binary()), "mailbox", *args, "-c", str(t.conf_path)],
                       capture_output=True, timeout=60)
    if ok and p.returncode != 0:
        raise AssertionError(f"tern mailbox {' '.join(args)} exited {p.returncode}:\n"
                             f"{p.stdout.decode(errors='replace')}"
                             f"{p.stderr.decode(errors='replace')}")
    return p


def rcpt_code(t, rcpt) -> int:
    with t.smtp() as c:
        c.ehlo()
        c.expect("MAIL FROM:<someone@client.test>", "250")
        code = c.cmd(f"RCPT TO:<{rcpt}>").code
        c.quit()
    return code


def wait_rcpt(t, rcpt, code):
    """Polls RCPT TO:<rcpt> on fresh sessions until ternd answers code, for POLL_SECONDS."""
    deadline = time.monotonic() + POLL_SECONDS
    while True:
        got = rcpt_code(t, rcpt)
        if got == code:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"RCPT TO:<{rcpt}> still answered {got}, not {code}, "
                                 f"{POLL_SECONDS:.0f} s after the edit\n{t.log_tail(20)}")
        time.sleep(0.2)


def acl_users(t, box) -> list[str]:
    text = (t.maildir(box) / "dovecot-acl").read_text()
    return sorted(l.split()[0][5:] for l in text.splitlines() if l.startswith("user="))


def deliver(t, rcpt, subject, date=None, body=b"hello\r\n") -> bytes:
    _, msg = make_message(to=rcpt, subject=subject, body=body)
    if date:
        msg = msg.replace(b"Date: Mon, 01 Jan 2024 00:00:00 +0000", f"Date: {date}".encode())
    with t.smtp() as c:
        c.ehlo()
        send_message(c, "sender@client.test", [rcpt], msg)
        c.quit()
    return msg


def wait_files(t, box, n) -> list[Path]:
    deadline = time.monotonic() + POLL_SECONDS
    while True:
        files = sorted((t.maildir(box) / "new").glob("*"))
        if len(files) >= n or time.monotonic() > deadline:
            return files
        time.sleep(0.05)


def test_add_members_del(ternd_factory):
    t = ternd_factory()
    box = "sales@example.org"
    assert rcpt_code(t, box) == 550

    p = tern(t, "add", "Sales@Example.org", "alice", "bob@example.org", "--quota", "1M")
    assert b"added shared mailbox sales@example.org" in p.stdout
    mfile = t.data_dir / "mailboxes"
    assert mfile.read_text().endswith("sales@example.org: alice, bob@example.org quota=1M\n")
    st = mfile.stat()
    assert st.st_mode & 0o7777 == 0o640
    if os.geteuid() == 0:  # made for ternd: its user owns it
        assert st.st_uid == pwd.getpwnam(t.run_user).pw_uid
    # the Maildir and the ACL come from tern itself, before ternd even looks
    assert (t.maildir(box) / "new").is_dir()
    assert acl_users(t, box) == ["alice@example.org", "bob@example.org"]
    wait_rcpt(t, box, 250)  # no restart, no SIGHUP

    # refused edits change nothing
    before = mfile.read_bytes()
    assert tern(t, "add", box, "carol@example.net", ok=False).returncode == 65
    assert tern(t, "add", "alice@example.org", "bob", ok=False).returncode == 65
    p = tern(t, "add", "new@example.org", "ghost", ok=False)
    assert p.returncode == 78 and b"ghost@example.org" in p.stderr
    assert mfile.read_bytes() == before

    p = tern(t, "members", box)
    out = p.stdout.decode()
    assert "alice@example.org  user" in out and "bob@example.org  user" in out
    assert "reaches 2 users" in out

    tern(t, "add-member", box, "carol@example.net", "team")  # team: the alias alice, bob
    assert acl_users(t, box) == ["alice@example.org", "bob@example.org", "carol@example.net"]
    tern(t, "del-member", box, "bob", "team", "carol@example.net")
    assert acl_users(t, box) == ["alice@example.org"]
    assert mfile.read_text().endswith("sales@example.org: alice quota=1M\n")
    p = tern(t, "del-member", box, "alice", ok=False)
    assert p.returncode == 65 and b"tern mailbox del sales@example.org" in p.stderr
    assert tern(t, "del-member", box, "bob", ok=False).returncode == 65

    # a delivery, then del: the line goes, the ACL goes, the mail stays
    deliver(t, box, "kept")
    assert len(wait_files(t, box, 1)) == 1
    p = tern(t, "del", box)
    assert b"left in" in p.stdout
    assert "sales@" not in mfile.read_text()
    assert not (t.maildir(box) / "dovecot-acl").exists()
    assert len(list((t.maildir(box) / "new").iterdir())) == 1
    wait_rcpt(t, box, 550)
    assert tern(t, "members", box, ok=False).returncode == 67
    assert tern(t, "del", box, ok=False).returncode == 67


def test_list_show(ternd_factory):
    t = ternd_factory(mailboxes=["ops@example.org: alice, bob quota=10M"])
    box = "ops@example.org"
    first = deliver(t, box, "first one", date="Tue, 02 Jan 2024 10:00:00 +0100")
    second = deliver(t, box, "second \x1b]0;pwned\x07 one", date="Mon, 01 Jan 2024 09:00:00 GMT")
    files = wait_files(t, box, 2)
    assert len(files) == 2

    p = tern(t, "list", box)
    out = p.stdout.decode()
    assert "\x1b" not in out and "\x07" not in out  # hostile bytes never reach the terminal
    lines = out.splitlines()
    assert lines[0].split()[:5] == ["ID", "DATE", "SIZE", "FLAGS", "FROM"]
    rows = lines[1:3]
    assert lines[3].startswith("2 messages")
    # oldest first, by the Date: header (the second one sent is the older)
    assert "2024-01-01T09:00:00Z" in rows[0] and "second ?]0;pwned? one" in rows[0]
    assert "2024-01-02T09:00:00Z" in rows[1] and "first one" in rows[1]
    by_content = {f.read_bytes(): f for f in files}
    for row, msg_end in ((rows[0], second), (rows[1], first)):
        shown = row.split()[0]
        assert row.split()[3] == "N"  # in new/
        p = tern(t, "show", box, shown)
        assert p.stdout.endswith(msg_end)  # after ternd's Return-Path: and Received:
        assert p.stdout in by_content  # byte for byte the stored file
        assert int(row.split()[2]) == len(p.stdout)

    # a prefix of both is refused, listing them; an unknown one too
    common = os.path.commonprefix([f.name for f in files])
    p = tern(t, "show", box, common[:5], ok=False)
    assert p.returncode == 65
    assert all(f.name.encode() in p.stderr for f in files)
    assert tern(t, "show", box, "nonesuch", ok=False).returncode == 66
    assert tern(t, "show", "ghost@example.org", "1", ok=False).returncode == 67

    p = tern(t, "list", box, "--json")
    items = json.loads(p.stdout)
    assert [i["subject"] for i in items] == ["second \x1b]0;pwned\x07 one", "first one"]
    for i in items:
        f = t.maildir(box) / i["file"]
        assert f.stat().st_size == i["size"]
        assert f.name.startswith(i["id"]) and i["flags"] == "N"
        assert tern(t, "show", box, i["id"]).stdout == f.read_bytes()

    # every mailbox: users and the shared one, with quota and use
    p = tern(t, "list")
    row = next(l for l in p.stdout.decode().splitlines() if l.startswith(box))
    assert row.split()[1:4] == ["shared", "2", str(sum(f.stat().st_size for f in files))]
    assert row.split()[4] == "10M"
    items = {i["mailbox"]: i for i in json.loads(tern(t, "list", "--json").stdout)}
    assert items[box]["messages"] == 2 and items[box]["quota"] == 10 << 20
    assert items["alice@example.org"]["kind"] == "user"
    assert items["alice@example.org"]["quota"] is None


def test_check(ternd_factory):
    t = ternd_factory(mailboxes=["ops@example.org: alice quota=1M"])
    box = "ops@example.org"
    deliver(t, box, "one")
    files = wait_files(t, box, 1)
    assert len(files) == 1
    md = t.maildir(box)
    old, fresh = md / "tmp" / "old.dead", md / "tmp" / "fresh.writing"
    old.write_bytes(b"half a message")
    fresh.write_bytes(b"being written")
    past = time.time() - 37 * 3600
    os.utime(old, (past, past))
    (md / "maildirsize").write_text("0S\n999999 99\n")  # wrong: check recomputes it

    p = tern(t, "check", box)
    out = p.stdout.decode()
    assert f"{box}: removed 1 file older than 36 hours from tmp/" in out
    assert not old.exists() and fresh.exists()
    size = files[0].stat().st_size
    lines = (md / "maildirsize").read_text().splitlines()
    assert lines[0] == f"{1 << 20}S"
    assert [int(x) for x in lines[1].split()] == [size, 1]
    if os.geteuid() == 0:  # still ternd's to append to
        assert (md / "maildirsize").stat().st_uid == pwd.getpwnam(t.run_user).pw_uid

    # every mailbox, with nothing left to do
    p = tern(t, "check")
    out = p.stdout.decode()
    assert f"{box}: nothing old in tmp/" in out and "alice@example.org:" in out
    assert "ACLs:" in out
    assert tern(t, "check", "ghost@example.org", ok=False).returncode == 67


def test_init_writes_mailboxes():
    with tempfile.TemporaryDirectory(prefix="tern-it-init-") as d:
        target = Path(d) / "var"
        p = subprocess.run([str(tern_binary()), "init", str(target)], capture_output=True,
                           timeout=60)
        assert p.returncode == 0, p.stderr
        assert f"created {target}/mailboxes".encode() in p.stdout
        f = target / "mailboxes"
        lines = f.read_text().splitlines()
        assert len(lines) == 2 and all(l.startswith("#") for l in lines)
        assert f.stat().st_mode & 0o7777 == 0o640
        p = subprocess.run([str(tern_binary()), "config", "check", str(target / "tern.conf")],
                           capture_output=True, timeout=60)
        assert p.returncode == 0, p.stderr
