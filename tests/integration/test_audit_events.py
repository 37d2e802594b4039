"""The audit log as a real ternd writes it (DATA_DIR/audit/audit.log), provoked by real clients
(smtplib, ssl, raw sockets) on loopback; record fields as doc/tern.1 lists them and
src/net/conn_audit.c writes them.

- every event with its fields: start, stop, reload (ok and failed), connect and disconnect on the
  three listeners (source port, exact byte counts, messages, duration), helo, starttls (with and
  without SNI), starttls_fail (garbage instead of a ClientHello, after STARTTLS and on smtps),
  auth (ok and fail, PLAIN and LOGIN), mail/rcpt/data accepted and refused (unknown_user, relay,
  message_size), message (queue id of the 250, Message-ID, size and SHA-256 of the stored bytes,
  files on disk, the queue entry of a relayed message), limit (bad_commands, junk_commands,
  connections, timeout, auth_throttle); one session id per SMTP session;
- the message record is in the file when the client gets its 250;
- no password and no AUTH blob ever reaches the log;
- `tern audit verify` on copies of a real log: edited, deleted, inserted, reordered, truncated,
  with the first key, a wrong key and a missing key file; verify and trace on real logs;
- hostile HELO and MAIL arguments are bounded, valid JSON on one line, shown safely;
- [audit] syslog = yes: each record also goes to syslog, to a /dev/log socket in a private mount
  namespace (root only).

Each test starts its own ternd (ternd_factory), so no test depends on another's records.
"""
from __future__ import annotations

import base64
import itertools
import json
import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import time
from pathlib import Path

import pytest

from audit_it import (SyslogSink, assert_no_crash, assert_verifies, audit_dir, bounded, events,
                      host_mounts, log_lines, one, put_in_namespace, raw_log, records,
                      session_of_port, session_records, sha256_hex, shown, tern_audit,
                      wait_record, wait_records)
from tern_it import (DEFAULT_ALIASES, HOSTNAME, TIMEOUT, Conn, client_tls_context, crypt_hash,
                     make_message, ternd_binary)

# Distinctive passwords: none of them can turn up in a log by chance.
PW = {
    "alice@example.org": "Alice-pw/0x5EC2E7+1",
    "bob@example.org": "b0b's sekrit: 42!",
    "carol@example.net": "carol_Pa55word_zq",
    "mallory@example.org": "Mallory#Real#Pw",
}
WRONG_PW = "Wr0ng-Guess-7Q"
USERS = [(addr, addr.split("@")[0].title(), "", crypt_hash(pw)) for addr, pw in PW.items()]
SENDER = "sender@client.test"

_ips = itertools.count(1)


def fresh_ip() -> str:
    """A loopback source address no other client of this module used: AUTH throttling and the
    per-IP connection limit count by address."""
    n = next(_ips)
    return f"127.0.{40 + n // 250}.{1 + n % 250}"


def b64(x) -> str:
    return base64.b64encode(x if isinstance(x, bytes) else x.encode()).decode()


def plain_ir(user, pw, authzid="") -> str:
    """The AUTH PLAIN credentials (RFC 4616) in base64."""
    return b64(authzid + "\0" + user + "\0" + pw)


def make(ternd_factory, config=None, **kw):
    """A ternd with a certificate, the users of PW, and AUTH allowed in clear from loopback."""
    cfg = {"auth.plaintext": "loopback"}
    cfg.update(config or {})
    return ternd_factory(users=USERS, aliases=DEFAULT_ALIASES, tls=True, config=cfg, **kw)


def smtp_client(port, ip=None, cls=smtplib.SMTP, **kw) -> smtplib.SMTP:
    return cls("127.0.0.1", port, source_address=(ip or fresh_ip(), 0), timeout=TIMEOUT, **kw)


def client_port(s) -> int:
    """The client's source port: of an smtplib client, a Conn or a socket."""
    sock = getattr(s, "sock", s)
    return sock.getsockname()[1]


def queued_id(reply: bytes | str) -> str:
    if isinstance(reply, bytes):
        reply = reply.decode()
    m = re.search(r"queued as (\S+)", reply)
    assert m, f"no 'queued as ID' in the 250 reply {reply!r}"
    return m.group(1)


def ternd_version() -> str:
    out = subprocess.run([str(ternd_binary()), "-V"], capture_output=True, text=True,
                         timeout=30).stdout
    m = re.match(r"ternd (\S+)", out)
    assert m, f"ternd -V said {out!r}"
    return m.group(1)


def session_shape(recs: list[dict], sid: str):
    """A session's records open with its connect and end with its disconnect, one of each."""
    ev = events(recs)
    assert ev[0] == "connect" and ev[-1] == "disconnect", f"session {sid}: {ev}"
    assert ev.count("connect") == 1 and ev.count("disconnect") == 1, f"session {sid}: {ev}"
    assert all(r["session"] == sid for r in recs)


class RawClient:
    """A plain SMTP client on a bare socket that counts every byte each way, to compare with
    the disconnect record's bytes_in and bytes_out."""

    def __init__(self, port, ip):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT,
                                             source_address=(ip, 0))
        self.sent = 0
        self.received = 0
        self.buf = b""

    def reply(self) -> bytes:
        while True:
            m = re.search(rb"(?m)^\d{3} [^\r\n]*\r\n", self.buf)
            if m:
                out, self.buf = self.buf[:m.end()], self.buf[m.end():]
                return out
            chunk = self.sock.recv(65536)
            assert chunk, f"connection closed waiting for a reply; have {self.buf!r}"
            self.received += len(chunk)
            self.buf += chunk

    def cmd(self, line: bytes) -> bytes:
        self.sock.sendall(line + b"\r\n")
        self.sent += len(line) + 2
        return self.reply()

    def read_to_eof(self):
        while True:
            chunk = self.sock.recv(65536)
            if not chunk:
                return
            self.received += len(chunk)

    def close(self):
        self.sock.close()


# ---------------------------------------------------------------------------------------------
# start, reload, stop

