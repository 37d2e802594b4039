"""Terminals for real (RFC 821 3.4): `tern watch` sessions receive what SEND, SOML and SAML
deliver, against a real ternd on loopback, with SMTP through smtplib's low-level commands.

- SEND reaches a watcher's output and no Maildir; SEND to a user with no watcher gets 450 4.2.1;
  SOML goes to the Maildir without a watcher and to the terminal only with one; SAML to both;
  two watchers both print; an alias reaches the terminals of its members that have one;
- a watcher killed while messages are being written to it changes nothing for ternd or the
  other watchers; one that stops reading loses messages instead of growing ternd;
- hostile content (escape sequences, C1 controls, NULs, bidi overrides, 1 MB lines) is shown
  escaped and cut, never obeyed; [terminal] max_size: 552 for SEND, the mailbox for SOML/SAML;
- the local socket: the uid mapping of the users file (as `nobody`), root, passwords (wrong ones
  refused and throttled); [terminal] allow = authenticated and none;
- XWATCH on the submission port: refused without TLS, without AUTH and on the smtp listener;
  its frames; `tern watch --server`; a reload that locks the user ends its watches;
- the audit records: watch, watch_end, terminal.
"""
from __future__ import annotations

import json
import os
import re
import signal
import threading
import time

import pytest

from tern_it import DEFAULT_ALIASES, TIMEOUT, client_tls_context, crypt_hash
from watch_it import (NOBODY, SENDER, Watcher, Watchers, msg, smtp, term_txn,
                      wait_all_unwatched)

PW = {"alice@example.org": "Alice-pw-1", "bob@example.org": "Bob-pw-2",
      "carol@example.net": "Carol-pw-3", "erin@example.org": "Erin-pw-4"}
HASH = {a: crypt_hash(p) for a, p in PW.items()}
ALIASES = DEFAULT_ALIASES


def users_file(alice_extra="") -> str:
    """alice and erin (locked) map to the Unix user nobody; frank is forwarded."""
    uid = NOBODY.pw_uid
    return (f"alice@example.org:{HASH['alice@example.org']}:{uid}:{uid}:Alice:::{alice_extra}\n"
            f"bob@example.org:{HASH['bob@example.org']}:::Bob:::\n"
            f"carol@example.net:{HASH['carol@example.net']}:::Carol:::\n"
            f"erin@example.org:{HASH['erin@example.org']}:{uid}::Erin:::nologin\n"
            f"frank@example.org:{HASH['bob@example.org']}:::Frank:::forward=frank@elsewhere.test\n")


def make_server(factory, config=None, name="watch"):
    cfg = {"auth.plaintext": "loopback"}
    cfg.update(config or {})
    t = factory(config=cfg, aliases=ALIASES, tls=True, start=False, name=name)
    t._write(t.data_dir / "users", users_file())
    t.chown()
    return t.start()


@pytest.fixture(scope="module")
def _wsrv(module_ternd_factory):
    return make_server(module_ternd_factory)


@pytest.fixture(scope="module")
def _bigsrv(module_ternd_factory):
    return make_server(module_ternd_factory, {"terminal.max_size": "1M"}, name="big")


@pytest.fixture
def wsrv(_wsrv):
    return _wsrv.ensure_running()


@pytest.fixture
def bigsrv(_bigsrv):
    return _bigsrv.ensure_running()


@pytest.fixture
def watch(request):
    """Starts watchers; at the end stops them and waits until the shared servers have let go
    of every one, so that no terminal outlives its test."""
    w = Watchers()
    yield w
    shared = [v for k, v in request.node.funcargs.items() if k in ("wsrv", "bigsrv")]
    w.finish([s for s in shared if s.alive()])


def new_files(srv, addr, before):
    return [d for d in srv.mailbox(addr) if d.path not in before]


def files(srv, addr):
    return {d.path for d in srv.mailbox(addr)}


