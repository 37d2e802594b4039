"""tern's SMTP reply contract, line by line, against a real ternd on 127.0.0.1.

Most tests share one daemon per module (`server`: VRFY/EXPN answered to all, 127.0.0.2 denied);
tests that need other limits, signals or a fresh mailbox start their own. The raw client in
tern_it.Conn checks on every reply that enhanced status codes appear exactly when they should
(after EHLO, never before it or after HELO), so every test below also tests that rule.
"""
from __future__ import annotations

import base64
import email.utils
import hashlib
import os
import pwd
import re
import signal
import smtplib
import socket
import subprocess
import threading
import time

import pytest

from tern_it import (HOSTNAME, Conn, dot_stuff, make_message, message_id_of,
                     send_message, tmp_files)

SENDER = "sender@client.test"


# --------------------------------------------------------------------------------------------
# helpers

@pytest.fixture(scope="module")
def _srv_auth(module_ternd_factory):
    return module_ternd_factory(config={"policy.vrfy": "authenticated",
                                        "policy.expn": "authenticated"}, name="auth")


@pytest.fixture(scope="module")
def _srv_none(module_ternd_factory):
    return module_ternd_factory(config={"policy.vrfy": "none", "policy.expn": "none"},
                                name="none")


@pytest.fixture(scope="module")
def _srv_small(module_ternd_factory):
    return module_ternd_factory(config={"limits.message_size": "65536"}, name="small")


@pytest.fixture
def srv_auth(_srv_auth):
    """vrfy = expn = authenticated (the defaults): unauthenticated clients learn nothing."""
    return _srv_auth.ensure_running()


@pytest.fixture
def srv_none(_srv_none):
    """vrfy = expn = none"""
    return _srv_none.ensure_running()


@pytest.fixture
def srv_small(_srv_small):
    """message_size = 65536"""
    return _srv_small.ensure_running()


def ehlo_conn(srv, **kw) -> Conn:
    c = srv.smtp(**kw)
    c.ehlo()
    return c


def in_txn(srv, rcpts=("alice@example.org",), frm=SENDER) -> Conn:
    c = ehlo_conn(srv)
    c.expect(f"MAIL FROM:<{frm}>", "250 2.1.0")
    for r in rcpts:
        c.expect(f"RCPT TO:<{r}>", "250 2.1.5")
    return c


def find_by_msgid(srv, addr, msgid):
    return [d for d in srv.mailbox(addr) if d.body is not None and message_id_of(d.body) == msgid]


def assert_delivered_once(srv, addr, msgid, message: bytes, sender=SENDER):
    found = find_by_msgid(srv, addr, msgid)
    assert len(found) == 1, f"{addr}: expected 1 copy of {msgid}, found {len(found)}"
    d = found[0]
    assert d.problems() == [], d.problems()
    assert d.return_path == sender
    assert d.body == message, "delivered bytes differ from the bytes sent"
    return d


def assert_nothing_new(srv, before: set, why=""):
    new = srv.all_delivered_files() - before
    assert not new, f"{why}: delivered although rejected: {sorted(map(str, new))}"


# --------------------------------------------------------------------------------------------
# connect, HELO, EHLO

def test_greeting_220(server):
    with server.smtp() as c:
        r = c.greeting
        assert r.code == 220, r
        assert r.lines[0].startswith(f"{HOSTNAME} ESMTP tern"), r
        assert r.enh is None
        c.quit()


def test_submission_listener_greets(server):
    with Conn(server.submission_port) as c:
        assert c.greeting.code == 220 and c.greeting.lines[0].startswith(HOSTNAME)
        c.ehlo()
        c.quit()


def test_helo_250_without_enhanced_codes(server):
    with server.smtp() as c:
        r = c.expect("HELO client.test", f"250 {HOSTNAME}")
        assert r.enh is None and len(r.lines) == 1
        r = c.expect("NOOP", "250")
        assert r.enh is None
        r = c.expect("FOO", "500")
        assert r.enh is None
        c.quit()


def test_ehlo_extensions(server):
    with server.smtp() as c:
        r = c.expect("EHLO client.test", "250")
        assert r.lines[0].startswith(HOSTNAME), r
        assert len(r.lines) > 1
        kw = {l.split()[0].upper(): l for l in r.lines[1:]}
        for ext in ("PIPELINING", "SIZE", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES",
                    "CHUNKING", "HELP", "SEND", "SOML", "SAML"):
            assert ext in kw, f"EHLO does not offer {ext}:\n{r}"
        assert kw["SIZE"].split()[1:] == [str(10 * 1024 * 1024)], kw["SIZE"]
        for absent in ("STARTTLS", "AUTH"):
            assert absent not in kw, f"{absent} offered but not implemented:\n{r}"
        c.quit()


@pytest.mark.parametrize("line", [
    "HELO", "EHLO", "HELO ", "EHLO a..b.example", "EHLO -bad.example", "HELO bad-.example",
    "EHLO under_score.example", "EHLO [300.1.1.1]", "EHLO [127.0.0.1", "HELO [IPv6:zz::1]",
    "EHLO [1.2.3]",
])
def test_greeting_501_bad_argument(server, line):
    with server.smtp() as c:
        r = c.expect(line, "501")
        assert r.enh is None
        c.quit()


@pytest.mark.parametrize("arg", ["[127.0.0.1]", "[IPv6:::1]", "[IPv6:2001:db8::1]",
                                 "x", "client.test", "CLIENT.Example"])
def test_greeting_250_domains_and_literals(server, arg):
    with server.smtp() as c:
        c.expect(f"EHLO {arg}", "250")
        c.expect(f"HELO {arg}", "250")
        c.quit()


@pytest.mark.parametrize("again", ["EHLO client.test", "HELO client.test"])
def test_second_greeting_resets_transaction(server, again):
    with in_txn(server) as c:
        c.expect(again, "250")
        c.expect("DATA", "503")   # the transaction is gone
        c.expect("RCPT TO:<alice@example.org>", "503")
        c.expect(f"MAIL FROM:<{SENDER}>", "250")  # and MAIL is not "nested"
        c.quit()