def test_start_reload_stop(ternd_factory):
    t = make(ternd_factory)
    conf0 = t.conf_path.read_bytes()
    first = wait_records(t, lambda r: r["event"] in ("create", "start"), 2)
    create, start = first[0], first[1]
    assert (create["seq"], create["event"]) == (1, "create")
    assert start["seq"] == 2 and start["event"] == "start"
    assert start["version"] == ternd_version()
    assert start["config"] == str(t.conf_path)
    assert start["config_sha256"] == sha256_hex(conf0)
    assert start["pid"] == t.pid

    # A good new configuration: ok, and the digest of the new file.
    t.sections["limits"]["recipients"] = "42"
    t.write_files()
    conf1 = t.conf_path.read_bytes()
    assert conf1 != conf0
    t.reload()
    rel = wait_record(t, lambda r: r["event"] == "reload", what="reload record")
    assert rel["ok"] is True, rel
    assert rel["config_sha256"] == sha256_hex(conf1), rel
    assert "error" not in rel, rel

    # A broken one: ok false, the error, the digest of the file it refused; ternd goes on.
    broken = conf1.replace(b"recipients = 42", b"recipients = lots")
    assert broken != conf1
    tmp = t.conf_path.with_name("tern.conf.tmp")
    tmp.write_bytes(broken)
    os.replace(tmp, t.conf_path)
    t.signal(signal.SIGHUP)
    rels = wait_records(t, lambda r: r["event"] == "reload", 2, what="two reload records")
    bad = rels[1]
    assert bad["ok"] is False, bad
    assert bad["config_sha256"] == sha256_hex(broken), bad
    assert isinstance(bad.get("error"), str) and bad["error"], bad
    assert str(t.conf_path) in bad["error"] and "recipients" in bad["error"], bad
    with smtp_client(t.smtp_port) as s:  # still serving, on the old configuration
        assert s.noop()[0] == 250

    assert t.stop() == 0
    recs = records(t)
    assert recs[-1]["event"] == "stop", recs[-1]
    assert recs[-1]["reason"] == "SIGTERM", recs[-1]
    assert [r["event"] for r in recs].count("stop") == 1
    t.write_files()  # the good configuration back: tern reads it to find the log
    assert_verifies(t)


def test_restart_new_pid_new_epoch(ternd_factory):
    """A second start of the same data dir: the key evolves (an epoch record, reason start),
    then a start record with the new pid; the log stays one chain."""
    t = make(ternd_factory)
    pid1 = t.pid
    assert t.stop() == 0
    t.start()
    assert t.pid != pid1
    start2 = wait_records(t, lambda r: r["event"] == "start", 2)[1]
    assert start2["pid"] == t.pid
    assert start2["epoch"] == 1
    recs = records(t)
    i = recs.index(start2)
    assert recs[i - 1]["event"] == "epoch" and recs[i - 1]["reason"] == "start", recs[i - 1]
    assert recs[i - 2]["event"] == "stop", recs[i - 2]
    assert t.stop() == 0
    assert_verifies(t)


# ---------------------------------------------------------------------------------------------
# connect, helo, disconnect

def test_connect_helo_disconnect_plain(ternd_factory):
    t = make(ternd_factory)
    ip = fresh_ip()
    t0 = time.monotonic()
    c = RawClient(t.smtp_port, ip)
    port = client_port(c.sock)
    assert c.reply().startswith(b"220 ")
    assert c.cmd(b"EHLO client.test").startswith(b"250-")
    assert c.cmd(b"HELO other.example").startswith(b"250 ")
    assert c.cmd(b"NOOP").startswith(b"250 ")
    assert c.cmd(b"QUIT").startswith(b"221 ")
    c.read_to_eof()
    c.close()
    wall_ms = (time.monotonic() - t0) * 1000
    sid = session_of_port(t, port)
    recs = session_records(t, sid)
    session_shape(recs, sid)
    assert events(recs) == ["connect", "helo", "helo", "disconnect"], recs
    con = recs[0]
    assert (con["ip"], con["port"], con["listener"]) == (ip, port, "smtp"), con
    assert "refused" not in con
    h1, h2 = recs[1], recs[2]
    assert (h1["verb"], h1["name"], h1["code"]) == ("EHLO", "client.test", 250), h1
    assert (h2["verb"], h2["name"], h2["code"]) == ("HELO", "other.example", 250), h2
    d = recs[-1]
    assert d["ip"] == ip
    assert d["bytes_in"] == c.sent, (d, c.sent)
    assert d["bytes_out"] == c.received, (d, c.received)
    assert d["messages"] == 0
    assert 0 <= d["duration_ms"] <= wall_ms + 5, (d, wall_ms)
    t.stop()
    assert_verifies(t)


def test_connect_disconnect_submission_and_smtps(ternd_factory):
    t = make(ternd_factory, smtps=True)
    msgs = [make_message(frm=f, to="carol@example.net")[1]
            for f in ("alice@example.org", "bob@example.org")]
    ip = fresh_ip()
    with smtp_client(t.submission_port, ip) as s:
        port_sub = client_port(s)
        s.ehlo("sub.client.test")
        s.login("alice@example.org", PW["alice@example.org"])
        for _ in range(2):
            assert s.sendmail("alice@example.org", ["bob@example.org"], msgs[0]) == {}
        # refused: counts as no message
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            s.sendmail("alice@example.org", ["nobody@example.org"], msgs[0])
    ctx = client_tls_context(t.cert_path)
    with smtp_client(t.smtps_port, ip, cls=smtplib.SMTP_SSL, context=ctx) as s:
        port_smtps = client_port(s)
        s.ehlo("tls.client.test")
        s.login("bob@example.org", PW["bob@example.org"])
        assert s.sendmail("bob@example.org", ["carol@example.net"], msgs[1]) == {}

    sub = session_records(t, session_of_port(t, port_sub))
    session_shape(sub, sub[0]["session"])
    assert (sub[0]["ip"], sub[0]["port"], sub[0]["listener"]) == (ip, port_sub, "submission")
    d = sub[-1]
    assert d["messages"] == 2, d
    assert d["bytes_in"] > 2 * len(msgs[0]) and d["bytes_out"] > 0, d
    assert d["duration_ms"] >= 0
    assert len([r for r in sub if r["event"] == "message"]) == 2

    tls = session_records(t, session_of_port(t, port_smtps))
    session_shape(tls, tls[0]["session"])
    assert (tls[0]["ip"], tls[0]["port"], tls[0]["listener"]) == (ip, port_smtps, "smtps")
    assert events(tls)[1] == "starttls", tls  # implicit TLS: the handshake comes first
    assert tls[-1]["messages"] == 1 and tls[-1]["bytes_in"] > len(msgs[1]), tls[-1]
    assert tls[-1]["bytes_out"] > 0
    assert sub[0]["session"] != tls[0]["session"]
    t.stop()
    assert_verifies(t)


# ---------------------------------------------------------------------------------------------
# TLS