# --------------------------------------------------------------------------------------------
# SEND, SOML, SAML

def test_send_reaches_the_watcher_and_no_mailbox(wsrv, watch):
    w = watch(wsrv, "alice@example.org")
    before = files(wsrv, "alice@example.org")
    first, rcpts, final = term_txn(wsrv.smtp_port, "SEND", ["alice@example.org"],
                                   msg("hello terminal", "first line\r\nsecond line\r\n"))
    assert first[0] == 250
    assert rcpts == [(250, "2.1.5 Recipient <alice@example.org> OK, will deliver to the "
                           "terminal")]
    assert final[0] == 250 and re.match(r"2\.0\.0 Ok: delivered to 1 terminal as \S+$",
                                        final[1]), final
    (m,) = w.wait_messages(1)
    assert m.startswith(f"Message from {SENDER} at ")
    assert "\nSubject: hello terminal\n\nfirst line\nsecond line\nEOF\n" in m
    assert final[1].rsplit(" ", 1)[1] in m.splitlines()[0]  # the id of the 250
    time.sleep(0.2)
    assert files(wsrv, "alice@example.org") == before, "SEND must not touch the mailbox"


def test_send_450_without_a_watcher(wsrv, watch):
    first, rcpts, final = term_txn(wsrv.smtp_port, "SEND", ["alice@example.org"], msg("x"))
    assert first[0] == 250
    assert rcpts == [(450, "4.2.1 <alice@example.org> is not accepting terminal messages")]
    assert final is None
    # one that stops watching is gone at once
    w = watch(wsrv, "alice@example.org")
    assert term_txn(wsrv.smtp_port, "SEND", ["alice@example.org"], msg("y"))[1][0][0] == 250
    w.stop()
    wait_all_unwatched(wsrv)
    assert term_txn(wsrv.smtp_port, "SEND", ["alice@example.org"], msg("z"))[1][0][0] == 450


def test_send_refusals(wsrv, watch):
    watch(wsrv, "alice@example.org")
    s = smtp(wsrv.smtp_port)
    try:
        assert s.docmd(f"SEND FROM:<{SENDER}>")[0] == 250
        code, text = s.docmd("RCPT TO:<someone@elsewhere.test>")
        assert (code, text[:5]) == (550, b"5.7.1"), text
        code, text = s.docmd("RCPT TO:<frank@example.org>")  # forwarded: no terminal here
        assert (code, text[:5]) == (450, b"4.2.1"), text
        code, text = s.docmd("RCPT TO:<nobody-here@example.org>")
        assert (code, text[:5]) == (550, b"5.1.1"), text
        code, text = s.docmd("RCPT TO:<dave@example.org>")
        assert (code, text[:5]) == (550, b"5.1.1"), text
        assert s.docmd("RSET")[0] == 250
        code, text = s.docmd(f"SEND FROM:<{SENDER}> SIZE=70000")  # over max_size (64K)
        assert (code, text[:5]) == (552, b"5.3.4"), text
    finally:
        s.quit()


def test_soml_mailbox_without_watcher_terminal_only_with_one(wsrv, watch):
    before = files(wsrv, "alice@example.org")
    _, rcpts, final = term_txn(wsrv.smtp_port, "SOML", ["alice@example.org"], msg("soml box"))
    assert rcpts == [(250, "2.1.5 Recipient <alice@example.org> OK, will deliver to the mailbox "
                           "(no terminal)")]
    assert final[0] == 250 and "queued as" in final[1]
    (d,) = new_files(wsrv, "alice@example.org", before)
    assert b"Subject: soml box" in d.raw

    w = watch(wsrv, "alice@example.org")
    before = files(wsrv, "alice@example.org")
    _, rcpts, final = term_txn(wsrv.smtp_port, "SOML", ["alice@example.org", "bob@example.org"],
                               msg("soml term"))
    assert rcpts[0] == (250, "2.1.5 Recipient <alice@example.org> OK, will deliver to the "
                             "terminal")
    assert "mailbox (no terminal)" in rcpts[1][1]
    assert final[0] == 250 and "shown on 1 terminal" in final[1], final
    (m,) = w.wait_messages(1)
    assert "Subject: soml term" in m
    assert new_files(wsrv, "alice@example.org", before) == [], "SOML: the terminal only"
    assert any(b"Subject: soml term" in d.raw for d in wsrv.mailbox("bob@example.org"))