def test_enhanced_codes_only_after_ehlo(server):
    with server.smtp() as c:
        assert c.expect("NOOP", "250").enh is None         # before any greeting
        assert c.expect("RSET", "250").enh is None
        c.expect("HELO client.test", "250")
        assert c.expect("NOOP", "250").enh is None         # after HELO
        c.expect("EHLO client.test", "250")
        assert c.expect("NOOP", "250 2.0.0").enh == "2.0.0"  # after EHLO
        assert c.expect("FOO", "500 5.5.2").enh == "5.5.2"
        c.expect("HELO client.test", "250")
        assert c.expect("NOOP", "250").enh is None         # HELO again
        c.expect("EHLO client.test", "250")
        c.expect("QUIT", "221 2.0.0")
        c.expect_eof()


# --------------------------------------------------------------------------------------------
# MAIL

def test_mail_before_greeting_503(server):
    with server.smtp() as c:
        r = c.expect(f"MAIL FROM:<{SENDER}>", "503")
        assert r.enh is None  # no EHLO yet: no enhanced code (the contract's general rule)
        c.quit()


def test_mail_nested_503(server):
    with in_txn(server, rcpts=()) as c:
        c.expect(f"MAIL FROM:<{SENDER}>", "503 5.5.1")
        c.quit()


@pytest.mark.parametrize("line,spec", [
    (f"MAIL FROM:<{SENDER}>", "250 2.1.0"),
    ("MAIL FROM:<>", "250 2.1.0"),
    (f"MAIL FROM:<{SENDER}> BODY=7BIT", "250 2.1.0"),
    (f"MAIL FROM:<{SENDER}> BODY=8BITMIME", "250 2.1.0"),
    (f"MAIL FROM:<{SENDER}> SMTPUTF8", "250 2.1.0"),
    (f"MAIL FROM:<{SENDER}> SMTPUTF8 BODY=8BITMIME SIZE=100", "250 2.1.0"),
    ("MAIL FROM:<jörg@bücher.example> SMTPUTF8", "250 2.1.0"),
    (f"MAIL FROM:<{SENDER}> SIZE=1000", "250 2.1.0"),
    (f"MAIL FROM:<{SENDER}> SIZE=10485760", "250 2.1.0"),
    ("MAIL FROM:<@relay.test:someone@client.test>", "250 2.1.0"),
    ("mail from:<sender@client.test>", "250 2.1.0"),
    (f"MAIL FROM:<{SENDER}> SIZE=10485761", "552 5.3.4"),
    (f"MAIL FROM:<{SENDER}> SIZE=abc", "501 5.5.4"),
    (f"MAIL FROM:<{SENDER}> SIZE=-5", "501 5.5.4"),
    (f"MAIL FROM:<{SENDER}> BODY=9BIT", "501 5.5.4"),
    (f"MAIL FROM:<{SENDER}> FOO=BAR", "555 5.5.4"),
    (f"MAIL FROM:<{SENDER}> XYZZY", "555 5.5.4"),
    (f"MAIL TO:<{SENDER}>", "501 5.5.2"),
    (f"MAIL <{SENDER}>", "501 5.5.2"),
    ("MAIL", "501 5.5.2"),
    ("MAIL FROM:<a b@client.test>", "553 5.1.7"),
    ("MAIL FROM:<a@@client.test>", "553 5.1.7"),
    ("MAIL FROM:<@client.test>", "553 5.1.7"),
    ("MAIL FROM:<a@client..test>", "553 5.1.7"),
    ("MAIL FROM:<a.@client.test>", "553 5.1.7"),
    ("MAIL FROM:<" + "a" * 65 + "@client.test>", "553 5.1.7"),
    ("MAIL FROM:<jörg@client.test>", "553 5.6.7"),
    ("MAIL FROM:<a@bücher.example>", "553 5.6.7"),
])
def test_mail(server, line, spec):
    with ehlo_conn(server) as c:
        c.expect(line, spec)
        c.quit()


@pytest.mark.parametrize("param", ["SIZE=100", "BODY=8BITMIME", "BODY=7BIT", "SMTPUTF8",
                                   "FOO=BAR"])
def test_mail_any_parameter_after_helo_555(server, param):
    with server.smtp() as c:
        c.helo()
        r = c.expect(f"MAIL FROM:<{SENDER}> {param}", "555")
        assert r.enh is None
        c.expect(f"MAIL FROM:<{SENDER}>", "250")
        c.quit()


# --------------------------------------------------------------------------------------------
# RCPT

def test_rcpt_before_mail_503(server):
    with ehlo_conn(server) as c:
        c.expect("RCPT TO:<alice@example.org>", "503 5.5.1")
        c.quit()


@pytest.mark.parametrize("rcpt,spec", [
    ("<alice@example.org>", "250 2.1.5"),
    ("<alice@EXAMPLE.ORG>", "250 2.1.5"),
    ("<carol@example.net>", "250 2.1.5"),
    ("<team@example.org>", "250 2.1.5"),
    ("<postmaster@example.org>", "250 2.1.5"),
    ("<postmaster@example.net>", "250 2.1.5"),
    ("<postmaster>", "250"),
    ("<POSTMASTER>", "250"),
    ("<PostMaster>", "250"),
    ("<@a.test:alice@example.org>", "250 2.1.5"),
    ("<@a.test,@b.test:alice@example.org>", "250 2.1.5"),
    ("<nobody@example.org>", "550 5.1.1"),
    ("<carol@example.org>", "550 5.1.1"),
    ("<dave@example.org>", "551 5.1.6 User not local; please try <dave@elsewhere.test>"),
    ("<someone@other.test>", "550 5.7.1"),
    ("<alice@example.org.other.test>", "550 5.7.1"),
    ("<alice%other.test@example.org>", "550 5.7.1"),
    ("<other.test!alice@example.org>", "550 5.7.1"),
    ("<host!user@example.org>", "550 5.7.1"),
    ("<\"user@other.test\"@example.org>", "550 5.7.1"),
    ("<@a.test,@b.test:user@other.test>", "550 5.7.1"),
    ("<user%other.test@example.org>", "550 5.7.1"),
    ("<alice example.org>", "553 5.1.3"),
    ("<alice@>", "553 5.1.3"),
    ("<@example.org>", "553 5.1.3"),
    ("<alice@example..org>", "553 5.1.3"),
])
def test_rcpt(server, rcpt, spec):
    with in_txn(server, rcpts=()) as c:
        c.expect(f"RCPT TO:{rcpt}", spec)
        c.quit()