def test_starttls_records(ternd_factory):
    t = make(ternd_factory, smtps=True)
    ctx = client_tls_context(t.cert_path)
    seen = []
    # STARTTLS with SNI (the client names the server), without SNI, and implicit TLS with SNI
    for how in ("sni", "no-sni", "smtps"):
        if how == "smtps":
            c = Conn(t.smtps_port, bind=fresh_ip(), tls=ctx, server_hostname=HOSTNAME)
        else:
            c = Conn(t.smtp_port, bind=fresh_ip())
            c.ehlo()
            if how == "sni":
                c.starttls(ctx, server_hostname=HOSTNAME)
            else:  # server_hostname None: Python sends no SNI (and cannot check the name)
                c.starttls(client_tls_context(None), server_hostname=None)
        c.ehlo("after.tls.test")
        version, cipher = c.sock.version(), c.sock.cipher()[0]
        port = client_port(c)
        c.quit()
        recs = session_records(t, session_of_port(t, port))
        st = one(recs, "starttls")
        assert st["protocol"] == version, (st, version)
        assert st["cipher"] == cipher, (st, cipher)
        assert "sni" in st, st
        assert st["sni"] == (None if how == "no-sni" else HOSTNAME), (how, st)
        ev = events(recs)
        want = (["connect", "starttls", "helo", "disconnect"] if how == "smtps"
                else ["connect", "helo", "starttls", "helo", "disconnect"])
        assert ev == want, (how, ev)
        assert recs[-2]["name"] == "after.tls.test"
        seen.append(version)
    assert all(v.startswith("TLSv1.") for v in seen), seen
    t.stop()
    assert_verifies(t)


def test_starttls_fail_records(ternd_factory):
    t = make(ternd_factory, smtps=True)
    # After the 220 to STARTTLS: plain SMTP instead of a ClientHello.
    ip1 = fresh_ip()
    c = Conn(t.smtp_port, bind=ip1)
    c.ehlo()
    c.expect("STARTTLS", "220 2.0.0")
    port1 = client_port(c)
    c.sock.sendall(b"EHLO not.tls.test\r\nMAIL FROM:<x@y.test>\r\n")
    # smtps: garbage before any handshake
    ip2 = fresh_ip()
    raw = socket.create_connection(("127.0.0.1", t.smtps_port), timeout=TIMEOUT,
                                   source_address=(ip2, 0))
    port2 = client_port(raw)
    raw.sendall(b"\x00\x01GET / HTTP/1.0\r\n\r\n" + os.urandom(64))
    for sock, port, ip, listener in ((c.sock, port1, ip1, "smtp"), (raw, port2, ip2, "smtps")):
        recs = session_records(t, session_of_port(t, port))
        session_shape(recs, recs[0]["session"])
        assert recs[0]["listener"] == listener
        f = one(recs, "starttls_fail")
        assert f["ip"] == ip, f
        assert isinstance(f["error"], str) and f["error"].strip(), f
        assert "starttls" not in events(recs), recs
        assert events(recs)[-2:] == ["starttls_fail", "disconnect"], recs
        sock.settimeout(TIMEOUT)
        try:  # and the server hung up
            while sock.recv(4096):
                pass
        except (ConnectionResetError, BrokenPipeError):
            pass
        sock.close()
    with smtp_client(t.smtp_port) as s:
        assert s.noop()[0] == 250
    t.stop()
    assert_verifies(t)


# ---------------------------------------------------------------------------------------------
# AUTH

def test_auth_records(ternd_factory):
    t = make(ternd_factory)
    cases = [  # user, password, mechanism, expected code
        ("alice@example.org", PW["alice@example.org"], "PLAIN", 235),
        ("bob@example.org", PW["bob@example.org"], "LOGIN", 235),
        ("mallory@example.org", WRONG_PW, "PLAIN", 535),
        ("carol@example.net", WRONG_PW, "LOGIN", 535),
    ]
    for user, pw, mech, code in cases:
        with smtp_client(t.submission_port) as s:
            port = client_port(s)
            s.ehlo("auth.client.test")
            s.user, s.password = user, pw
            auth = {"PLAIN": s.auth_plain, "LOGIN": s.auth_login}[mech]
            if code == 235:
                assert s.auth(mech, auth)[0] == 235
            else:
                with pytest.raises(smtplib.SMTPAuthenticationError) as e:
                    s.auth(mech, auth)
                assert e.value.smtp_code == 535
        recs = session_records(t, session_of_port(t, port))
        a = one(recs, "auth")
        assert a["user"] == user, a
        assert a["mech"] == mech, a
        assert a["code"] == code, a
        if code == 235:
            assert (a["result"], a["enh"], a["rule"]) == ("ok", "2.7.0", "ok"), a
        else:
            assert (a["result"], a["enh"], a["rule"]) == ("fail", "5.7.8", "credentials"), a
    t.stop()
    assert_verifies(t)


def test_no_secret_in_the_log(ternd_factory):
    """Passwords right and wrong, by PLAIN (initial response and after 334) and LOGIN (with and
    without initial response) and smtplib's login: neither a password nor any base64 blob the
    client sent during AUTH appears anywhere in the log's bytes."""
    t = make(ternd_factory)
    blobs: list[str] = []

    def conn():
        c = Conn(t.submission_port, bind=fresh_ip())
        c.ehlo()
        return c

    def send_blob(c, line, spec, prefix=""):
        blobs.append(line)
        return c.expect(prefix + line, spec)

    alice, bob, carol, mallory = PW
    with conn() as c:  # PLAIN with an initial response
        send_blob(c, plain_ir(alice, PW[alice]), "235 2.7.0", "AUTH PLAIN ")
    with conn() as c:  # PLAIN, the credentials after an empty 334
        c.expect("AUTH PLAIN", "334")
        send_blob(c, plain_ir(bob, PW[bob], authzid=bob), "235 2.7.0")
    with conn() as c:  # LOGIN, step by step
        c.expect("AUTH LOGIN", "334")
        send_blob(c, b64(carol), "334")
        send_blob(c, b64(PW[carol]), "235 2.7.0")
    with conn() as c:  # LOGIN with the user as initial response, a wrong password
        send_blob(c, b64(mallory), "334", "AUTH LOGIN ")
        send_blob(c, b64(WRONG_PW), "535 5.7.8")
    with conn() as c:  # PLAIN, a wrong password
        send_blob(c, plain_ir(alice, WRONG_PW), "535 5.7.8", "AUTH PLAIN ")
    with smtp_client(t.submission_port) as s:  # smtplib picks its own mechanism
        port = client_port(s)
        s.login(mallory, PW[mallory])
        mech = one(session_records(t, session_of_port(t, port), until="auth"), "auth")["mech"]
        # what smtplib sent (it base64-encodes what auth_plain / auth_login return)
        blobs += [plain_ir(mallory, PW[mallory])] if mech == "PLAIN" else [b64(mallory),
                                                                             b64(PW[mallory])]
    auths = wait_records(t, lambda r: r["event"] == "auth", 6, what="six auth records")
    assert sorted(a["result"] for a in auths) == ["fail", "fail", "ok", "ok", "ok", "ok"], auths
    t.stop()

    data = raw_log(t)
    assert data.count(b"\n") == len(records(t)) >= 8
    needles = {}
    for pw in list(PW.values()) + [WRONG_PW]:
        needles[f"password {pw!r}"] = pw.encode()
        needles[f"password {pw!r} as JSON"] = json.dumps(pw)[1:-1].encode()
        needles[f"password {pw!r} in base64"] = b64(pw).encode()
    for b in blobs:
        assert len(b) >= 8
        needles[f"AUTH blob {b!r}"] = b.encode()
    found = [name for name, n in needles.items() if n in data]
    assert not found, f"secrets in the audit log: {found}"
    assert_verifies(t)