def test_saml_mailbox_and_terminal(wsrv, watch):
    w = watch(wsrv, "alice@example.org")
    before = files(wsrv, "alice@example.org")
    _, rcpts, final = term_txn(wsrv.smtp_port, "SAML", ["alice@example.org"], msg("saml both"))
    assert rcpts == [(250, "2.1.5 Recipient <alice@example.org> OK, will deliver to the mailbox "
                           "and the terminal")]
    assert final[0] == 250 and "shown on 1 terminal" in final[1]
    (m,) = w.wait_messages(1)
    assert "Subject: saml both" in m
    (d,) = new_files(wsrv, "alice@example.org", before)
    assert d.problems() == [] and b"Subject: saml both" in d.raw


def test_two_watchers_both_print_and_aliases(wsrv, watch):
    w1 = watch(wsrv, "alice@example.org")
    w2 = watch(wsrv, "alice@example.org")
    _, rcpts, final = term_txn(wsrv.smtp_port, "SEND", ["alice@example.org"], msg("to both"))
    assert final[0] == 250 and "delivered to 1 terminal" in final[1], final
    for w in (w1, w2):
        assert "Subject: to both" in w.wait_messages(1)[0]
    # team = alice + bob; only alice watches: the alias is reached through her
    _, rcpts, final = term_txn(wsrv.smtp_port, "SEND", ["team@example.org"], msg("to team"))
    assert rcpts == [(250, "2.1.5 Recipient <team@example.org> OK, will deliver to the "
                           "terminals of 1 of its 2 users")]
    for w in (w1, w2):
        assert "Subject: to team" in w.wait_messages(2)[1]


# --------------------------------------------------------------------------------------------
# watchers that die or stop reading

def test_watcher_killed_during_delivery(wsrv, watch):
    good = watch(wsrv, "alice@example.org")
    doomed = watch(wsrv, "alice@example.org", read=False)  # nobody reads what it prints
    body = ("x" * 70 + "\r\n") * 800  # about 57 KB: under max_size
    results = []

    def sender():
        for i in range(12):
            results.append(term_txn(wsrv.smtp_port, "SEND", ["alice@example.org"],
                                    msg(f"bulk {i}", body))[2])

    th = threading.Thread(target=sender)
    th.start()
    good.wait_messages(3, timeout=TIMEOUT * 3)
    os.kill(doomed.proc.pid, signal.SIGKILL)  # mid-stream: ternd is writing to it
    th.join(TIMEOUT * 6)
    assert not th.is_alive()
    assert all(r and r[0] == 250 for r in results), results
    msgs = good.wait_messages(12, timeout=TIMEOUT * 3)
    assert [re.search(r"Subject: (bulk \d+)", m).group(1) for m in msgs] == \
           [f"bulk {i}" for i in range(12)]
    assert wsrv.alive()
    _, _, final = term_txn(wsrv.smtp_port, "SEND", ["alice@example.org"], msg("after the kill"))
    assert final[0] == 250 and "delivered to 1 terminal" in final[1], final
    assert "Subject: after the kill" in good.wait_messages(13)[-1]