@pytest.mark.parametrize("line", ["RCPT FROM:<alice@example.org>", "RCPT <alice@example.org>",
                                  "RCPT", "RCPT alice@example.org"])
def test_rcpt_without_to_501(server, line):
    with in_txn(server, rcpts=()) as c:
        c.expect(line, "501 5.5.2")
        c.quit()


def test_rcpt_disguises_never_deliver(server):
    """Every disguise is refused even when the transaction has a real recipient too: the
    message reaches alice once and nothing else is written anywhere."""
    before = server.all_delivered_files()
    disguises = ["user%other.test@example.org", "host!user@example.org",
                 "\"user@other.test\"@example.org", "@a.test,@b.test:user@other.test"]
    with in_txn(server) as c:
        for d in disguises:
            c.expect(f"RCPT TO:<{d}>", "550 5.7.1")
        msgid, msg = make_message(subject="disguises")
        c.data(msg)
        c.quit()
    new = server.all_delivered_files() - before
    assert len(new) == 1 and "/example.org/alice/new/" in str(next(iter(new))), new


def test_rcpt_source_route_to_local_user_delivers(server):
    with in_txn(server, rcpts=()) as c:
        c.expect("RCPT TO:<@a.test,@b.test:alice@example.org>", "250")
        msgid, msg = make_message(subject="source route")
        c.data(msg)
        c.quit()
    assert_delivered_once(server, "alice@example.org", msgid, msg)


def test_rcpt_postmaster_delivers_to_alias_target(server):
    with in_txn(server, rcpts=()) as c:
        c.expect("RCPT TO:<PostMaster>", "250")
        msgid, msg = make_message(to="postmaster", subject="to postmaster")
        c.data(msg)
        c.quit()
    assert_delivered_once(server, "alice@example.org", msgid, msg)


def test_rcpt_more_than_limit_452(server):
    with in_txn(server, rcpts=()) as c:
        c.send_lines([f"RCPT TO:<{'alice' if i % 2 else 'bob'}@example.org>"
                      for i in range(100)])
        for i, r in enumerate(c.replies(100)):
            assert r.matches("250 2.1.5"), f"RCPT #{i + 1}: {r}\n{c.transcript()}"
        c.expect("RCPT TO:<carol@example.net>", "452 4.5.3")
        msgid, msg = make_message(subject="100 rcpts")
        c.data(msg)
        c.quit()
    assert find_by_msgid(server, "alice@example.org", msgid)
    assert find_by_msgid(server, "bob@example.org", msgid)
    assert not find_by_msgid(server, "carol@example.net", msgid)


def test_send_rcpt_450_no_terminal(server):
    with ehlo_conn(server) as c:
        c.expect(f"SEND FROM:<{SENDER}>", "250")
        r = c.expect("RCPT TO:<alice@example.org>", "450 4.2.1")
        assert "is not accepting terminal messages" in r.text, r
        assert "alice" in r.text
        c.quit()


@pytest.mark.parametrize("verb", ["SOML", "SAML"])
def test_soml_saml_deliver_to_mailbox(server, verb):
    with ehlo_conn(server) as c:
        c.expect(f"{verb} FROM:<{SENDER}>", "250")
        c.expect("RCPT TO:<bob@example.org>", "250 2.1.5")
        msgid, msg = make_message(to="bob@example.org", subject=verb)
        c.data(msg)
        c.quit()
    assert_delivered_once(server, "bob@example.org", msgid, msg)


# --------------------------------------------------------------------------------------------
# DATA

def test_data_without_mail_503(server):
    with ehlo_conn(server) as c:
        c.expect("DATA", "503 5.5.1")
        c.quit()


def test_data_without_rcpt_503(server):
    with in_txn(server, rcpts=()) as c:
        c.expect("DATA", "503 5.5.1")
        c.quit()


def test_data_all_rcpts_rejected_554(server):
    with in_txn(server, rcpts=()) as c:
        c.expect("RCPT TO:<nobody@example.org>", "550")
        c.expect("RCPT TO:<someone@other.test>", "550")
        c.expect("DATA", "554 5.5.1")
        c.quit()


def test_data_with_argument_501(server):
    with in_txn(server) as c:
        c.expect("DATA now", "501 5.5.4")
        c.expect("DATA", "354")  # the transaction survived
        c.send_raw(b"Subject: x\r\n\r\nx\r\n.\r\n")
        c.expect(None, "250 2.0.0")
        c.quit()


def test_data_delivery_format_and_durability(server):
    """250 2.0.0 Ok: queued as ID; at that moment the message is in new/ of every recipient's
    Maildir (alias expanded), named NAME,S=SIZE, holding Return-Path:, Received: and exactly the
    bytes sent, dot-unstuffed; tmp/ is empty."""
    body = (b"first line\r\n.leading dot\r\n..two dots\r\n.\tdot tab\r\n8bit: \xc3\xa9t\xc3\xa9\r\n"
            b"trailing spaces   \r\n\r\nlast line\r\n")
    msgid, msg = make_message(to="team@example.org", subject="format", body=body)
    with ehlo_conn(server) as c:
        c.expect(f"MAIL FROM:<{SENDER}> BODY=8BITMIME", "250 2.1.0")
        c.expect("RCPT TO:<team@example.org>", "250 2.1.5")
        c.expect("RCPT TO:<carol@example.net>", "250 2.1.5")
        c.expect("DATA", "354")
        c.send_raw(dot_stuff(msg) + b".\r\n")
        r = c.expect(None, "250 2.0.0")
        # no sleep: the files must exist now
        for addr in ("alice@example.org", "bob@example.org", "carol@example.net"):
            d = assert_delivered_once(server, addr, msgid, msg)
            assert d.received.startswith(b"Received:"), d.received
        assert tmp_files(server.data_dir) == []
        c.quit()
    assert re.match(r"^Ok: queued as \S+", r.text), r
    queue_id = r.text.split()[-1]
    assert queue_id