# ---------------------------------------------------------------------------------------------
# MAIL, RCPT, DATA and message

def test_mail_rcpt_data_records(ternd_factory):
    t = make(ternd_factory, config={"limits.message_size": "4K"})
    c = Conn(t.smtp_port, bind=fresh_ip())
    port = client_port(c)
    c.ehlo()
    replies = {}
    replies["mail"] = c.expect(f"MAIL FROM:<{SENDER}>", "250 2.1.0")
    replies["unknown"] = c.expect("RCPT TO:<nobody@example.org>", "550 5.1.1")
    replies["relay"] = c.expect("RCPT TO:<someone@far.test>", "550 5.7.1")
    replies["rcpt"] = c.expect("RCPT TO:<alice@example.org>", "250 2.1.5")
    c.expect("DATA", "354")
    c.send_raw(b"Subject: big\r\n\r\n" + (b"y" * 76 + b"\r\n") * 70 + b".\r\n")
    replies["big"] = c.expect(None, "552 5.3.4")
    c.expect("RSET", "250")
    replies["declared"] = c.expect(f"MAIL FROM:<{SENDER}> SIZE=100000", "552 5.3.4")
    c.expect(f"MAIL FROM:<{SENDER}>", "250 2.1.0")
    c.expect("RCPT TO:<bob@example.org>", "250 2.1.5")
    ok = c.data(make_message(frm=SENDER, to="bob@example.org")[1])
    c.quit()
    recs = session_records(t, session_of_port(t, port))
    session_shape(recs, recs[0]["session"])
    mails = [r for r in recs if r["event"] == "mail"]
    rcpts = [r for r in recs if r["event"] == "rcpt"]
    datas = [r for r in recs if r["event"] == "data"]
    assert len(mails) == 3 and len(rcpts) == 4 and len(datas) == 2, recs

    m = mails[0]
    assert (m["verb"], m["from"], m["code"], m["enh"], m["rule"]) == \
        ("MAIL", SENDER, 250, "2.1.0", "ok"), m
    assert "reply" not in m  # only refusals carry the reply text
    u, rl, r_ok = rcpts[0], rcpts[1], rcpts[2]
    assert (u["verb"], u["to"], u["code"], u["enh"], u["rule"]) == \
        ("RCPT", "nobody@example.org", 550, "5.1.1", "unknown_user"), u
    assert u["reply"] == replies["unknown"].text, u
    assert (rl["to"], rl["code"], rl["enh"], rl["rule"]) == \
        ("someone@far.test", 550, "5.7.1", "relay"), rl
    assert rl["reply"] == replies["relay"].text, rl
    assert (r_ok["to"], r_ok["code"], r_ok["enh"], r_ok["rule"]) == \
        ("alice@example.org", 250, "2.1.5", "ok"), r_ok
    big = datas[0]
    assert (big["verb"], big["code"], big["enh"], big["rule"]) == \
        ("DATA", 552, "5.3.4", "message_size"), big
    assert big["reply"] == replies["big"].text, big
    d = mails[1]
    assert (d["from"], d["code"], d["enh"], d["rule"]) == \
        (SENDER, 552, "5.3.4", "message_size"), d
    assert d["reply"] == replies["declared"].text
    good = datas[1]
    assert (good["code"], good["enh"], good["rule"]) == (250, "2.0.0", "ok"), good
    assert good["id"] == queued_id(ok.text), (good, ok)
    assert recs[-1]["messages"] == 1
    # only the accepted message has a message record
    msgs = [r for r in recs if r["event"] == "message"]
    assert [r["id"] for r in msgs] == [good["id"]]

    # Before EHLO's ENHANCEDSTATUSCODES (plain HELO) the replies have none, nor do the records.
    c = Conn(t.smtp_port, bind=fresh_ip())
    port = client_port(c)
    c.helo()
    c.expect(f"MAIL FROM:<{SENDER}>", "250")
    c.expect("RCPT TO:<nobody@example.org>", "550")
    c.quit()
    recs = session_records(t, session_of_port(t, port))
    assert one(recs, "mail")["enh"] == "" and one(recs, "rcpt")["enh"] == "", recs
    assert one(recs, "rcpt")["rule"] == "unknown_user"
    t.stop()
    assert_verifies(t)


def check_stored(t, rec: dict):
    """Every file of a message record exists, and its bytes have the record's size and
    SHA-256; the names are DATA_DIR-relative mail/DOMAIN/LOCAL/new/ID,S=SIZE, one a mailbox."""
    assert len(rec["files"]) == len(rec["mailboxes"])
    for box, f in zip(rec["mailboxes"], rec["files"]):
        local, domain = box.rsplit("@", 1)
        assert f == f"mail/{domain}/{local}/new/{rec['id']},S={rec['size']}", (box, f)
        p = t.data_dir / f
        assert p.is_file(), f"{f} of the message record is not on disk"
        data = p.read_bytes()
        assert len(data) == rec["size"], (f, len(data), rec["size"])
        assert sha256_hex(data) == rec["sha256"], f
    if rec["queued"] is not None:
        assert re.fullmatch(r"spool/queue/[A-Za-z0-9._-]+\.msg", rec["queued"]), rec["queued"]
        q = t.data_dir / rec["queued"]
        assert q.is_file(), f"{rec['queued']} of the message record is not on disk"
        data = q.read_bytes()
        assert len(data) == rec["size"] and sha256_hex(data) == rec["sha256"], rec["queued"]


def test_message_record(ternd_factory):
    t = make(ternd_factory)
    msgid, msg = make_message(frm=SENDER, to="team@example.org", subject="audit me")
    with smtp_client(t.smtp_port) as s:
        port = client_port(s)
        s.ehlo("client.test")
        s.mail(SENDER)
        for r in ("alice@example.org", "team@example.org", "carol@example.net"):
            assert s.rcpt(r)[0] == 250
        code, text = s.data(msg)
        assert code == 250
    qid = queued_id(text)
    recs = session_records(t, session_of_port(t, port))
    m = one(recs, "message")
    assert m["session"] == recs[0]["session"]
    assert m["id"] == qid
    assert m["message_id"] == msgid
    assert m["from"] == SENDER and m["auth_user"] == ""
    assert m["rcpts"] == ["alice@example.org", "team@example.org", "carol@example.net"], m
    # team@ is alice and bob: each mailbox once
    assert sorted(m["mailboxes"]) == ["alice@example.org", "bob@example.org",
                                      "carol@example.net"], m
    assert m["queued"] is None
    check_stored(t, m)
    for box in m["mailboxes"]:  # the client's bytes, after ternd's trace fields
        got = [d for d in t.mailbox(box) if d.path.name.startswith(qid)]
        assert len(got) == 1 and got[0].body == msg and got[0].problems() == []
    data = one(recs, "data")
    assert data["id"] == qid and data["seq"] > m["seq"]

    # A message without a Message-ID field: null.
    with smtp_client(t.smtp_port) as s:
        port = client_port(s)
        s.ehlo("client.test")
        s.mail(SENDER)
        s.rcpt("bob@example.org")
        code, text = s.data(b"Subject: no id\r\n\r\nbody\r\n")
        assert code == 250
    m2 = one(session_records(t, session_of_port(t, port)), "message")
    assert m2["id"] == queued_id(text) and m2["message_id"] is None
    check_stored(t, m2)
    t.stop()
    assert_verifies(t)


