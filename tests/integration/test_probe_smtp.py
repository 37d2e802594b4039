"""`tern probe` and `tern smtp` against a real ternd on loopback (a self-signed certificate for
mx.test.example and IP 127.0.0.1, STARTTLS on smtp and submission, implicit TLS on smtps), and
against a tiny scripted server for what ternd never sends (a 554 greeting, control characters in
replies).

tern smtp is driven through a pipe, as a script would: one command a line on standard input,
each command echoed as "> LINE", each server line as "< LINE", and under it a line
"= CLASS reply to COMMAND: CODE MEANING" with the meaning from the seeds' tables.
"""
from __future__ import annotations

import base64
import json
import os
import pty
import re
import select
import signal
import socket
import subprocess
import threading
import time
import uuid

import pytest

from tern_it import HOSTNAME, crypt_hash, free_port, tern_binary

PW = {"alice@example.org": "alice probe pw", "bob@example.org": "bob-probe-secret"}
USERS = [
    ("alice@example.org", "Alice Liddell", "", crypt_hash(PW["alice@example.org"])),
    ("bob@example.org", "Bob Smith", "", crypt_hash(PW["bob@example.org"])),
    ("dave@example.org", "Dave Mover", "moved=dave@elsewhere.test"),
]
ALIASES = ["postmaster: alice@example.org"]
SUBJECT = f"CN={HOSTNAME}"
MECHS = "PLAIN LOGIN SCRAM-SHA-256"