@pytest.mark.parametrize("greeting,proto", [("EHLO", "ESMTP"), ("HELO", "SMTP")])
def test_received_header_rfc5321_4_4(server, greeting, proto):
    """Received: from <HELO name> (... [client IP]) by <our host> ... with (E)SMTP ...; <date>"""
    with server.smtp() as c:
        c.expect(f"{greeting} relay.client.test", "250")
        c.expect(f"MAIL FROM:<{SENDER}>", "250")
        c.expect("RCPT TO:<carol@example.net>", "250")
        msgid, msg = make_message(subject=f"received via {greeting}")
        c.data(msg, spec="250")
        c.quit()
    d = assert_delivered_once(server, "carol@example.net", msgid, msg)
    rcvd = re.sub(rb"\r?\n[ \t]+", b" ", d.received).decode().strip()
    assert re.match(r"^Received: from relay\.client\.test \(.*\[127\.0\.0\.1\]\) ", rcvd), rcvd
    assert f" by {HOSTNAME} " in rcvd, rcvd
    assert re.search(rf" with {proto}\b", rcvd), rcvd
    stamp = rcvd.rsplit(";", 1)[1].strip()
    assert email.utils.parsedate_to_datetime(stamp).tzinfo is not None, rcvd


def test_data_null_sender_return_path(server):
    with in_txn(server, frm="") as c:
        msgid, msg = make_message(subject="bounce")
        c.data(msg)
        c.quit()
    assert_delivered_once(server, "alice@example.org", msgid, msg, sender="")


def test_data_message_over_size_552(srv_small):
    before = srv_small.all_delivered_files()
    with ehlo_conn(srv_small) as c:
        size = [l for l in c.cmd("EHLO client.test").lines if l.upper().startswith("SIZE")]
        assert size == ["SIZE 65536"], size
        c.expect(f"MAIL FROM:<{SENDER}> SIZE=65537", "552 5.3.4")
        c.expect(f"MAIL FROM:<{SENDER}>", "250")
        c.expect("RCPT TO:<alice@example.org>", "250")
        _, msg = make_message(subject="too big", body=(b"x" * 70 + b"\r\n") * 1000)
        c.data(msg, spec="552 5.3.4")
        c.expect("NOOP", "250 2.0.0")
        # a message under the limit still goes through on the same connection
        msgid, small = make_message(subject="fits", body=(b"y" * 70 + b"\r\n") * 500)
        send_message(c, SENDER, ["alice@example.org"], small)
        c.quit()
    new = srv_small.all_delivered_files() - before
    assert len(new) == 1, new
    assert_delivered_once(srv_small, "alice@example.org", msgid, small)


@pytest.mark.parametrize("n,spec", [(100, "250 2.0.0"), (101, "554 5.4.6")])
def test_data_received_loop(server, n, spec):
    before = server.all_delivered_files()
    hops = b"".join(b"Received: from relay%d.test by relay%d.test; Mon, 1 Jan 2024 00:00:00 "
                    b"+0000\r\n" % (i, i + 1) for i in range(n))
    msgid, msg = make_message(subject=f"{n} hops")
    with in_txn(server) as c:
        c.data(hops + msg, spec=spec)
        c.expect("NOOP", "250")
        c.quit()
    if n > 100:
        assert_nothing_new(server, before, "mail loop")
    else:
        assert_delivered_once(server, "alice@example.org", msgid, hops + msg)


def test_data_line_1000_octets_ok_1001_rejected(server):
    before = server.all_delivered_files()
    ok_id, ok = make_message(subject="998", body=b"a" * 998 + b"\r\nend\r\n")
    bad_id, bad = make_message(subject="999", body=b"b" * 999 + b"\r\nend\r\n")
    with in_txn(server) as c:
        c.data(ok)
        c.expect(f"MAIL FROM:<{SENDER}>", "250")
        c.expect("RCPT TO:<alice@example.org>", "250")
        c.data(bad, spec="554 5.6.0")
        c.expect("NOOP", "250 2.0.0")
        c.quit()
    assert_delivered_once(server, "alice@example.org", ok_id, ok)
    assert len(server.all_delivered_files() - before) == 1


@pytest.mark.parametrize("bare", [b"\n", b"\r"], ids=["LF", "CR"])
def test_data_bare_line_ending_rejected(server, bare):
    before = server.all_delivered_files()
    with in_txn(server) as c:
        c.expect("DATA", "354")
        c.send_raw(b"Subject: bare\r\n\r\nline one" + bare + b"line two\r\nend\r\n.\r\n")
        c.expect(None, "554 5.6.0")
        c.expect("NOOP", "250 2.0.0")
        c.quit()
    assert_nothing_new(server, before, "bare CR/LF")


@pytest.mark.parametrize("sep", [b"\n.\n", b"\r.\r", b"\r\n.\n", b"\n.\r\n", b"\r.\r\n"],
                         ids=["LF.LF", "CR.CR", "CRLF.LF", "LF.CRLF", "CR.CRLF"])
def test_smtp_smuggling_cve_2023_51766(server, sep):
    """DATA, text, a fake end of data, a whole smuggled transaction, then the real end: one
    reply (554 5.6.0) and nothing delivered: neither the message nor the smuggled one."""
    before = server.all_delivered_files()
    with in_txn(server, rcpts=("bob@example.org",)) as c:
        c.expect("DATA", "354")
        c.send_raw(b"From: <sender@client.test>\r\nSubject: outer\r\n\r\nouter body" + sep +
                   b"MAIL FROM:<admin@example.org>\r\n"
                   b"RCPT TO:<alice@example.org>\r\n"
                   b"DATA\r\n"
                   b"From: <admin@example.org>\r\nSubject: smuggled\r\n\r\nsmuggled\r\n"
                   b"\r\n.\r\n")
        c.expect(None, "554 5.6.0")
        # exactly one reply: the next one answers NOOP, not a smuggled command
        c.expect("NOOP", "250 2.0.0")
        c.quit()
    assert_nothing_new(server, before, "smuggling")


# --------------------------------------------------------------------------------------------
# BDAT (CHUNKING)

def test_bdat_chunks(server):
    msgid, msg = make_message(subject="bdat", body=b"line\r\n.\r\n..dots kept as is\r\nend\r\n")
    a, b = msg[:50], msg[50:]
    with in_txn(server) as c:
        c.send(f"BDAT {len(a)}")
        c.send_raw(a)
        c.expect(None, "250 2.0.0")
        c.send(f"BDAT {len(b)} LAST")
        c.send_raw(b)
        c.expect(None, "250 2.0.0 Ok: queued as")
        c.quit()
    assert_delivered_once(server, "alice@example.org", msgid, msg)


