"""Shared mailboxes and storage policy against a real ternd: delivery once into the shared Maildir
(also from many sessions at once), send-as for members only (MAIL FROM and From:), the Sender:
field, VRFY/EXPN of a shared address, the mailboxes file picked up without a restart and the
Dovecot ACL files ternd writes, Maildir++ quotas (552 5.2.2 at RCPT and at end of data, the
maildirsize file, the 90% warning) and all-or-nothing delivery when one Maildir fails.

Authenticated sessions use AUTH PLAIN in clear on loopback (auth.plaintext = loopback), which
the TLS tests cover separately.
"""
from __future__ import annotations

import base64
import os
import re
import threading
import time
from pathlib import Path

import pytest

from tern_it import Conn, crypt_hash, make_message, read_mailbox, send_message, tmp_files

PW = {"alice@example.org": "alice-pw", "bob@example.org": "bob-pw",
      "carol@example.org": "carol-pw", "erin@example.org": "erin-pw"}
USERS = [
    ("alice@example.org", "Alice Liddell", "", crypt_hash(PW["alice@example.org"])),
    ("bob@example.org", "Bob Smith", "", crypt_hash(PW["bob@example.org"])),
    ("carol@example.org", "Carol Outsider", "", crypt_hash(PW["carol@example.org"])),
    ("erin@example.org", "Erin Quota", "userdb_quota_rule=*:storage=6k",
     crypt_hash(PW["erin@example.org"])),
]
ALIASES = ["postmaster: alice@example.org", "devs: bob"]
MAILBOXES = ["team@example.org: alice, devs  # bob through the devs alias",
             "small@example.org: alice quota=8k"]
CONFIG = {"auth.plaintext": "loopback", "policy.check_from": "yes"}


def plain(user):
    return base64.b64encode(f"\0{user}\0{PW[user]}".encode()).decode()


def login(t, user) -> Conn:
    c = t.submission()
    c.ehlo()
    c.expect(f"AUTH PLAIN {plain(user)}", "235 2.7.0")
    return c


@pytest.fixture(scope="module")
def srv(module_ternd_factory):
    return module_ternd_factory(users=USERS, aliases=ALIASES, mailboxes=MAILBOXES, config=CONFIG,
                                name="shared")


def files(t, addr) -> list[Path]:
    new = t.maildir(addr) / "new"
    return sorted(new.iterdir()) if new.is_dir() else []