def test_message_record_relayed(ternd_factory):
    """An authenticated client relays through submission: the message record names its queue
    entry, spool/queue/ID.msg, which holds the same bytes; with a local recipient too, also
    the Maildir file."""
    t = make(ternd_factory)
    sent = []
    with smtp_client(t.submission_port) as s:
        port = client_port(s)
        s.ehlo("client.test")
        s.login("alice@example.org", PW["alice@example.org"])
        for rcpts in (["friend@far.test", "bob@example.org"], ["friend@far.test"]):
            msgid, msg = make_message(frm="alice@example.org", to=rcpts[0])
            s.mail("alice@example.org")
            for r in rcpts:
                assert s.rcpt(r)[0] == 250
            code, text = s.data(msg)
            assert code == 250
            sent.append((queued_id(text), msgid, rcpts))
    recs = session_records(t, session_of_port(t, port))
    msgs = [r for r in recs if r["event"] == "message"]
    assert len(msgs) == 2
    for m, (qid, msgid, rcpts) in zip(msgs, sent):
        assert m["id"] == qid and m["message_id"] == msgid
        assert m["auth_user"] == "alice@example.org" and m["from"] == "alice@example.org"
        assert m["rcpts"] == rcpts
        assert m["queued"] is not None, m
        check_stored(t, m)
    assert msgs[0]["mailboxes"] == ["bob@example.org"]
    assert msgs[1]["mailboxes"] == [] and msgs[1]["files"] == []
    relay = [r for r in recs if r["event"] == "rcpt" and r["to"] == "friend@far.test"]
    assert [r["rule"] for r in relay] == ["relay_authenticated"] * 2, relay
    t.stop()
    assert_verifies(t)


def test_message_record_written_before_the_250(ternd_factory):
    """The instant the client has its 250, the message record is in audit.log."""
    t = make(ternd_factory)
    log = audit_dir(t) / "audit.log"
    with smtp_client(t.smtp_port) as plain, smtp_client(t.submission_port) as sub:
        plain.ehlo("client.test")
        sub.ehlo("client.test")
        sub.login("bob@example.org", PW["bob@example.org"])
        for i in range(6):
            s, frm, to = ((plain, SENDER, "alice@example.org") if i % 2 == 0
                          else (sub, "bob@example.org", "friend@far.test"))
            _, msg = make_message(frm=frm, to=to)
            s.mail(frm)
            s.rcpt(to)
            code, text = s.data(msg)
            data = log.read_bytes()  # first thing after the 250
            assert code == 250
            qid = queued_id(text)
            lines = [json.loads(l) for l in data.split(b"\n")[:-1]]
            found = [r for r in lines if r["event"] == "message" and r["id"] == qid]
            assert len(found) == 1, f"message {qid}: 250 received, no record in audit.log yet"
    t.stop()
    assert_verifies(t)


# ---------------------------------------------------------------------------------------------
# limits

def limit_of(recs, what) -> dict:
    lim = one(recs, "limit", what=what)
    assert isinstance(lim["detail"], str) and lim["detail"], lim
    return lim


def test_limit_bad_commands(ternd_factory):
    t = make(ternd_factory, config={"limits.bad_commands": "3"})
    ip = fresh_ip()
    c = Conn(t.smtp_port, bind=ip)
    port = client_port(c)
    c.ehlo()
    c.expect("BOGUS one", "500")
    c.expect("BOGUS two", "500")
    c.send("BOGUS three")
    assert c.reply().code == 500 and c.reply().code == 421
    c.expect_eof()
    recs = session_records(t, session_of_port(t, port))
    lim = limit_of(recs, "bad_commands")
    assert lim["ip"] == ip
    assert events(recs)[-2:] == ["limit", "disconnect"], recs
    t.stop()
    assert_verifies(t)


def test_limit_junk_commands(ternd_factory):
    t = make(ternd_factory, config={"limits.junk_commands": "2"})
    ip = fresh_ip()
    c = Conn(t.smtp_port, bind=ip)
    port = client_port(c)
    c.ehlo()
    c.expect("NOOP", "250")
    c.expect("NOOP", "250")
    c.expect("NOOP", "421")
    c.expect_eof()
    recs = session_records(t, session_of_port(t, port))
    assert limit_of(recs, "junk_commands")["ip"] == ip
    t.stop()
    assert_verifies(t)


def test_limit_connections(ternd_factory):
    t = make(ternd_factory, config={"limits.connections_per_ip": "1"})
    ip = fresh_ip()
    first = Conn(t.smtp_port, bind=ip)  # greeted 220: holds the one connection of ip
    second = socket.create_connection(("127.0.0.1", t.smtp_port), timeout=TIMEOUT,
                                      source_address=(ip, 0))
    port2 = client_port(second)
    f = second.makefile("rb")
    assert f.readline().startswith(b"421 "), "the second connection was not refused"
    assert f.readline() == b""
    second.close()
    recs = session_records(t, session_of_port(t, port2))
    session_shape(recs, recs[0]["session"])
    assert events(recs) == ["connect", "limit", "disconnect"], recs
    assert recs[0]["listener"] == "smtp" and recs[0]["port"] == port2
    assert limit_of(recs, "connections")["ip"] == ip
    # the first connection is untouched, and has a session of its own
    first.ehlo()
    port1 = client_port(first)
    first.quit()
    recs1 = session_records(t, session_of_port(t, port1))
    assert "limit" not in events(recs1)
    assert recs1[0]["session"] != recs[0]["session"]
    t.stop()
    assert_verifies(t)


def test_limit_timeout(ternd_factory):
    t = make(ternd_factory, config={"limits.command_timeout": "1"})
    ip = fresh_ip()
    c = Conn(t.smtp_port, bind=ip)
    port = client_port(c)
    c.ehlo()
    t0 = time.monotonic()
    r = c.reply(timeout=10)  # say nothing: 421 after the timeout
    waited = time.monotonic() - t0
    assert r.code == 421, r
    assert 0.9 <= waited < 5, waited
    c.expect_eof()
    recs = session_records(t, session_of_port(t, port))
    lim = limit_of(recs, "timeout")
    assert lim["ip"] == ip and "command_timeout" in lim["detail"], lim
    assert recs[-1]["duration_ms"] >= 900, recs[-1]
    t.stop()
    assert_verifies(t)