def test_stalled_watcher_is_bounded(wsrv, watch):
    good = watch(wsrv, "bob@example.org")
    s, answer = watch.raw(wsrv, {"watch": "bob@example.org"}, rcvbuf=4096)  # as root
    assert answer == "ok bob@example.org"
    rss = wsrv.rss_kib()
    body = ("y" * 98 + "\r\n") * 600  # 60 KB
    for i in range(60):  # 3.6 MB: more than the kernel and WATCH_OUT_MAX hold for the stalled
        _, _, final = term_txn(wsrv.smtp_port, "SEND", ["bob@example.org"], msg(f"s{i}", body))
        assert final[0] == 250, final
    assert len(good.wait_messages(60, timeout=TIMEOUT * 3)) == 60
    recs = [json.loads(x) for x in (wsrv.data_dir / "audit" / "audit.log").read_text()
            .splitlines()]
    dropped = [r for r in recs if r["event"] == "terminal" and r["mailbox"] == "bob@example.org"
               and r["dropped"] > 0]
    assert dropped, "the stalled watcher never lost a message: its output is not bounded"
    assert all(r["watchers"] == 1 for r in dropped)  # the good one still got each
    if not os.environ.get("TERN_SANITIZED"):
        assert wsrv.rss_kib() - rss < 16 * 1024, "ternd grew with a watcher that does not read"
    s.close()


# --------------------------------------------------------------------------------------------
# hostile content

def test_hostile_content_is_neutralised_and_bounded(bigsrv, watch):
    w = watch(bigsrv, "alice@example.org")
    evil = (b"From: <x@client.test>\r\nSubject: \x1b[2J\x1b]0;pwned\x07 \xc2\x9b31m \xe2\x80\xaeevil"
            b"\r\n\r\n"
            b"esc \x1b[31mred\x1b[0m and \x9b lone CSI\r\n"
            b"nul \x00\x00 bel \x07 del \x7f bs \x08\x08\r\n"
            b".a dot line\r\n"
            b"bidi \xe2\x80\xae reversed \xe2\x81\xa6 isolate\r\n")
    evil += b"".join(b"line %d\r\n" % i for i in range(40))
    _, _, final = term_txn(bigsrv.smtp_port, "SEND", ["alice@example.org"], evil)
    assert final[0] == 250, final
    # a 1 MB line, which only BDAT carries (DATA lines stop at 1000 octets)
    s = smtp(bigsrv.smtp_port)
    big = b"Subject: long\r\n\r\n" + b"\x1bZ" * 500_000 + b"\r\n"
    assert s.docmd(f"SEND FROM:<{SENDER}>")[0] == 250
    assert s.docmd("RCPT TO:<alice@example.org>")[0] == 250
    s.send(b"BDAT %d LAST\r\n" % len(big) + big)
    code, text = s.getreply()
    assert code == 250, text
    s.quit()
    m1, m2 = w.wait_messages(2, timeout=TIMEOUT * 2)
    raw = bytes(w.out)
    for b in (b"\x1b", b"\x00", b"\x07", b"\x08", b"\x7f", b"\x9b", b"\xc2\x9b", b"\xe2\x80\xae",
              b"\xe2\x81\xa6"):
        assert b not in raw, f"{b!r} reached the terminal"
    assert "Subject: \\x1b[2J\\x1b]0;pwned\\x07 \\u009b31m \\u202eevil\n" in m1
    assert "esc \\x1b[31mred\\x1b[0m and \\x9b lone CSI\n" in m1
    assert "nul \\x00\\x00 bel \\x07 del \\x7f bs \\x08\\x08\n" in m1
    assert "\n.a dot line\n" in m1  # dot-stuffing undone
    assert "bidi \\u202e reversed \\u2066 isolate" in m1
    assert "[24 more lines]" in m1  # 20 body lines shown of 44
    lines = m2.splitlines()
    long_line = next(x for x in lines if x.startswith("\\x1bZ"))
    assert long_line.endswith(" [...]") and len(long_line) <= 200 + len(" [...]")
    assert len(m2) < 2000, "a 1 MB line must not reach the screen"