def header_of(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[0]


def test_delivered_once_into_the_shared_maildir(srv):
    before_alice = len(files(srv, "alice@example.org"))
    before = len(files(srv, "team@example.org"))
    msgid, msg = make_message(to="team@example.org")
    with srv.smtp() as c:
        c.ehlo()
        send_message(c, "x@client.test", ["team@example.org", "TEAM@example.org"], msg)
    got = files(srv, "team@example.org")
    assert len(got) == before + 1
    assert msgid.encode() in got[-1].read_bytes()
    assert len(files(srv, "alice@example.org")) == before_alice, "a member got a private copy"


def test_acl_files_written_for_dovecot(srv):
    path = srv.maildir("team@example.org") / "dovecot-acl"
    deadline = time.monotonic() + 10  # written by a worker just after start
    while not path.exists():
        assert time.monotonic() < deadline, "ternd wrote no dovecot-acl"
        time.sleep(0.05)
    acl = path.read_text()
    lines = [ln for ln in acl.splitlines() if ln and not ln.startswith("#")]
    assert lines == ["user=alice@example.org lrwstipe", "user=bob@example.org lrwstipe"]
    assert not (srv.maildir("alice@example.org") / "dovecot-acl").exists()


def test_concurrent_sessions_into_one_shared_maildir(srv):
    """8 sessions x 100 messages into one shared Maildir: all 800 present, unique, intact."""
    before = {p.name for p in files(srv, "team@example.org")}
    ids: list[str] = []
    errors: list[str] = []
    lock = threading.Lock()

    def worker(k):
        try:
            with srv.smtp() as c:
                c.ehlo()
                for i in range(100):
                    msgid, msg = make_message(to="team@example.org", subject=f"s{k} m{i}",
                                              body=f"session {k} message {i}\r\n".encode())
                    send_message(c, f"s{k}@client.test", ["team@example.org"], msg)
                    with lock:
                        ids.append(msgid)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(f"session {k}: {e}")

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    assert not errors, errors
    assert len(ids) == 800
    new = [p for p in files(srv, "team@example.org") if p.name not in before]
    assert len(new) == 800, f"{len(new)} new files for 800 acknowledged messages"
    assert len({p.name.split(",")[0] for p in new}) == 800, "two messages share a name"
    found = {m.group(0).decode() for p in new
             for m in [re.search(rb"<[0-9a-f]{32}@client.test>", p.read_bytes())] if m}
    assert found == set(ids)
    assert not tmp_files(srv.data_dir)


@pytest.mark.parametrize("user,sender,spec", [
    ("alice@example.org", "team@example.org", "250 2.1.0"),      # a direct member
    ("bob@example.org", "team@example.org", "250 2.1.0"),        # a member through an alias
    ("bob@example.org", "Team@Example.ORG", "250 2.1.0"),        # any case
    ("carol@example.org", "team@example.org", "553 5.7.1"),      # not a member
    ("carol@example.org", "small@example.org", "553 5.7.1"),
    ("bob@example.org", "small@example.org", "553 5.7.1"),       # member of another one only
    ("carol@example.org", "carol@example.org", "250 2.1.0"),
])
def test_send_as_shared_mailbox_members_only(srv, user, sender, spec):
    with login(srv, user) as c:
        c.expect(f"MAIL FROM:<{sender}>", spec)


def submit(srv, user, mail_from, header_from, extra=b"", to="carol@example.org", spec="250",
           bdat=False) -> Path | None:
    """Sends one message as user; returns the file delivered to `to` (None when refused)."""
    before = {p.name for p in files(srv, to)}
    msg = (f"From: {header_from}\r\nTo: <{to}>\r\nSubject: hi\r\n".encode() + extra +
           b"Message-ID: <" + os.urandom(8).hex().encode() + b"@client.test>\r\n\r\nbody\r\n")
    with login(srv, user) as c:
        c.expect(f"MAIL FROM:<{mail_from}>", "250")
        c.expect(f"RCPT TO:<{to}>", "250")
        if bdat:
            c.send_raw(f"BDAT {len(msg)} LAST\r\n".encode() + msg)
            r = c.reply()
            assert r.matches(spec), r
        else:
            c.data(msg, spec)
    new = [p for p in files(srv, to) if p.name not in before]
    if not spec.startswith("250"):
        assert not new
        return None
    assert len(new) == 1
    return new[0]


def test_from_header_of_shared_mailbox_member_ok_sender_added(srv):
    f = submit(srv, "alice@example.org", "team@example.org", "Team <team@example.org>")
    hdr = header_of(f.read_bytes())
    assert hdr.count(b"\r\nSender: ") == 1
    assert b"\r\nSender: alice@example.org" in hdr
    # where the client's header section ended: after its last field, before the body
    assert hdr.endswith(b"Sender: alice@example.org")


def test_sender_added_with_bdat_too(srv):
    f = submit(srv, "bob@example.org", "team@example.org", "<team@example.org>", bdat=True)
    assert header_of(f.read_bytes()).endswith(b"\r\nSender: bob@example.org")


def test_sender_when_only_the_header_from_is_shared(srv):
    f = submit(srv, "alice@example.org", "alice@example.org", "<team@example.org>")
    assert b"\r\nSender: alice@example.org" in header_of(f.read_bytes())


def test_no_sender_for_own_address(srv):
    f = submit(srv, "alice@example.org", "alice@example.org", "Alice <alice@example.org>")
    assert b"Sender:" not in f.read_bytes()


def test_own_sender_field_kept_not_doubled(srv):
    f = submit(srv, "alice@example.org", "team@example.org", "<team@example.org>",
               extra=b"Sender: Alice <alice@example.org>\r\n")
    assert f.read_bytes().count(b"Sender:") == 1


def test_from_header_of_shared_mailbox_by_non_member_refused(srv):
    submit(srv, "carol@example.org", "carol@example.org", "<team@example.org>",
           to="alice@example.org", spec="553 5.7.1")


def test_vrfy_shared_250(srv):
    with login(srv, "carol@example.org") as c:
        r = c.expect("VRFY team@example.org", "250 2.1.5")
        assert "team@example.org" in r.first


def test_expn_shared_members_only(srv):
    with login(srv, "bob@example.org") as c:
        r = c.expect("EXPN team@example.org", "250 2.1.5")
        text = "\n".join(r.lines)
        assert "alice@example.org" in text and "devs@example.org" in text
    with login(srv, "carol@example.org") as c:
        c.expect("EXPN team@example.org", "550 5.7.1")
    with srv.smtp() as c:  # not authenticated: the policy's answer
        c.ehlo()
        c.expect("EXPN team@example.org", "252")


def test_shared_mailbox_cannot_log_in(srv):
    with srv.submission() as c:
        c.ehlo()
        c.expect("AUTH PLAIN " + base64.b64encode(b"\0team@example.org\0").decode(), "535")


def test_sender_header_off(ternd_factory):
    t = ternd_factory(users=USERS, aliases=ALIASES, mailboxes=MAILBOXES,
                      config={**CONFIG, "policy.sender_header": "no"}, name="nosender")
    f = submit(t, "alice@example.org", "team@example.org", "<team@example.org>")
    assert b"Sender:" not in f.read_bytes()


def rcpt_code(t, addr) -> int:
    with t.smtp() as c:
        c.ehlo()
        c.expect("MAIL FROM:<x@client.test>", "250")
        return c.cmd(f"RCPT TO:<{addr}>").code


def test_mailboxes_file_change_picked_up_without_restart(ternd_factory):
    t = ternd_factory(users=USERS, aliases=ALIASES, mailboxes=["team@example.org: alice"],
                      config=CONFIG, name="mbreload")
    pid = t.pid
    assert rcpt_code(t, "ops@example.org") == 550
    (t.data_dir / "mailboxes").write_text("team@example.org: alice\nops@example.org: bob\n")
    deadline = time.monotonic() + 15
    while rcpt_code(t, "ops@example.org") != 250:
        assert time.monotonic() < deadline, "the new shared mailbox was not picked up"
        time.sleep(0.2)
    assert t.pid == pid
    acl = t.maildir("ops@example.org") / "dovecot-acl"
    assert "user=bob@example.org" in acl.read_text()
    # and a mailbox that is no longer shared loses its ACL
    (t.data_dir / "mailboxes").write_text("ops@example.org: bob\n")
    deadline = time.monotonic() + 15
    while (t.maildir("team@example.org") / "dovecot-acl").exists():
        assert time.monotonic() < deadline, "the old ACL stayed"
        time.sleep(0.2)


def test_bad_mailboxes_file_refused_with_line(ternd_factory, tmp_path):
    t = ternd_factory(users=USERS, aliases=ALIASES,
                      mailboxes=["team@example.org: alice", "x@example.org: nobody"],
                      config=CONFIG, name="mbbad", start=False)
    import subprocess
    r = subprocess.run([str(t.binary), "-t", "-c", str(t.conf_path)], capture_output=True,
                       text=True)
    assert r.returncode != 0
    assert "mailboxes:2:" in r.stderr and "nobody@example.org" in r.stderr


def fill(t, addr, size) -> str:
    body = (b"x" * 70 + b"\r\n") * (size // 72)
    _, msg = make_message(to=addr, body=body)
    with t.smtp() as c:
        c.ehlo()
        c.expect("MAIL FROM:<x@client.test>", "250")
        c.expect(f"RCPT TO:<{addr}>", "250")
        return c.data(msg, "250").first


def maildirsize(t, addr) -> tuple[str, int, int]:
    lines = (t.maildir(addr) / "maildirsize").read_text().splitlines()
    total = [0, 0]
    for ln in lines[1:]:
        b, n = ln.split()
        total[0] += int(b)
        total[1] += int(n)
    return lines[0], total[0], total[1]


def test_quota_552_at_end_of_data_then_at_rcpt(ternd_factory):
    t = ternd_factory(users=USERS, aliases=ALIASES, mailboxes=MAILBOXES, config=CONFIG,
                      name="quota")
    fill(t, "small@example.org", 3000)
    head, used, count = maildirsize(t, "small@example.org")
    assert head.startswith("8192S")
    real = sum(p.stat().st_size for p in files(t, "small@example.org"))
    assert (used, count) == (real, 1)
    # 3 KB more fits (about 6.5 of 8 KB), crossing 90% does not happen yet
    fill(t, "small@example.org", 3000)
    # this one would pass the quota: refused at end of data, nothing stored
    body = (b"y" * 70 + b"\r\n") * 40
    _, msg = make_message(to="small@example.org", body=body)
    with t.smtp() as c:
        c.ehlo()
        c.expect("MAIL FROM:<x@client.test>", "250")
        c.expect("RCPT TO:<small@example.org>", "250")
        c.data(msg, "552 5.2.2")
    assert len(files(t, "small@example.org")) == 2
    # a small one still fits and takes it past 90%: a warning in the log
    fill(t, "small@example.org", 900)
    assert re.search(r"warning: mailbox small@example.org is 9\d% full", t.log_text())
    # a message that would pass it by a little is refused too: end of data checks the size
    _, msg = make_message(to="small@example.org", body=b"z\r\n" * 200)
    with t.smtp() as c:
        c.ehlo()
        c.expect("MAIL FROM:<x@client.test>", "250")
        c.expect("RCPT TO:<small@example.org>", "250")  # not full yet: RCPT takes it
        c.data(msg, "552 5.2.2")
    # the administrator lowers the quota under what is stored: now RCPT refuses at once
    (t.data_dir / "mailboxes").write_text("team@example.org: alice\n"
                                          "small@example.org: alice quota=4k\n")
    deadline = time.monotonic() + 15
    while rcpt_code(t, "small@example.org") != 552:
        assert time.monotonic() < deadline, "the lower quota was not picked up"
        time.sleep(0.2)
    with t.smtp() as c:
        c.ehlo()
        c.expect("MAIL FROM:<x@client.test>", "250")
        r = c.expect("RCPT TO:<small@example.org>", "552 5.2.2")
        assert "full" in r.first
        c.expect("RCPT TO:<alice@example.org>", "250")  # others still get mail
    _, used, count = maildirsize(t, "small@example.org")
    assert used == sum(p.stat().st_size for p in files(t, "small@example.org"))
    assert count == len(files(t, "small@example.org"))


def test_user_quota_from_users_file(ternd_factory):
    t = ternd_factory(users=USERS, aliases=ALIASES, config=CONFIG, name="uquota")
    fill(t, "erin@example.org", 5000)
    body = (b"y" * 70 + b"\r\n") * 40
    _, msg = make_message(to="erin@example.org", body=body)
    with t.smtp() as c:
        c.ehlo()
        c.expect("MAIL FROM:<x@client.test>", "250")
        c.expect("RCPT TO:<erin@example.org>", "250")
        c.data(msg, "552 5.2.2")
    assert maildirsize(t, "erin@example.org")[0].startswith("6144S")


def test_io_failure_mid_delivery_leaves_no_copy(ternd_factory):
    """alice's copy is linked first, bob's new/ refuses (read-only): 451 and no copy anywhere."""
    t = ternd_factory(users=USERS, aliases=ALIASES, mailboxes=MAILBOXES, config=CONFIG,
                      name="rofail")
    fill(t, "bob@example.org", 200)  # makes bob's Maildir
    fill(t, "alice@example.org", 200)
    a0, b0 = len(files(t, "alice@example.org")), len(files(t, "bob@example.org"))
    new = t.maildir("bob@example.org") / "new"
    os.chmod(new, 0o555)
    try:
        _, msg = make_message(to="alice@example.org")
        with t.smtp() as c:
            c.ehlo()
            c.expect("MAIL FROM:<x@client.test>", "250")
            c.expect("RCPT TO:<alice@example.org>", "250")
            c.expect("RCPT TO:<bob@example.org>", "250")
            c.data(msg, "451 4.3.0")
            # the session goes on, and the next message is delivered once the disk is fixed
            os.chmod(new, 0o755)
            send_message(c, "x@client.test", ["alice@example.org", "bob@example.org"], msg)
    finally:
        os.chmod(new, 0o755)
    assert len(files(t, "alice@example.org")) == a0 + 1
    assert len(files(t, "bob@example.org")) == b0 + 1
    assert not tmp_files(t.data_dir)