def test_limit_auth_throttle(ternd_factory):
    """[auth] max_failures = 2: two failures (each reply held back a little longer), then AUTH
    is refused without trying, even with the right password."""
    t = make(ternd_factory, config={"auth.max_failures": "2"})
    ip = fresh_ip()
    c = Conn(t.submission_port, bind=ip)
    port = client_port(c)
    c.ehlo()
    user = "mallory@example.org"
    c.expect(f"AUTH PLAIN {plain_ir(user, WRONG_PW)}", "535 5.7.8")
    c.expect(f"AUTH PLAIN {plain_ir(user, WRONG_PW + 'x')}", "535 5.7.8")
    c.expect(f"AUTH PLAIN {plain_ir(user, PW[user])}", "454 4.7.0")
    c.quit()
    recs = session_records(t, session_of_port(t, port))
    lim = limit_of(recs, "auth_throttle")
    assert lim["ip"] == ip
    auths = [r for r in recs if r["event"] == "auth"]
    assert [(a["result"], a["code"]) for a in auths] == \
        [("fail", 535), ("fail", 535), ("fail", 454)], auths
    assert auths[2]["rule"] == "temporary" and auths[2]["enh"] == "4.7.0"
    assert auths[1]["seq"] < lim["seq"] < auths[2]["seq"]
    t.stop()
    assert_verifies(t)


# ---------------------------------------------------------------------------------------------
# sessions, verify and trace on one log

def test_sessions_verify_and_trace(ternd_factory):
    """Overlapping sessions on all listeners: each has its own session id, all its records
    carry it, from connect to disconnect; then verify passes (current key and first key) and
    trace tells a message's story."""
    t = make(ternd_factory, smtps=True)
    ctx = client_tls_context(t.cert_path)
    conns = [Conn(t.smtp_port, bind=fresh_ip()), Conn(t.submission_port, bind=fresh_ip()),
             Conn(t.smtps_port, bind=fresh_ip(), tls=ctx), Conn(t.smtp_port, bind=fresh_ip())]
    ports = [client_port(c) for c in conns]
    for c in conns:  # interleaved: every session is open while the others run
        c.ehlo()
    senders = [SENDER, "alice@example.org", "bob@example.org", SENDER]
    for i in (1, 2):  # submission and smtps: AUTH first
        conns[i].expect(f"AUTH PLAIN {plain_ir(senders[i], PW[senders[i]])}", "235")
    sent = {}
    for i, c in enumerate(conns):
        c.expect(f"MAIL FROM:<{senders[i]}>", "250")
    for i, c in enumerate(conns):
        c.expect("RCPT TO:<carol@example.net>", "250")
    for i, c in enumerate(conns):
        msgid, msg = make_message(frm=senders[i], to="carol@example.net")
        sent[i] = (msgid, queued_id(c.data(msg).text))
    for c in conns:
        c.quit()
    with smtp_client(t.smtp_port) as s:  # and one that sends nothing
        ports.append(client_port(s))
        s.ehlo("idle.test")
    sids = [session_of_port(t, p) for p in ports]
    for sid in sids:
        session_records(t, sid)
    t.stop()

    recs = records(t)
    connects = [r for r in recs if r["event"] == "connect"]
    assert len({r["session"] for r in connects}) == len(connects), "a session id used twice"
    assert len(set(sids)) == len(sids)
    for sid in {r["session"] for r in connects}:
        session_shape([r for r in recs if r.get("session") == sid], sid)
    # they really overlapped: every session opened before the first one closed
    first_close = min(r["seq"] for r in recs
                      if r["event"] == "disconnect" and r["session"] in sids[:4])
    assert all(one(recs, "connect", session=sid)["seq"] < first_close for sid in sids[:4])
    # records of no session: the daemon's own
    assert {r["event"] for r in recs if "session" not in r} <= {"create", "start", "stop",
                                                                "epoch", "reload"}

    assert_verifies(t)
    key = t.root / "first-key-offline"
    shutil.copy(audit_dir(t) / "first-key", key)
    out = assert_verifies(t, "--key", key)
    assert "proven: every record's mac checked" in out, out

    for i, (msgid, qid) in sent.items():
        for ask in (msgid, msgid.strip("<>"), qid):
            p = tern_audit("trace", ask, conf=t.conf_path)
            assert p.returncode == 0, p.stderr
            out = p.stdout.decode()
            lines = out.splitlines()
            assert lines[0].startswith(f"message id={qid} message_id={msgid}"), lines[0]
            assert f", session {sids[i]}" in lines[0], lines[0]
            rows = [l for l in lines[1:] if not l.startswith(" ")]
            assert [r.split()[2] for r in rows] == [sids[i]] * len(rows), out
            evs = [r.split()[1] for r in rows]
            assert evs[0] == "connect" and evs[-1] == "disconnect" and "message" in evs, out
            msgrow = rows[evs.index("message")]
            assert qid in msgrow and msgid in msgrow, msgrow
            m = one(recs, "message", id=qid)
            assert f"sha256={m['sha256']}" in out, out
            assert m["files"], m  # carol's Maildir file: the loop below checks something
            for f in m["files"]:
                assert f in out, out
            for other in sids:
                if other != sids[i]:
                    assert other not in out
    p = tern_audit("trace", "<not-sent@anywhere.test>", conf=t.conf_path)
    assert p.returncode == 1 and p.stdout == b""


# ---------------------------------------------------------------------------------------------
# tampering with copies of a real log

@pytest.fixture(scope="module")
def real_log(module_ternd_factory, tmp_path_factory):
    """A log written by real ternd runs: two runs (so two epochs), several sessions and
    messages, a failed AUTH, then stopped. Returns (its audit dir, a copy of the first key kept
    off the data dir)."""
    t = module_ternd_factory(users=USERS, aliases=DEFAULT_ALIASES, tls=True,
                             config={"auth.plaintext": "loopback"}, name="tamper")
    for run in range(2):
        if run:
            t.start()
        for i in range(3):
            with smtp_client(t.smtp_port if i != 1 else t.submission_port) as s:
                s.ehlo(f"run{run}.client{i}.test")
                if i == 1:
                    s.login("bob@example.org", PW["bob@example.org"])
                frm = SENDER if i != 1 else "bob@example.org"
                s.sendmail(frm, ["alice@example.org"], make_message(frm=frm)[1])
        with smtp_client(t.submission_port) as s:
            s.ehlo("bad.client.test")
            with pytest.raises(smtplib.SMTPAuthenticationError):
                s.login("mallory@example.org", WRONG_PW)
        assert t.stop() == 0
    keep = tmp_path_factory.mktemp("audit-real")
    shutil.copytree(audit_dir(t), keep / "audit")
    shutil.copy(audit_dir(t) / "first-key", keep / "first-key")
    lines = (keep / "audit" / "audit.log").read_bytes().split(b"\n")[:-1]
    recs = [json.loads(l) for l in lines]
    assert [r["epoch"] for r in recs][-1] == 1 and recs[-1]["event"] == "stop"
    assert sum(r["event"] == "message" for r in recs) == 6
    return keep / "audit", keep / "first-key"