def test_bdat_pipelined_with_empty_last(server):
    msgid, msg = make_message(subject="bdat pipelined")
    with ehlo_conn(server) as c:
        c.send_raw(f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<carol@example.net>\r\n"
                   f"BDAT {len(msg)}\r\n".encode() + msg + b"BDAT 0 LAST\r\n",
                   kinds=["MAIL", "RCPT", "BDAT", "BDAT"])
        c.expect(None, "250 2.1.0")
        c.expect(None, "250 2.1.5")
        c.expect(None, "250 2.0.0")
        c.expect(None, "250 2.0.0 Ok: queued as")
        c.quit()
    assert_delivered_once(server, "carol@example.net", msgid, msg)


def test_bdat_without_transaction_consumes_chunk(server):
    payload = b"QUIT\r\nRSET\r\n"
    with ehlo_conn(server) as c:
        c.send(f"BDAT {len(payload)}")
        c.send_raw(payload)
        c.expect(None, "503 5.5.1")
        c.expect("NOOP", "250 2.0.0")  # QUIT in the chunk was data, not a command
        c.quit()


@pytest.mark.parametrize("line", ["BDAT", "BDAT abc", "BDAT -1", "BDAT 5 FIRST", "BDAT 5 LAST x"])
def test_bdat_bad_syntax_501(server, line):
    with in_txn(server) as c:
        c.expect(line, "501 5.5.4")


# --------------------------------------------------------------------------------------------
# RSET, NOOP, QUIT, HELP

def test_rset(server):
    with in_txn(server) as c:
        c.expect("RSET", "250 2.0.0")
        c.expect("DATA", "503 5.5.1")
        c.expect(f"MAIL FROM:<{SENDER}>", "250 2.1.0")
        c.quit()


def test_rset_with_argument_501(server):
    with ehlo_conn(server) as c:
        c.expect("RSET now", "501")
        c.quit()


def test_noop(server):
    with ehlo_conn(server) as c:
        c.expect("NOOP", "250 2.0.0")
        c.expect("NOOP ignored argument", "250 2.0.0")  # RFC 5321 4.1.1.9
        c.quit()


def test_quit_221_and_close(server):
    with ehlo_conn(server) as c:
        c.expect("QUIT", "221 2.0.0")
        c.expect_eof()


def test_quit_with_argument_501(server):
    with ehlo_conn(server) as c:
        c.expect("QUIT now", "501")
        c.expect("NOOP", "250")  # still open
        c.quit()


def test_help(server):
    with ehlo_conn(server) as c:
        r = c.expect("HELP", "214")
        assert len(r.lines) > 1, r
        c.quit()


@pytest.mark.parametrize("topic", ["HELO", "EHLO", "MAIL", "RCPT", "DATA", "BDAT", "RSET",
                                   "NOOP", "QUIT", "HELP", "VRFY", "EXPN", "SEND", "SOML",
                                   "SAML", "mail"])
def test_help_topic_214(server, topic):
    with ehlo_conn(server) as c:
        c.expect(f"HELP {topic}", "214")
        c.quit()


def test_help_unknown_topic_504(server):
    with ehlo_conn(server) as c:
        c.expect("HELP bogus", "504 5.5.1")
        c.quit()


# --------------------------------------------------------------------------------------------
# VRFY, EXPN

@pytest.mark.parametrize("line,spec", [
    ("VRFY alice", "250 2.1.5 Alice Liddell <alice@example.org>"),
    ("VRFY alice@example.org", "250 2.1.5 Alice Liddell <alice@example.org>"),
    ("VRFY carol@example.net", "250 2.1.5 Carol Smith <carol@example.net>"),
    ("VRFY nobody", "550 5.1.1"),
    ("VRFY nobody@example.org", "550 5.1.1"),
    ("VRFY dave@example.org", "551 5.1.6"),
    ("VRFY", "501 5.5.2"),
])
def test_vrfy_all(server, line, spec):
    with ehlo_conn(server) as c:
        c.expect(line, spec)
        c.quit()


def test_vrfy_ambiguous_553(server):
    with ehlo_conn(server) as c:
        r = c.expect("VRFY smith", "553 5.1.4")
        text = "\n".join(r.lines)
        assert len(r.lines) >= 2, r
        assert "bob@example.org" in text and "carol@example.net" in text, r
        assert "alice" not in text, r
        c.quit()


@pytest.mark.parametrize("which", ["srv_auth", "srv_none"])
@pytest.mark.parametrize("arg", ["alice", "nobody@example.org", "smith"])
def test_vrfy_not_disclosed_252(request, which, arg):
    srv = request.getfixturevalue(which)
    with ehlo_conn(srv) as c:
        c.expect(f"VRFY {arg}", "252 2.5.2")
        c.quit()


def test_expn_all(server):
    with ehlo_conn(server) as c:
        r = c.expect("EXPN team@example.org", "250")
        assert len(r.lines) == 2, r
        assert "alice@example.org" in r.lines[0] and "bob@example.org" in r.lines[1], r
        r = c.expect("EXPN postmaster", "250")
        assert len(r.lines) == 1 and "alice@example.org" in r.lines[0], r
        c.expect("EXPN alice@example.org", "550 5.1.1")
        c.expect("EXPN nobody@example.org", "550 5.1.1")
        c.quit()


def test_expn_authenticated_252(srv_auth):
    with ehlo_conn(srv_auth) as c:
        c.expect("EXPN team@example.org", "252")
        c.quit()


def test_expn_none_502(srv_none):
    with ehlo_conn(srv_none) as c:
        c.expect("EXPN team@example.org", "502 5.5.1")
        c.quit()


# --------------------------------------------------------------------------------------------
# refusals and errors

@pytest.mark.parametrize("line,reply", [("TURN", "502 5.7.0"), ("ETRN example.org", "502 5.5.1")])
def test_not_available_502(server, line, reply):
    """TURN only for an authenticated client (RFC 2645); ETRN only where relay domains are
    configured (this server has none)."""
    with ehlo_conn(server) as c:
        c.expect(line, reply)
        c.quit()