def test_terminal_max_size(wsrv, watch):
    w = watch(wsrv, "alice@example.org")
    big = msg("too big", ("z" * 78 + "\r\n") * 900)  # 72 KB > 64K
    _, rcpts, final = term_txn(wsrv.smtp_port, "SEND", ["alice@example.org"], big)
    assert rcpts[0][0] == 250 and final == (552, "5.3.4 Terminal messages are limited to "
                                                 "65536 octets"), final
    for verb in ("SOML", "SAML"):
        before = files(wsrv, "alice@example.org")
        _, _, final = term_txn(wsrv.smtp_port, verb, ["alice@example.org"],
                               msg(f"big {verb}", ("z" * 78 + "\r\n") * 900))
        assert final[0] == 250 and "queued as" in final[1], final
        (d,) = new_files(wsrv, "alice@example.org", before)
        assert f"Subject: big {verb}".encode() in d.raw
    term_txn(wsrv.smtp_port, "SEND", ["alice@example.org"], msg("small one"))
    (m,) = w.wait_messages(1)
    assert "small one" in m and len(w.messages()) == 1, "a message over max_size was shown"


# --------------------------------------------------------------------------------------------
# who may watch: the local socket

def test_uid_mapping_and_root(wsrv, watch):
    # nobody is alice's uid (erin's too, but erin is locked): no USER needed
    w = watch(wsrv, None, run_as="nobody")
    assert "watching alice@example.org" in w.errtext()
    _, _, final = term_txn(wsrv.smtp_port, "SEND", ["alice@example.org"], msg("mapped"))
    assert "Subject: mapped" in w.wait_messages(1)[0]
    rc, err = watch(wsrv, "bob@example.org", run_as="nobody", wait=False).refused()
    assert rc == 77 and "this uid may not watch the user" in err, err
    rc, err = watch(wsrv, "erin@example.org", run_as="nobody", wait=False).refused()
    assert rc == 77 and "locked" in err, err
    rc, err = watch(wsrv, "frank@example.org", wait=False).refused()  # root, forwarded user
    assert rc == 77 and "goes elsewhere" in err, err
    assert "watching bob@example.org" in watch(wsrv, "bob@example.org").errtext()  # root
    _, answer = watch.raw(wsrv, {"watch": "bob@example.org", "x": 1})
    assert answer.startswith("error send one line"), answer
    _, answer = watch.raw(wsrv, {"watch": "nobody-such@example.org"})
    assert answer == "error no such user", answer


def test_passwords_and_throttle(ternd_factory, watch):
    srv = make_server(ternd_factory, {"auth.max_failures": "2", "auth.window": "600"})
    env_ok = {"TERN_PASSWORD": PW["bob@example.org"]}
    w = watch(srv, "bob@example.org", "--password", run_as="nobody", env=env_ok)
    assert "watching bob@example.org" in w.errtext()
    w.stop()
    wrong = {"TERN_PASSWORD": "not-it"}
    outcomes = []
    for _ in range(4):
        rc, err = watch(srv, "bob@example.org", "--password", run_as="nobody", env=wrong,
                        wait=False).refused(timeout=TIMEOUT * 4)
        outcomes.append((rc, err.strip().split("refused: ")[-1]))
    assert outcomes[0] == (77, "authentication failed"), outcomes
    assert outcomes[-1] == (77, "too many failed attempts; try again later"), outcomes
    rc, err = watch(srv, "bob@example.org", "--password", run_as="nobody", env=env_ok,
                    wait=False).refused()
    assert rc == 77 and "too many failed attempts" in err, "the right password got in anyway"
    assert PW["bob@example.org"] not in (srv.data_dir / "audit" / "audit.log").read_text()
    srv.stop()