def copy_log(real_log, tmp_path) -> tuple[Path, Path, list[bytes]]:
    """A copy of the real log's folder (audit.log, key, head) and its lines."""
    src, first_key = real_log
    dst = tmp_path / "copy" / "audit"
    shutil.copytree(src, dst)
    (dst / "first-key").unlink()  # kept off the machine, as the admin should
    log = dst / "audit.log"
    return dst, log, log.read_bytes().split(b"\n")[:-1]


def write_lines(log: Path, lines: list[bytes]):
    log.write_bytes(b"".join(l + b"\n" for l in lines))


def verify_copy(log: Path, first_key: Path, *extra):
    p = tern_audit("verify", "--key", first_key, *extra, log)
    assert_no_crash(p, "tern audit verify")
    return p


def test_verify_intact_copy(real_log, tmp_path):
    _, first_key = real_log
    adir, log, lines = copy_log(real_log, tmp_path)
    p = verify_copy(log, first_key)
    out = p.stdout.decode()
    assert p.returncode == 0, out + p.stderr.decode()
    assert out.startswith(f"intact: {len(lines)} records in 1 file\n"), out
    assert "proven: every record's mac checked" in out
    assert f"end: the log reaches the record {adir / 'head'} names" in out, out
    # the current key, beside the copy: intact, macs of the last epoch only
    p = tern_audit("verify", log)
    assert p.returncode == 0, p.stdout + p.stderr
    assert b"key: the current key " + str(adir / "key").encode() in p.stdout


def _edit(lines):
    # the ip of a connect record of the first run (epoch 0): only the first key's macs reach it
    k = next(i for i, l in enumerate(lines) if b'"event":"connect"' in l)
    assert b'"ip":"127.0.' in lines[k]
    lines[k] = re.sub(rb'"ip":"127\.0\.\d+\.\d+"', b'"ip":"10.9.8.7"', lines[k])
    return k, "edited"


def _delete(lines):
    k = len(lines) // 2
    del lines[k]
    return k, "deleted"


def _insert(lines):
    k = len(lines) // 2
    lines.insert(k, lines[k - 3])  # a copy of an earlier record
    return k, "inserted"


def _swap(lines):
    k = len(lines) // 3
    lines[k], lines[k + 1] = lines[k + 1], lines[k]
    return k, "reordered"


def _truncate(lines):
    del lines[-3:]
    return len(lines), "truncated"


@pytest.mark.parametrize("tamper", [_edit, _delete, _insert, _swap, _truncate],
                         ids=["edit", "delete", "insert", "swap", "truncate"])
def test_verify_finds_tampering(real_log, tmp_path, tamper):
    _, first_key = real_log
    adir, log, lines = copy_log(real_log, tmp_path)
    k, word = tamper(lines)  # k: 0-based index of the first line that no longer fits
    write_lines(log, lines)
    want = f"{log}:{k + 1}: {word}: "
    p = verify_copy(log, first_key)
    out = p.stdout.decode()
    assert p.returncode == 1, out + p.stderr.decode()
    assert out.startswith(want), f"expected {want!r}...:\n{out}"
    assert "what to do:" in out

    # the same through a configuration whose data_dir holds the copy
    conf = tmp_path / "copy" / "tern.conf"
    conf.write_text(f"[server]\nhostname = {HOSTNAME}\ndata_dir = {adir.parent}\n"
                    f"domains = example.org\n[listen]\nsmtp = 127.0.0.1:2525\n")
    (adir.parent / "users").write_text(f"postmaster@example.org:{USERS[0][3]}:::P:::\n")
    (adir.parent / "aliases").write_text("")
    p = tern_audit("verify", "--key", first_key, conf=conf)
    assert_no_crash(p, "tern audit verify -c")
    assert p.returncode == 1, p.stdout + p.stderr
    assert p.stdout.decode().startswith(want), p.stdout.decode()


def test_verify_edit_in_current_epoch_with_current_key(real_log, tmp_path):
    """Without --key, the current key (audit/key beside the copy) proves the records of its
    epoch: an edit there is found too."""
    adir, log, lines = copy_log(real_log, tmp_path)
    k = max(i for i, l in enumerate(lines) if b'"name":"run1.' in l)
    assert json.loads(lines[k])["epoch"] == 1
    lines[k] = lines[k].replace(b'"name":"run1.', b'"name":"evil')
    assert b'"name":"evil' in lines[k]
    write_lines(log, lines)
    p = tern_audit("verify", log)
    assert_no_crash(p, "tern audit verify")
    assert p.returncode == 1
    assert p.stdout.decode().startswith(f"{log}:{k + 1}: edited: "), p.stdout


def test_verify_wrong_and_missing_key(real_log, tmp_path):
    _, first_key = real_log
    adir, log, lines = copy_log(real_log, tmp_path)
    text = first_key.read_text()
    assert re.fullmatch(r"0 [0-9a-f]{64}\n", text), text
    wrong = tmp_path / "wrong-key"
    wrong.write_text(f"0 {os.urandom(32).hex()}\n")
    p = verify_copy(log, wrong)
    out = p.stdout.decode()
    assert p.returncode == 1, out + p.stderr.decode()
    assert f"{log}:1: wrong key: " in out, out
    assert "is this log's key" in out
    missing = tmp_path / "no-such-key"
    p = verify_copy(log, missing)
    assert p.returncode == 66, p.stdout + p.stderr
    assert f"cannot read the key file {missing}".encode() in p.stderr, p.stderr
    assert p.stdout == b""
    garbage = tmp_path / "not-a-key"
    garbage.write_text("this is no key\n")
    p = verify_copy(log, garbage)
    assert p.returncode == 65, p.stdout + p.stderr
    assert p.stderr.startswith(b"tern audit verify: ") and p.stdout == b""


# ---------------------------------------------------------------------------------------------
# hostile input