@pytest.mark.parametrize("line", ["FOO", "MAILX FROM:<a@b.test>", "XEXCH50 1 2", "\x01\x02"])
def test_unknown_command_500(server, line):
    with ehlo_conn(server) as c:
        c.expect(line, "500 5.5.2")
        c.quit()


def test_command_line_length_limit(server):
    with ehlo_conn(server) as c:
        c.expect("NOOP " + "x" * 505, "250")          # 512 octets with CRLF: allowed
        c.expect("NOOP " + "x" * 506, "500 5.5.2")    # 513: too long
        c.expect("RCPT TO:<" + "a" * 600 + "@example.org>", "500 5.5.2")
        c.expect("NOOP", "250 2.0.0")  # one reply per long line: the tail was not a command
        c.quit()


def test_bad_commands_limit_421(server):
    with ehlo_conn(server) as c:
        c.send_lines(["BOGUS"] * 20)
        for i, r in enumerate(c.replies(20)):
            assert r.matches("500 5.5.2"), f"error #{i + 1}: {r}\n{c.transcript()}"
        c.send("NOOP")
        c.expect(None, "421 4.7.0")
        c.expect_eof()


def test_denied_client_554_then_503(server):
    with server.smtp(bind="127.0.0.2") as c:
        assert c.greeting.code == 554 and c.greeting.enh is None, c.greeting
        for line in ["EHLO client.test", "HELO client.test", f"MAIL FROM:<{SENDER}>",
                     "RCPT TO:<alice@example.org>", "DATA", "RSET", "NOOP", "VRFY alice",
                     "HELP", "FOO"]:
            c.expect(line, "503")
        c.expect("QUIT", "221")
        c.expect_eof()


def test_idle_timeout_421(ternd_factory):
    t = ternd_factory(config={"limits.command_timeout": "2"})
    with ehlo_conn(t) as c:
        start = time.monotonic()
        c.expect(None, "421 4.4.2")
        elapsed = time.monotonic() - start
        c.expect_eof()
    assert 1.5 <= elapsed <= 9, f"421 after {elapsed:.1f}s with command_timeout = 2"


def test_connection_limits_421(ternd_factory):
    t = ternd_factory(config={"limits.connections": "5", "limits.connections_per_ip": "3"})
    conns = []
    try:
        for _ in range(3):
            conns.append(t.smtp())  # greeted 220 (Conn reads the greeting)
            assert conns[-1].greeting.code == 220
        over = Conn(t.smtp_port, greet=False)  # 4th from 127.0.0.1: per-IP limit
        over.expect(None, "421")
        over.expect_eof()
        for ip in ("127.0.0.3", "127.0.0.4"):
            conns.append(Conn(t.smtp_port, bind=ip))
            assert conns[-1].greeting.code == 220, conns[-1].greeting
        over = Conn(t.smtp_port, bind="127.0.0.5", greet=False)  # 6th overall
        over.expect(None, "421")
        over.expect_eof()
        # a slot freed is a slot available again (bounded wait for ternd to see the close)
        conns.pop(0).quit()
        deadline = time.monotonic() + 5
        while True:
            c = Conn(t.smtp_port, greet=False)
            r = c.reply()
            if r.code == 220:
                conns.append(c)
                break
            c.close()
            assert time.monotonic() < deadline, "slot not released after QUIT"
            time.sleep(0.05)
    finally:
        for c in conns:
            c.close()


# --------------------------------------------------------------------------------------------
# pipelining

def test_pipelining_transaction_in_two_writes(server):
    msgid, msg = make_message(subject="pipelined")
    with ehlo_conn(server) as c:
        c.send_lines([f"MAIL FROM:<{SENDER}>", "RCPT TO:<alice@example.org>",
                      "RCPT TO:<nobody@example.org>", "RCPT TO:<bob@example.org>", "DATA"])
        for spec in ["250 2.1.0", "250 2.1.5", "550 5.1.1", "250 2.1.5", "354"]:
            c.expect(None, spec)
        c.send_raw(dot_stuff(msg) + b".\r\nRSET\r\nMAIL FROM:<>\r\nRCPT TO:<carol@example.net>"
                   b"\r\nNOOP\r\nQUIT\r\n", kinds=["RSET", "MAIL", "RCPT", "NOOP", "QUIT"])
        for spec in ["250 2.0.0 Ok: queued as", "250 2.0.0", "250 2.1.0", "250 2.1.5",
                     "250 2.0.0", "221 2.0.0"]:
            c.expect(None, spec)
        c.expect_eof()
    assert_delivered_once(server, "alice@example.org", msgid, msg)
    assert_delivered_once(server, "bob@example.org", msgid, msg)


def test_pipelining_many_commands_replies_in_order(server):
    cycle = [("NOOP", "250 2.0.0"), ("HELP MAIL", "214"), ("VRFY bob", "250 2.1.5 Bob Smith"),
             ("RSET", "250 2.0.0"), (f"MAIL FROM:<{SENDER}>", "250 2.1.0"),
             ("RCPT TO:<carol@example.net>", "250 2.1.5"), ("RSET", "250 2.0.0"),
             ("EXPN team@example.org", "250")]
    seq = [cycle[i % len(cycle)] for i in range(240)]
    seq.insert(100, ("FOO", "500 5.5.2"))
    k = next(k for k in range(170, len(seq)) if seq[k][0] == "RSET")
    seq.insert(k + 1, ("DATA", "503 5.5.1"))  # no transaction open there
    with ehlo_conn(server) as c:
        c.send_lines([line for line, _ in seq])
        for i, (line, spec) in enumerate(seq):
            r = c.reply()
            assert r.matches(spec), f"reply #{i + 1} to {line!r}: {r}\n{c.transcript()}"
        c.quit()


# --------------------------------------------------------------------------------------------
# swaks