def test_allow_authenticated_and_none(ternd_factory, watch):
    srv = make_server(ternd_factory, {"terminal.allow": "authenticated"})
    watch(srv, "alice@example.org")
    first, _, _ = term_txn(srv.smtp_port, "SEND", ["alice@example.org"], msg("x"))
    assert first == (530, "5.7.0 Authentication required to send to a terminal")
    _, rcpts, final = term_txn(srv.smtp_port, "SOML", ["alice@example.org"], msg("soml unauth"))
    assert "will deliver to the mailbox (terminals take only authenticated senders)" in \
        rcpts[0][1] and final[0] == 250
    s = smtp(srv.submission_port)
    s.login("bob@example.org", PW["bob@example.org"])  # AUTH in clear: plaintext = loopback
    _, _, final = term_txn(srv.submission_port, "SEND", ["alice@example.org"],
                           msg("authenticated"), frm="bob@example.org", smtp_conn=s)
    s.quit()
    assert final[0] == 250 and "delivered to 1 terminal" in final[1], final
    srv.stop()

    srv = make_server(ternd_factory, {"terminal.allow": "none"}, name="none")
    s = smtp(srv.smtp_port)
    assert not s.has_extn("send") and s.has_extn("soml") and s.has_extn("saml")
    code, text = s.docmd(f"SEND FROM:<{SENDER}>")
    assert (code, text[:5]) == (502, b"5.5.1"), text
    s.quit()
    _, rcpts, final = term_txn(srv.smtp_port, "SAML", ["alice@example.org"], msg("saml none"))
    assert "mailbox (terminal messages are disabled)" in rcpts[0][1] and final[0] == 250
    rc, err = watch(srv, "alice@example.org", wait=False).refused()
    assert rc == 77 and "disabled" in err
    srv.stop()


# --------------------------------------------------------------------------------------------
# XWATCH

def test_xwatch_refusals_and_frames(wsrv, watch):
    import base64
    plain = base64.b64encode(b"\0alice@example.org\0" + PW["alice@example.org"].encode()).decode()
    with wsrv.smtp() as c:
        assert "XWATCH" not in "\n".join(c.ehlo().lines)
        c.expect("XWATCH", "502 5.5.1")  # the smtp listener never
        c.quit()
    with wsrv.submission() as c:
        c.ehlo()
        c.expect("XWATCH", "530 5.7.0")
        c.expect(f"AUTH PLAIN {plain}", "235")
        r = c.expect("XWATCH", "530 5.7.0")  # authenticated, but in clear
        assert "STARTTLS" in r.text
        c.quit()
    with wsrv.submission() as c:
        c.ehlo()
        c.starttls(client_tls_context())
        assert "XWATCH" not in "\n".join(c.ehlo().lines)
        c.expect("XWATCH", "530 5.7.0")  # no AUTH
        c.expect(f"AUTH PLAIN {plain}", "235")
        assert "XWATCH" in c.ehlo().lines
        c.expect("XWATCH now", "501 5.5.4")
        r = c.expect("XWATCH", "250 2.0.0")
        assert r.text.startswith("watching alice@example.org")
        c.expect("NOOP", "250")
        c.expect(f"MAIL FROM:<{SENDER}>", "503 5.5.1")
        body = "first\r\n.hidden dot\r\n..two dots\r\n"
        _, _, final = term_txn(wsrv.smtp_port, "SEND", ["alice@example.org"], msg("frame", body))
        mid = final[1].rsplit(" ", 1)[1]
        head = c._readline().decode()
        m = re.fullmatch(r"TERM time=(\d+) id=(\S+) size=(\d+) from=<(.*)>", head)
        assert m and m.group(2) == mid and m.group(4) == SENDER, head
        lines = []
        while (line := c._readline()) != b".":
            lines.append(line)
        assert b"..hidden dot" in lines and b"...two dots" in lines  # dot-stuffed
        assert sum(len(x) + 2 for x in lines) - 2 == int(m.group(3))  # minus the two stuffed dots
        c.expect("QUIT", "221")