def test_hostile_helo_and_mail_are_bounded(ternd_factory):
    t = make(ternd_factory)
    # every C0 control but NUL, CR and LF (which end or refuse a command line), DEL, bytes that
    # are no UTF-8 (lone continuation, 0xff, an overlong, a surrogate), a C1 control (NEL) and
    # a right-to-left override, over and over, to about 490 octets
    junk = (b"h" + bytes(c for c in range(1, 32) if c not in (10, 13)) + b"\x7f\x80\xff"
            b"\xc0\xaf\xed\xa0\x80\xc2\x85\xe2\x80\xae\\")
    helo = (junk * 20)[:490]
    addr = b"a" + (junk * 20)[:470] + b"@x.test"
    mail_arg = b"FROM:<" + addr + b">"
    assert len(b"HELO " + helo) < 510 and len(b"MAIL " + mail_arg) < 510
    c = Conn(t.smtp_port, bind=fresh_ip())
    port = client_port(c)
    c.send_raw(b"HELO " + helo + b"\r\n", kinds=["HELO"])
    assert c.reply().code == 501
    c.ehlo()
    c.send_raw(b"MAIL " + mail_arg + b"\r\n", kinds=["MAIL"])
    assert c.reply().code // 100 == 5
    c.quit()
    sid = session_of_port(t, port)
    session_records(t, sid)
    t.stop()

    raw = [l for l in log_lines(t) if json.loads(l).get("session") == sid]
    for line in raw:  # ASCII; C0 controls escaped (JSON leaves DEL as it is)
        assert all(0x20 <= b <= 0x7f for b in line), f"a raw control or non-ASCII byte: {line!r}"
        assert len(line) < 16384
    recs = [json.loads(l) for l in raw]
    assert len(records(t)) == raw_log(t).count(b"\n")  # one record a line, none split
    h = one(recs, "helo", verb="HELO")
    assert h["code"] == 501
    assert h["name"] == bounded(helo), (h["name"], bounded(helo))
    m = one(recs, "mail")
    assert m["from"] == bounded(mail_arg), (m["from"], bounded(mail_arg))
    assert "\x1b" in h["name"] and "\ufffd" in h["name"] and "\u202e" in h["name"]

    p = tern_audit("show", "--session", sid, conf=t.conf_path)
    assert p.returncode == 0, p.stderr
    for b in p.stdout:
        assert b >= 0x20 and b != 0x7f or b == 0x0a, f"control byte {b:#x} on the terminal"
    out = p.stdout.decode("utf-8")
    for ch in out:
        assert not (0x80 <= ord(ch) <= 0x9f) and ch != "\u202e", f"{ch!r} on the terminal"
    rows = out.splitlines()[1:]
    assert len(rows) == len(recs), out
    assert shown(h["name"]) in out, out
    assert shown(m["from"]) in out, out
    assert "\\x1b" in out and "\\u202e" in out and "\\u0085" in out
    # --json gives the stored lines back byte for byte
    p = tern_audit("show", "--json", "--session", sid, conf=t.conf_path)
    assert p.returncode == 0 and p.stdout == b"".join(l + b"\n" for l in raw)
    assert_verifies(t)


# ---------------------------------------------------------------------------------------------
# syslog

@pytest.fixture
def syslog_ternd(ternd_factory):
    """A ternd with [audit] syslog = yes in a private mount namespace whose /dev/log is a
    datagram socket of ours. Yields (ternd, sink); checks nothing stays mounted."""
    if os.geteuid() != 0:
        pytest.fail("needs root: ternd runs in a mount namespace of its own with a /dev/log of "
                    "the test's (CI runs the integration tests as root)", pytrace=False)
    before = host_mounts()
    had_devlog = os.path.lexists("/dev/log")
    t = make(ternd_factory, config={"audit.syslog": "yes"}, start=False, name="syslog")
    sock = t.root / "devlog.sock"
    sink = SyslogSink(sock)
    try:
        put_in_namespace(t, sock)
        t.start()
        yield t, sink
        t.stop()
    finally:
        t.stop()
        sink.close()
    assert os.path.lexists("/dev/log") == had_devlog, "/dev/log changed on the host"
    after = host_mounts()
    assert "tern-it-dev" not in after, "the namespace's /dev is mounted on the host"
    assert str(t.root) not in after, "a mount under the test's folder is left on the host"
    assert not [l for l in after.splitlines() if " /dev " in l and l not in before], \
        "/dev of the host was remounted"


def syslog_copies(t, sink, timeout=TIMEOUT) -> dict[bytes, tuple]:
    """Waits until every session and daemon record of the log has arrived by syslog; returns
    {message: (priority, tag, pid)}."""
    deadline = time.monotonic() + timeout
    while True:
        got = {m: (pri, tag, pid) for pri, tag, pid, m in sink.messages()}
        want = [l for l in log_lines(t) if json.loads(l)["event"] not in LOG_OWN]
        if all(l in got for l in want) or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


LOG_OWN = ("create", "epoch", "rotate", "recover")  # records the log writes about itself


def test_syslog_copy_of_each_record(syslog_ternd):
    t, sink = syslog_ternd
    _, msg = make_message(frm=SENDER, to="alice@example.org")
    with smtp_client(t.smtp_port) as s:
        s.ehlo("syslog.client.test")
        s.sendmail(SENDER, ["alice@example.org"], msg)
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            s.sendmail(SENDER, ["nobody@example.org"], msg)
    with smtp_client(t.submission_port) as s:
        s.ehlo("syslog.client.test")
        with pytest.raises(smtplib.SMTPAuthenticationError):
            s.login("mallory@example.org", WRONG_PW)
    t.reload()
    pid = t.pid
    t.stop()
    lines = log_lines(t)
    evs = {json.loads(l)["event"] for l in lines}
    assert {"start", "connect", "helo", "mail", "rcpt", "data", "message", "auth", "reload",
            "disconnect", "stop"} <= evs, evs
    got = syslog_copies(t, sink)
    missing = [l for l in lines if json.loads(l)["event"] not in LOG_OWN and l not in got]
    assert not missing, (f"{len(missing)} of {len(lines)} records not in syslog, e.g. "
                         f"{missing[0][:300]!r}")
    for l in lines:
        if l in got:
            pri, tag, spid = got[l]
            assert (pri, tag, spid) == (16 + 6, "ternd-audit", pid), got[l]  # LOG_MAIL|LOG_INFO
    # nothing else came by syslog under that tag: the copies are the log's records, as written
    assert set(got) <= set(lines), [m[:200] for m in set(got) - set(lines)]


def test_syslog_copy_of_the_logs_own_records(syslog_ternd):
    """tern.conf(5): "Also send each record, as written, to syslog(3)": the log's own records
    (create, and the epoch record of each start) too, so that the copy is the whole chain."""
    t, sink = syslog_ternd
    t.stop()
    t.start()  # an epoch record (reason start) now
    t.stop()
    lines = log_lines(t)
    own = [l for l in lines if json.loads(l)["event"] in LOG_OWN]
    assert [json.loads(l)["event"] for l in own] == ["create", "epoch"], own
    got = syslog_copies(t, sink)
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and not all(l in got for l in own):
        time.sleep(0.05)
        got = {m: x for *x, m in sink.messages()}
    missing = [json.loads(l)["event"] for l in own if l not in got]
    assert not missing, f"records of the log itself not sent to syslog: {missing}"