def swaks(srv, *args, timeout=60):
    cmd = ["swaks", "--server", f"127.0.0.1:{srv.smtp_port}", "--helo", "client.test",
           "--timeout", "20", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("extra", [[], ["--pipeline"], ["--protocol", "SMTP"]],
                         ids=["esmtp", "pipeline", "helo"])
def test_swaks_delivers(server, extra):
    token = os.urandom(8).hex()
    p = swaks(server, "--to", "bob@example.org", "--from", SENDER,
              "--header", f"Subject: swaks {token}", "--body", f"body {token}\n.dot line",
              *extra)
    assert p.returncode == 0, p.stdout + p.stderr
    got = [d for d in server.mailbox("bob@example.org") if token.encode() in (d.body or b"")]
    assert len(got) == 1, p.stdout
    assert got[0].problems() == []
    assert f"body {token}\r\n.dot line\r\n".encode() in got[0].body


def test_swaks_unknown_recipient(server):
    before = server.all_delivered_files()
    p = swaks(server, "--to", "nobody@example.org", "--from", SENDER, "--body", "x")
    assert p.returncode != 0
    assert "550 5.1.1" in p.stdout, p.stdout
    assert_nothing_new(server, before, "unknown recipient")


def test_smtplib_sendmail(server):
    msgid, msg = make_message(to="carol@example.net", subject="smtplib")
    with smtplib.SMTP("127.0.0.1", server.smtp_port, local_hostname="client.test",
                      timeout=10) as s:
        code, _ = s.ehlo()
        assert code == 250 and s.has_extn("pipelining") and s.has_extn("chunking")
        assert int(s.esmtp_features["size"]) == 10 * 1024 * 1024
        refused = s.sendmail(SENDER, ["carol@example.net", "nobody@example.org"], msg)
        assert list(refused) == ["nobody@example.org"] and refused["nobody@example.org"][0] == 550
        code, text = s.verify("alice")
        assert code == 250 and b"Alice Liddell <alice@example.org>" in text
    assert_delivered_once(server, "carol@example.net", msgid, msg)


# --------------------------------------------------------------------------------------------
# a large message, memory

def test_20mib_message_streamed_in_bounded_memory(ternd_factory):
    t = ternd_factory(config={"limits.message_size": "30M"},
                      env={"ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") +
                           ":quarantine_size_mb=4:thread_local_quarantine_size_kb=64"})
    # warm up: one small message, so idle RSS includes what any transaction allocates
    with in_txn(t) as c:
        c.data(make_message()[1])
        c.quit()
    idle = t.rss_kib()
    b64 = base64.b64encode(os.urandom(15 * 1024 * 1024))  # 20 MiB of base64
    body = b"\r\n".join(b64[i:i + 76] for i in range(0, len(b64), 76)) + b"\r\n"
    msgid, msg = make_message(subject="20 MiB", body=body)
    assert len(msg) >= 20 * 1024 * 1024
    peak = [idle]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            try:
                peak[0] = max(peak[0], t.rss_kib())
            except (OSError, RuntimeError):
                return
            time.sleep(0.01)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    try:
        with ehlo_conn(t, timeout=60) as c:
            c.expect(f"MAIL FROM:<{SENDER}> SIZE={len(msg)}", "250 2.1.0")
            c.expect("RCPT TO:<alice@example.org>", "250")
            c.expect("DATA", "354")
            step = 256 * 1024
            for i in range(0, len(msg), step):
                c.sock.sendall(msg[i:i + step])
            c.send_raw(b".\r\n")
            c.expect(None, "250 2.0.0")
            c.quit()
    finally:
        stop.set()
        th.join(5)
    grown = (peak[0] - idle) / 1024
    print(f"RSS idle {idle} KiB, peak {peak[0]} KiB while receiving {len(msg)} bytes")
    assert grown < 40, f"RSS grew by {grown:.1f} MiB (idle {idle} KiB, peak {peak[0]} KiB)"
    got = t.mailbox("alice@example.org")
    big = [d for d in got if d.body is not None and len(d.body) == len(msg)]
    assert len(big) == 1, [len(d.raw) for d in got]
    assert hashlib.sha256(big[0].body).digest() == hashlib.sha256(msg).digest()
    assert big[0].problems() == []


# --------------------------------------------------------------------------------------------
# signals, config

def test_sighup_reload_adds_user_keeps_connections(ternd_factory):
    t = ternd_factory()
    with ehlo_conn(t) as old:
        old.expect(f"MAIL FROM:<{SENDER}>", "250")
        old.expect("RCPT TO:<erin@example.org>", "550 5.1.1")
        t.users.append(("erin@example.org", "Erin New", ""))
        t.aliases.append("crew@example.org: erin, alice")
        t.write_files()
        pid = t.pid
        t.signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while True:
            with in_txn(t, rcpts=()) as c:
                r = c.cmd("RCPT TO:<erin@example.org>")
                if r.matches("250 2.1.5"):
                    c.expect("RCPT TO:<crew@example.org>", "250 2.1.5")
                    msgid, msg = make_message(to="erin@example.org", subject="after reload")
                    c.data(msg)
                    c.quit()
                    break
                assert r.matches("550 5.1.1"), r
            assert time.monotonic() < deadline, "SIGHUP did not load the new user in 10 s"
            time.sleep(0.1)
        assert t.alive() and t.pid == pid
        # the connection opened before the reload still works and can finish a message
        old.expect("RCPT TO:<alice@example.org>", "250 2.1.5")
        old_id, old_msg = make_message(subject="old connection")
        old.data(old_msg)
        old.quit()
    assert_delivered_once(t, "erin@example.org", msgid, msg)
    assert_delivered_once(t, "alice@example.org", old_id, old_msg)


def test_users_file_change_picked_up_without_signal(ternd_factory):
    """An edit of the users file (as `tern user` makes, by rename) is noticed by ternd on its
    own, without SIGHUP, within a few seconds."""
    t = ternd_factory()
    pid = t.pid
    with in_txn(t, rcpts=()) as c:
        c.expect("RCPT TO:<frank@example.org>", "550 5.1.1")
        c.quit()
    users = t.data_dir / "users"
    tmp = t.data_dir / ".users.new"
    tmp.write_text(users.read_text() + "frank@example.org:::::Frank New:::\n")
    os.chown(tmp, users.stat().st_uid, users.stat().st_gid)
    os.rename(tmp, users)
    deadline = time.monotonic() + 10
    while True:
        with in_txn(t, rcpts=()) as c:
            r = c.cmd("RCPT TO:<frank@example.org>")
            c.quit()
        if r.matches("250 2.1.5"):
            break
        assert r.matches("550 5.1.1"), r
        assert time.monotonic() < deadline, "the changed users file was not picked up in 10 s"
        time.sleep(0.2)
    assert t.alive() and t.pid == pid