def test_tern_watch_server(wsrv, watch):
    w = Watcher(["--server", f"127.0.0.1:{wsrv.submission_port}", "--user", "carol@example.net",
                 "--insecure", "--count", "2"], env={"TERN_PASSWORD": PW["carol@example.net"]})
    watch.started.append(w)
    w.ready()
    for i in range(2):
        _, _, final = term_txn(wsrv.smtp_port, "SAML", ["carol@example.net"], msg(f"net {i}"))
        assert final[0] == 250 and "shown on 1 terminal" in final[1], final
    assert w.proc.wait(TIMEOUT) == 0, w.errtext()
    assert [re.search(r"Subject: (net \d)", m).group(1) for m in w.messages()] == ["net 0",
                                                                                  "net 1"]
    w = Watcher(["--server", f"127.0.0.1:{wsrv.submission_port}", "--user", "carol@example.net",
                 "--insecure"], env={"TERN_PASSWORD": "wrong"})
    watch.started.append(w)
    rc, err = w.refused()
    assert rc == 77 and "AUTH refused: 535" in err, err


def test_reload_that_locks_the_user_ends_its_watches(ternd_factory, watch):
    srv = make_server(ternd_factory)
    local = watch(srv, "alice@example.org")
    net = Watcher(["--server", f"127.0.0.1:{srv.submission_port}", "--user",
                   "alice@example.org", "--insecure"],
                  env={"TERN_PASSWORD": PW["alice@example.org"]})
    watch.started.append(net)
    net.ready()
    srv._write(srv.data_dir / "users", users_file(alice_extra="nologin"))
    srv.chown()
    srv.reload()
    assert local.proc.wait(TIMEOUT) == 75 and "ended the watch" in local.errtext()
    assert net.proc.wait(TIMEOUT) == 75 and "421 " in net.errtext(), net.errtext()
    assert term_txn(srv.smtp_port, "SEND", ["alice@example.org"], msg("x"))[1][0][0] == 450
    srv.stop()


# --------------------------------------------------------------------------------------------
# the audit log

def test_audit_records(ternd_factory, watch):
    srv = make_server(ternd_factory)
    w = watch(srv, None, run_as="nobody")
    watch(srv, "bob@example.org", run_as="nobody", wait=False).refused()
    _, _, final = term_txn(srv.smtp_port, "SEND", ["alice@example.org"], msg("audited"))
    mid = final[1].rsplit(" ", 1)[1]
    w.wait_messages(1)
    with srv.submission() as c:
        c.ehlo()
        c.expect("XWATCH", "530 5.7.0")
        c.quit()
    w.stop()
    wait_all_unwatched(srv)
    recs = [json.loads(x) for x in (srv.data_dir / "audit" / "audit.log").read_text()
            .splitlines()]
    ev = lambda e: [r for r in recs if r["event"] == e]  # noqa: E731
    ok, refused, xw = (ev("watch")[i] for i in range(3))
    assert (ok["via"], ok["user"], ok["result"], ok["uid"]) == (
        "socket", "alice@example.org", "ok", NOBODY.pw_uid) and ok["pid"] > 0
    assert (refused["result"], refused["user"], refused["uid"]) == ("fail", "bob@example.org",
                                                                    NOBODY.pw_uid)
    assert refused["reason"].startswith("this uid may not watch")
    assert (xw["via"], xw["result"], xw["code"], xw["rule"]) == ("xwatch", "fail", 530,
                                                                 "encryption_required")
    (t,) = ev("terminal")
    assert (t["id"], t["verb"], t["mailbox"], t["from"], t["watchers"], t["dropped"]) == (
        mid, "SEND", "alice@example.org", SENDER, 1, 0) and t["size"] > 0 and t["session"]
    assert not [r for r in ev("message") if r["id"] == mid], "SEND stores nothing"
    (end,) = ev("watch_end")
    assert (end["user"], end["delivered"], end["dropped"], end["reason"]) == (
        "alice@example.org", 1, 0, "closed") and end["duration_ms"] >= 0
    srv.stop()