def tern(*args, input=None, env=None, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run([str(tern_binary()), *args], input=input, capture_output=True,
                          timeout=timeout, env=env)


def out(p: subprocess.CompletedProcess) -> str:
    return p.stdout.decode("utf-8", "replace")


def err(p: subprocess.CompletedProcess) -> str:
    return p.stderr.decode("utf-8", "replace")


@pytest.fixture(scope="module")
def _srv(module_ternd_factory):
    return module_ternd_factory(users=USERS, aliases=ALIASES, tls=True, smtps=True,
                                config={"policy.vrfy": "all"}, name="probe")


@pytest.fixture
def srv(_srv):
    return _srv.ensure_running()


@pytest.fixture(scope="module")
def _plain_srv(module_ternd_factory):
    return module_ternd_factory(users=USERS, aliases=ALIASES, name="plain")


@pytest.fixture
def plain_srv(_plain_srv):
    """No [tls]: no STARTTLS offered."""
    return _plain_srv.ensure_running()


def at(srv, port=None) -> str:
    return f"127.0.0.1:{port or srv.smtp_port}"


def smtp(srv, lines: list[str | bytes], *opts, port=None, env=None):
    data = b"".join((l if isinstance(l, bytes) else l.encode()) + b"\n" for l in lines)
    return tern("smtp", at(srv, port), "--ca-file", str(srv.cert_path), *opts, input=data,
                env=env)


class Scripted:
    """A one-connection SMTP server on 127.0.0.1 that sends greeting, then answers each line
    it reads from replies (by verb, upper-cased), "500 what?" otherwise; QUIT gets 221."""

    def __init__(self, greeting: bytes, replies: dict[str, bytes] | None = None):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.greeting, self.replies = greeting, replies or {}
        self.received: list[bytes] = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        self.sock.settimeout(20)
        try:
            c, _ = self.sock.accept()
        except OSError:
            return
        with c:
            c.settimeout(20)
            c.sendall(self.greeting)
            f = c.makefile("rb")
            for line in f:
                self.received.append(line)
                verb = line.split(b" ", 1)[0].strip().upper().decode("ascii", "replace")
                if verb == "QUIT":
                    c.sendall(b"221 bye\r\n")
                    return
                c.sendall(self.replies.get(verb, b"500 what?\r\n"))

    def close(self):
        self.thread.join(20)
        self.sock.close()


# ---------------------------------------------------------------------------------------------
# tern probe

def test_probe_plain_lists_capabilities_and_starttls_offer(srv):
    p = tern("probe", at(srv), "--no-tls")
    o = out(p)
    assert p.returncode == 0, o + err(p)
    assert re.search(rf"^greeting +220 {HOSTNAME} ", o, re.M), o
    assert re.search(rf"^EHLO +250 {HOSTNAME} ", o, re.M), o
    for kw in ("PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "CHUNKING", "STARTTLS"):
        assert re.search(rf"^  {kw}$", o, re.M), (kw, o)
    assert "  SIZE 10485760  (messages up to 10 MiB)" in o
    assert "(no AUTH offered here)" in o  # ternd offers AUTH only under TLS
    assert re.search(r"^STARTTLS +offered \(not tried: --no-tls\)$", o, re.M), o
    assert not re.search(r"^TLS ", o, re.M), o
    assert re.search(r"^QUIT +221 2\.0\.0 ", o, re.M), o


def test_probe_starttls_shows_self_signed_certificate_not_verified(srv):
    p = tern("probe", at(srv))
    o = out(p)
    assert p.returncode == 0, o + err(p)
    assert re.search(r"^STARTTLS +offered$", o, re.M), o
    assert re.search(r"^TLS +TLSv1\.[23], \S+ \(STARTTLS\)$", o, re.M), o
    assert f"  subject   {SUBJECT}\n" in o
    assert f"  issuer    {SUBJECT}\n" in o  # self-signed: its own issuer
    m = re.search(r"^  expires   \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC, in (\d+) days$", o, re.M)
    assert m and int(m.group(1)) in (29, 30), o  # tern_it makes it for 30 days
    assert "WARNING: the certificate expires" not in o
    assert "  verified  NO: self-signed certificate\n" in o
    assert "WARNING: the certificate did not verify for 127.0.0.1" in o
    # the capabilities after TLS: AUTH now, STARTTLS no more
    after = o.split("EHLO (TLS)", 1)[1]
    assert f"  AUTH {MECHS}  (mechanisms: {MECHS})" in after
    assert "  STARTTLS\n" not in after
    assert re.search(r"^QUIT +221 ", o, re.M), o


def test_probe_insecure_drops_the_warning_not_the_verdict(srv):
    o = out(tern("probe", at(srv), "--insecure"))
    assert "  verified  NO: self-signed certificate\n" in o
    assert "WARNING" not in o


def test_probe_ca_file_verifies_name_and_chain(srv):
    p = tern("probe", at(srv), "--ca-file", str(srv.cert_path))
    assert p.returncode == 0
    assert "  verified  yes, for 127.0.0.1\n" in out(p)
    # the same certificate, asked for under a name it does not carry
    o = out(tern("probe", f"localhost:{srv.smtp_port}", "--ca-file", str(srv.cert_path)))
    assert "  verified  NO: hostname mismatch\n" in o, o


def test_probe_implicit_tls(srv):
    p = tern("probe", at(srv, srv.smtps_port), "--tls")
    o = out(p)
    assert p.returncode == 0, o + err(p)
    assert re.search(r"^TLS +TLSv1\.[23], \S+ \(implicit TLS\)$", o, re.M), o
    assert f"  subject   {SUBJECT}\n" in o
    assert "  verified  NO: self-signed certificate\n" in o
    assert f"  AUTH {MECHS}  (mechanisms: {MECHS})" in o
    assert not re.search(r"^STARTTLS ", o, re.M), o  # already encrypted: no such line


def test_probe_json(srv):
    p = tern("probe", at(srv, srv.submission_port), "--json")
    assert p.returncode == 0, err(p)
    j = json.loads(p.stdout)
    assert j["host"] == "127.0.0.1" and j["port"] == str(srv.submission_port)
    assert j["greeting"]["code"] == 220 and j["greeting"]["class"] == "positive"
    assert j["ehlo"]["esmtp"] is True
    assert j["ehlo"]["size"] == 10485760 and j["ehlo"]["size_human"] == "10 MiB"
    assert "STARTTLS" in j["ehlo"]["capabilities"] and j["ehlo"]["auth"] == []
    assert j["starttls"] == {"offered": True, "tried": True}
    tls = j["tls"]
    assert tls["via"] == "STARTTLS" and tls["protocol"] in ("TLSv1.2", "TLSv1.3")
    assert tls["subject"] == SUBJECT and tls["issuer"] == SUBJECT
    assert tls["verified"] is False and tls["verify_error"] == "self-signed certificate"
    assert tls["days_left"] in (29, 30) and not tls["expired"] and not tls["expires_soon"]
    assert j["ehlo_tls"]["auth"] == MECHS.split()
    assert j["quit"]["code"] == 221
    assert j["exit"] == 0 and j["error"] is None


def test_probe_closed_port_exit_75_with_reason():
    port = free_port()  # nothing listens there
    p = tern("probe", f"127.0.0.1:{port}")
    assert p.returncode == 75
    assert f"tern probe: 127.0.0.1 port {port}: cannot connect: 101 " in err(p)
    assert "Connection refused" in err(p)
    j = json.loads(tern("probe", f"127.0.0.1:{port}", "--json").stdout)
    assert j["exit"] == 75 and "Connection refused" in j["error"]


def test_probe_without_starttls(plain_srv):
    p = tern("probe", at(plain_srv))
    assert p.returncode == 0
    assert "STARTTLS    not offered: mail to this server travels in clear" in out(p)
    p = tern("probe", at(plain_srv), "--starttls")
    assert p.returncode == 75
    assert "the server does not offer STARTTLS" in err(p)


def test_probe_554_greeting_exit_69_and_hostile_text_escaped():
    s = Scripted(b"554 no SMTP service here \x1b]0;owned\x07\r\n")
    try:
        p = tern("probe", f"127.0.0.1:{s.port}")
    finally:
        s.close()
    o = out(p)
    assert p.returncode == 69, o + err(p)
    assert "greeting    554 no SMTP service here \\x1b]0;owned\\x07" in o
    assert b"\x1b" not in p.stdout and b"\x07" not in p.stdout
    assert s.received == [b"QUIT\r\n"]  # RFC 5321 3.1: after a 554 greeting, only QUIT


def test_probe_usage():
    p = tern("probe")
    assert p.returncode == 64 and "give one server" in err(p)
    p = tern("probe", "--help")
    assert p.returncode == 0 and "usage: tern probe HOST[:PORT]" in out(p)


# ---------------------------------------------------------------------------------------------
# tern smtp

def test_smtp_transaction_delivers_dot_lines_byte_exact(srv):
    msgid = f"<{uuid.uuid4().hex}@client.test>"
    body = [f"Message-ID: {msgid}", "Subject: typed by hand", "", ".leading dot",
            "..two dots", ". dot space", "last line"]
    p = smtp(srv, ["EHLO client.test", "MAIL FROM:<sender@client.test>",
                   "RCPT TO:<alice@example.org>", "DATA", *body, ".", "QUIT"])
    o = out(p)
    assert p.returncode == 0, o + err(p)
    assert "> MAIL FROM:<sender@client.test>\n< 250 2.1.0 " in o
    assert "= positive reply to MAIL: 250 Requested mail action okay, completed\n" in o
    assert "= positive reply to RCPT: 250 Requested mail action okay, completed\n" in o
    assert ("= intermediate reply to DATA: 354 Start mail input; end with <CRLF>.<CRLF>\n"
            in o)
    assert "> <message: 7 lines>\n> .\n< 250 2.0.0 " in o
    assert "= positive reply to end of data: 250 Requested mail action okay, completed\n" in o
    assert "= positive reply to QUIT: 221 <domain> Service closing transmission channel\n" in o
    found = [m for m in srv.mailbox("alice@example.org") if msgid.encode() in m.raw]
    assert len(found) == 1 and found[0].problems() == []
    assert found[0].body == "".join(l + "\r\n" for l in body).encode()


def test_smtp_starttls_first_by_default_with_tls_details(srv):
    o = out(smtp(srv, ["NOOP"]))
    assert o.startswith(f"< 220 {HOSTNAME} ")
    assert "= positive reply to connect: 220 <domain> Service ready\n" in o
    assert re.search(r"^> EHLO \S+\n", o, re.M) and "\n> STARTTLS\n" in o
    assert re.search(rf"^\* TLS: TLSv1\.[23] \S+, certificate {SUBJECT}, verified$", o, re.M), o
    assert f"< 250 AUTH {MECHS}\n" in o  # the EHLO reply after TLS
    assert "> NOOP\n< 250 2.0.0 " in o


def test_smtp_vrfy_help_noop_rset(srv):
    o = out(smtp(srv, ["EHLO client.test", "VRFY alice@example.org", "HELP", "NOOP", "RSET"]))
    assert re.search(r"^< 25[02] .*\n= positive reply to VRFY: 25[02] ", o, re.M), o
    assert re.search(r"^< 214[ -]", o, re.M), o
    assert ("= positive reply to HELP: 214 Help message (how to use the server, or the "
            "meaning of a nonstandard command; useful only to the human user)\n") in o
    assert "> NOOP\n< 250 2.0.0 Ok\n= positive reply to NOOP: 250 Requested mail action " in o
    assert "> RSET\n< 250 2.0.0 " in o
    assert "= positive reply to RSET: 250 Requested mail action okay, completed\n" in o


def test_smtp_refused_rcpt_negative_with_meaning(srv):
    o = out(smtp(srv, ["EHLO client.test", "MAIL FROM:<sender@client.test>",
                       "RCPT TO:<nobody@example.org>", "RCPT TO:<someone@elsewhere.test>",
                       "RCPT TO:<dave@example.org>", "ETRN example.org"]))
    assert "> RCPT TO:<nobody@example.org>\n< 550 5.1.1 " in o
    meaning550 = ("= negative reply to RCPT: 550 Requested action not taken: mailbox "
                  "unavailable (e.g., mailbox not found, no access, or command rejected for "
                  "policy reasons)\n")
    assert o.count(meaning550) == 2, o  # the unknown user, and the refused relay
    assert "< 551 5.1.6 " in o
    assert "= negative reply to RCPT: 551 User not local; please try <forward-path>\n" in o
    # a verb libtern has no row for is named as typed, and classed by its first digit
    assert re.search(r"^= negative reply to ETRN: 5\d\d ", o, re.M), o


def test_smtp_auth_with_password_file_then_relay(srv, tmp_path):
    pwfile = tmp_path / "pw"
    pwfile.write_text(PW["alice@example.org"] + "\n")
    p = smtp(srv, ["MAIL FROM:<alice@example.org>", "RCPT TO:<friend@elsewhere.test>", "RSET"],
             "--user", "alice@example.org", "--password-file", str(pwfile),
             port=srv.submission_port)
    o = out(p)
    assert p.returncode == 0, o + err(p)
    assert "> AUTH PLAIN <as alice@example.org, password hidden>\n< 235 2.7.0 " in o
    assert "= positive reply to AUTH: 235 Authentication successful (response to AUTH)\n" in o
    assert "= positive reply to RCPT: 250 " in o  # authenticated: relaying allowed
    assert PW["alice@example.org"] not in o + err(p)


def test_smtp_auth_command_in_session(srv):
    env = {"TERN_PASSWORD": PW["bob@example.org"], "PATH": "/usr/bin:/bin"}
    o = out(smtp(srv, ["auth", "auth PLAIN bob@example.org", "AUTH LOGIN bob@example.org"],
                 env=env, port=srv.submission_port))
    assert "! auth: whose password? type auth [MECH] USER" in o  # no --user, no USER
    assert "> AUTH PLAIN <as bob@example.org, password hidden>\n< 235 " in o
    # a second AUTH in the same session: the server's 503, explained
    assert "> AUTH LOGIN <as bob@example.org, password hidden>\n< 503 " in o
    assert "= negative reply to AUTH: 503 Bad sequence of commands\n" in o
    assert PW["bob@example.org"] not in o


def test_smtp_raw_auth_line_is_sent_but_not_shown(srv):
    secret = base64.b64encode(b"\0bob@example.org\0" + PW["bob@example.org"].encode()).decode()
    o = out(smtp(srv, [f"AUTH PLAIN {secret}", "MAIL FROM:<bob@example.org>"],
                 port=srv.submission_port))
    assert "> AUTH PLAIN <credentials hidden>\n< 235 " in o
    assert "= positive reply to MAIL: 250 " in o  # authenticated: submission takes MAIL
    assert secret not in o


def test_smtp_auth_wrong_password_535(srv, tmp_path):
    pwfile = tmp_path / "pw"
    pwfile.write_text("not the password\n")
    p = smtp(srv, [], "--user", "alice@example.org", "--password-file", str(pwfile),
             port=srv.submission_port)
    assert p.returncode == 69
    assert "= negative reply to AUTH: 535 Authentication credentials invalid\n" in out(p)


def test_smtp_auth_never_in_clear(srv):
    p = smtp(srv, ["auth alice@example.org", "NOOP"], "--no-tls")
    o = out(p)
    assert p.returncode == 0
    assert "tern never sends a password in clear: type STARTTLS first" in o
    assert "no terminal" not in err(p)  # refused before any password was asked for
    assert "> NOOP\n< 250 " in o


def test_smtp_typed_starttls(srv):
    o = out(smtp(srv, ["EHLO client.test", "STARTTLS", "EHLO again.test"], "--no-tls"))
    assert "> EHLO client.test\n< 250-" in o and "< 250 STARTTLS\n" in o
    assert re.search(rf"^\* TLS: TLSv1\.[23] \S+, certificate {SUBJECT}, verified$", o, re.M), o
    assert o.count(f"< 250 AUTH {MECHS}\n") == 2  # the EHLO after TLS, and the one typed


def test_smtp_local_help_sends_nothing(srv):
    o = out(smtp(srv, ["help"], "--no-tls"))
    assert "auth [MECH] [USER]" in o and "quit" in o
    assert "< 214" not in o  # the server's HELP was not asked


def test_smtp_end_of_input_inside_data_sends_nothing(srv):
    msgid = f"<{uuid.uuid4().hex}@client.test>"
    p = smtp(srv, ["EHLO client.test", "MAIL FROM:<sender@client.test>",
                   "RCPT TO:<bob@example.org>", "DATA", f"Message-ID: {msgid}", "", "half"])
    assert p.returncode == 65
    assert "end of input in the middle of the message: it was not sent" in out(p)
    assert not [m for m in srv.mailbox("bob@example.org") if msgid.encode() in m.raw]


def test_smtp_certificate_refused_without_ca(srv):
    p = tern("smtp", at(srv), input=b"NOOP\n")
    assert p.returncode == 75
    assert "does not verify: self-signed certificate" in out(p)
    assert "--ca-file FILE, or, only for a test server, --insecure" in err(p)
    assert "> NOOP" not in out(p)


def test_smtp_closed_port_exit_75():
    port = free_port()
    p = tern("smtp", f"127.0.0.1:{port}", input=b"NOOP\n")
    assert p.returncode == 75 and "Connection refused" in err(p)


def test_smtp_hostile_replies_escaped():
    s = Scripted(b"220 evil.test \x1b[2J hello\r\n",
                 {"NOOP": b"250 ok \x1b]0;title\x07 \xe2\x80\xae reversed\r\n"})
    try:
        p = tern("smtp", f"127.0.0.1:{s.port}", "--no-tls", input=b"NOOP\nQUIT\n")
    finally:
        s.close()
    o = out(p)
    assert p.returncode == 0, o + err(p)
    assert "< 220 evil.test \\x1b[2J hello\n" in o
    assert "< 250 ok \\x1b]0;title\\x07 \\u202e reversed\n" in o
    assert b"\x1b" not in p.stdout and b"\x07" not in p.stdout and b"\xe2\x80\xae" not in p.stdout
    assert s.received == [b"NOOP\r\n", b"QUIT\r\n"]


def test_smtp_on_a_terminal_password_unechoed_and_kept_out_of_history(srv, tmp_path):
    """On a terminal: prompts, the password asked on /dev/tty without echo, and (with readline)
    Ctrl-P recalling the command before `auth`, never the auth line."""
    binary = str(tern_binary())
    readline = b"libreadline" in subprocess.run(["ldd", binary], capture_output=True).stdout
    pid, fd = pty.fork()
    if pid == 0:  # the child: its terminal is the pty
        os.execve(binary, ["tern", "smtp", at(srv, srv.submission_port), "--ca-file",
                           str(srv.cert_path)],
                  {"PATH": "/usr/bin:/bin", "TERM": "xterm", "HOME": str(tmp_path)})
    buf = bytearray()

    def until(what: bytes, count=1):
        deadline = time.monotonic() + 20
        while buf.count(what) < count:
            left = deadline - time.monotonic()
            assert left > 0, f"no {what!r} x{count} in {bytes(buf)!r}"
            if select.select([fd], [], [], left)[0]:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:  # EIO: the child closed the terminal
                    chunk = b""
                assert chunk, f"EOF before {what!r} x{count} in {bytes(buf)!r}"
                buf.extend(chunk)

    pw = PW["bob@example.org"].encode()
    done = False
    try:
        until(b"smtp> ")
        os.write(fd, b"RSET\r")
        until(b"smtp> ", 2)
        os.write(fd, b"auth PLAIN bob@example.org\r")
        until(b"password for bob@example.org: ")
        os.write(fd, pw + b"\r")
        until(b"smtp> ", 3)
        assert b"= positive reply to AUTH: 235 " in buf
        assert pw not in buf  # typed with echo off
        if readline:
            mark = len(buf)
            os.write(fd, b"\x10\r")  # Ctrl-P, Enter: the previous line in the history
            until(b"smtp> ", 4)
            assert b"= positive reply to RSET: 250 " in buf[mark:], bytes(buf[mark:])
            assert b"password for" not in buf[mark:]
        os.write(fd, b"\x04")  # Ctrl-D: QUIT
        until(b"= positive reply to QUIT: 221 ")
        done = True
    finally:
        if not done:  # stuck at a prompt: end the child we started
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0