def test_sigterm_drains_and_exits_0(ternd_factory):
    t = ternd_factory()
    idle = ehlo_conn(t)
    busy = in_txn(t)
    busy.expect("DATA", "354")
    msgid, msg = make_message(subject="in flight at SIGTERM")
    half = len(msg) // 2
    busy.send_raw(msg[:half])
    t.signal(signal.SIGTERM)
    idle.expect(None, "421 4.3.2")
    idle.expect_eof()
    busy.send_raw(msg[half:] + b".\r\n")
    busy.expect(None, "250 2.0.0")
    busy.close()
    try:
        rc = t.proc.wait(15)
    except subprocess.TimeoutExpired:
        pytest.fail("ternd did not exit within 15 s of SIGTERM")
    assert rc == 0, f"ternd exited {rc} after SIGTERM"
    assert_delivered_once(t, "alice@example.org", msgid, msg)
    # and nothing listens any more
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", t.smtp_port), timeout=2).close()


CONTRACT_CONFIG = """\
[server]
hostname = mx.test.example
data_dir = {data_dir}            ; absolute in tests
user = {user}
domains = example.org, example.net
workers = 4
[listen]
smtp = 127.0.0.1:{smtp}          ; pick free ports > 20000 at run time
submission = 127.0.0.1:{submission}
[limits]
message_size = 10M
recipients = 100
connections = 1000
connections_per_ip = 50
bad_commands = 20
junk_commands = 1000
command_timeout = 300
data_timeout = 600
shutdown_timeout = 30
min_free_space = 0
[policy]
deny =                          ; e.g. 127.0.0.2/32 to test 554
vrfy = authenticated            ; none | authenticated | all
expn = authenticated
"""


def test_config_check(ternd_factory):
    t = ternd_factory(start=False)
    p = subprocess.run([str(t.binary), "-t", "-c", str(t.conf_path)], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 0, p.stdout + p.stderr


def test_config_check_contract_sample(ternd_factory):
    """The config exactly as the contract shows it, inline comments and empty deny included."""
    t = ternd_factory(start=False)
    t.conf_path.write_text(CONTRACT_CONFIG.format(
        data_dir=t.data_dir, user=t.run_user, smtp=t.smtp_port, submission=t.submission_port))
    t.chown()
    p = subprocess.run([str(t.binary), "-t", "-c", str(t.conf_path)], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 0, p.stdout + p.stderr


@pytest.mark.parametrize("breakage", ["no-postmaster", "postmaster-in-one-domain-only",
                                      "bad-size", "unknown-alias-member", "bad-listen"])
def test_config_check_bad_78(ternd_factory, breakage):
    t = ternd_factory(start=False)
    if breakage == "no-postmaster":
        t.aliases = ["team@example.org: alice, bob"]
    elif breakage == "postmaster-in-one-domain-only":
        t.aliases = ["postmaster@example.org: alice", "team@example.org: alice, bob"]
    elif breakage == "bad-size":
        t.sections["limits"]["message_size"] = "lots"
    elif breakage == "unknown-alias-member":
        t.aliases.append("ghosts@example.org: casper")
    elif breakage == "bad-listen":
        t.sections["listen"]["smtp"] = "127.0.0.1:notaport"
    t.write_files()
    p = subprocess.run([str(t.binary), "-t", "-c", str(t.conf_path)], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 78, f"exit {p.returncode}\n{p.stdout}{p.stderr}"


def test_refuses_to_start_without_postmaster(ternd_factory):
    t = ternd_factory(start=False, aliases=["team@example.org: alice, bob"])
    t.start(wait=False)
    try:
        rc = t.proc.wait(15)
    except subprocess.TimeoutExpired:
        pytest.fail("ternd started although postmaster resolves nowhere")
    assert rc != 0
    assert "postmaster" in t.log_text().lower(), t.log_tail()


@pytest.mark.skipif(os.geteuid() != 0, reason="the privilege drop happens only as root")
def test_runs_as_configured_user(server):
    pw = pwd.getpwnam(server.run_user)
    status = {}
    with open(f"/proc/{server.pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            status[k] = v.split()
    assert set(status["Uid"]) == {str(pw.pw_uid)}, status["Uid"]
    assert set(status["Gid"]) == {str(pw.pw_gid)}, status["Gid"]
    assert "0" not in status.get("Groups", []), status.get("Groups")
    with in_txn(server) as c:
        msgid, msg = make_message(subject="owner")
        c.data(msg)
        c.quit()
    d = assert_delivered_once(server, "alice@example.org", msgid, msg)
    assert d.path.stat().st_uid == pw.pw_uid


def test_storage_floor_452(ternd_factory):
    """Free space below min_free_space: MAIL is refused 452 4.3.1, so nothing can be accepted."""
    t = ternd_factory(config={"limits.min_free_space": "1000000G"})
    with t.smtp() as c:
        c.ehlo()
        c.expect("MAIL FROM:<a@client.test>", "452 4.3.1")
        c.expect("NOOP", "250")  # the session goes on; the client may retry later
        c.quit()
    assert t.all_delivered_files() == set()


def test_store_failure_451_leaves_nothing(ternd_factory):
    """One recipient's Maildir cannot take the message: 451 4.3.0, and no recipient keeps a copy
    (all or nothing), no tmp/ file is left behind, the session goes on."""
    t = ternd_factory()
    bob = t.maildir("bob@example.org")
    for sub in ("tmp", "cur"):
        (bob / sub).mkdir(parents=True, exist_ok=True)
    (bob / "new").write_text("a file where bob's new/ folder should be\n")
    t.chown()
    msgid, msg = make_message(frm="a@client.test", to="alice@example.org", subject="doomed")
    with t.smtp() as c:
        c.ehlo()
        c.expect("MAIL FROM:<a@client.test>", "250")
        c.expect("RCPT TO:<alice@example.org>", "250")
        c.expect("RCPT TO:<bob@example.org>", "250")
        r = c.cmd("DATA")
        if r.code == 354:  # the failure may show at DATA (opening) or at the end (linking)
            c.send_raw(dot_stuff(msg) + b".\r\n")
            r = c.reply()
        assert r.matches("451 4.3.0"), r
        c.expect("NOOP", "250")
        c.quit()
    assert [d for d in t.mailbox("alice@example.org") if d.body == msg] == []
    assert tmp_files(t.data_dir) == []
