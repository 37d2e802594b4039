"""tern's client side against real servers on loopback: `tern send` (the CLI) and libtern (the C
library, include/tern/client.h) delivering to a real ternd, and `tern send` delivering to a real
Postfix.

ternd: one module daemon with a smtp listener (no AUTH), submission (STARTTLS, AUTH) and smtps
(implicit TLS), the fixtures' self-signed certificate (SAN DNS:mx.test.example and IP:127.0.0.1,
so `--ca-file` verifies it for 127.0.0.1 and no --insecure is needed), users with yescrypt and
with SCRAM-SHA-256 stored passwords. Tests that fail an AUTH on purpose get a ternd of their own:
ternd throttles failures per client address, and `tern send` always comes from 127.0.0.1.

What lands in a Maildir is ternd's Return-Path: and Received: fields followed by the client's
octets; every delivery here is compared byte for byte with what `tern send --raw` was given,
after the normalisation it documents (bare LF to CRLF, a final CRLF added).

libtern: the tree $TERND was built in is installed with `make install DESTDIR=...` (`-o all`:
the files already built there, not remade), and a C program written below is compiled against
the staged copy with `pkg-config --cflags --libs libtern` (shared, with an rpath) and with
`pkg-config --static --libs libtern` against libtern.a.

Postfix: ../shared/bench/peers.sh beside the repository (or $BENCH_KIT/peers.sh) starts a
private Postfix on a free loopback port with its own state dir; every recipient @example.test
lands in one Maildir there. It needs root (CI runs as root) and installs the postfix package
with apt-get if it is missing. Stopped with `peers.sh stop postfix`, which signals the master
process of that instance (its own pid file) only.
"""
from __future__ import annotations

import base64
import email
import email.policy
import os
import random
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tern_it import (HOSTNAME, REPO, crypt_hash, free_port, make_cert, scram_hash, tern_binary,
                     ternd_binary)

PW = {
    # non-ASCII and spaces on purpose: SASLprep, base64 and the transcript see real octets
    "alice@example.org": "Älice pw: 1 2 3",
    "bob@example.org": "bob-Secret-42",
    "carol@example.net": "carol scrämble 9",  # SCRAM-SHA-256 keys stored
}
USERS = [
    ("alice@example.org", "Alice Liddell", "", crypt_hash(PW["alice@example.org"])),
    ("bob@example.org", "Bob Smith", "", crypt_hash(PW["bob@example.org"])),
    ("carol@example.net", "Carol Smith", "", scram_hash(PW["carol@example.net"])),
]
SENDER = "sender@client.test"


# --------------------------------------------------------------------------------------------
# helpers

def norm(raw: bytes) -> bytes:
    """What `tern send --raw` and tern_send_message send for raw: bare LF (and, in libtern, a
    bare CR) becomes CRLF, and the last line gets a CRLF if it has none."""
    out = re.sub(rb"\r\n|\r|\n", b"\r\n", raw)
    return out if out.endswith(b"\r\n") else out + b"\r\n"


def tern_send(*args, password=None, input=None, timeout=60) -> subprocess.CompletedProcess:
    """`tern send ARGS` (bytes out); the password, when given, in $TERN_PASSWORD only."""
    env = {k: v for k, v in os.environ.items() if k != "TERN_PASSWORD"}
    if password is not None:
        env["TERN_PASSWORD"] = password
    return subprocess.run([str(tern_binary()), "send", *args], input=input, capture_output=True,
                          env=env, timeout=timeout)


def out_of(p: subprocess.CompletedProcess) -> str:
    return (p.stdout + p.stderr).decode("utf-8", "replace")


def describe(p: subprocess.CompletedProcess) -> str:
    return f"exit {p.returncode}\n--- stdout\n{p.stdout.decode(errors='replace')}\n" \
           f"--- stderr\n{p.stderr.decode(errors='replace')}"


def new_deliveries(t, addr, before: set, want=1, timeout=10.0):
    """The files in addr's Maildir that were not in before, once there are want of them."""
    deadline = time.monotonic() + timeout
    while True:
        new = [d for d in t.mailbox(addr) if d.path not in before]
        if len(new) >= want or time.monotonic() > deadline:
            return new
        time.sleep(0.05)


def snapshot(t, *addrs) -> dict:
    return {a: {d.path for d in t.mailbox(a)} for a in addrs}


def assert_one_exact(t, addr, before: set, expected: bytes, return_path: str):
    new = new_deliveries(t, addr, before)
    assert len(new) == 1, f"{addr}: {len(new)} new messages, expected 1"
    d = new[0]
    assert d.problems() == [], d.problems()
    assert d.return_path == return_path, d.return_path
    if d.body != expected:
        i = next((i for i, (a, b) in enumerate(zip(d.body, expected)) if a != b),
                 min(len(d.body), len(expected)))
        pytest.fail(f"{addr}: delivered bytes differ from what was sent at offset {i} "
                    f"(delivered {len(d.body)} octets, sent {len(expected)}):\n"
                    f"  delivered {d.body[max(0, i - 40):i + 40]!r}\n"
                    f"  sent      {expected[max(0, i - 40):i + 40]!r}", pytrace=False)
    return d


def secret_forms(user: str, pw: str) -> list[bytes]:
    """The password and the encodings an AUTH exchange would carry it in."""
    b = lambda s: base64.b64encode(s.encode()).decode()
    return [x.encode() for x in (pw, b(pw), b(f"\0{user}\0{pw}"), b(f"{user}\0{user}\0{pw}"))]


def assert_no_secret(p: subprocess.CompletedProcess, user: str, pw: str):
    both = p.stdout + p.stderr
    for form in secret_forms(user, pw):
        assert form not in both, f"the password (as {form!r}) is in the output:\n{describe(p)}"


def lines_msg(n_bytes: int, start: bytes) -> bytes:
    """start, then CRLF lines of 76 'y's and a last shorter line: exactly n_bytes octets."""
    out = [start]
    n = len(start)
    while n_bytes - n > 100:
        out.append(b"y" * 76 + b"\r\n")
        n += 78
    out.append(b"k" * (n_bytes - n - 2) + b"\r\n")
    m = b"".join(out)
    assert len(m) == n_bytes
    return m


HDR = (b"From: Sender <sender@client.test>\r\nTo: <bob@example.org>\r\n"
       b"Subject: raw\r\nDate: Mon, 01 Jan 2024 00:00:00 +0000\r\n"
       b"Message-ID: <raw-%d@client.test>\r\n\r\n")


def raw_messages() -> dict[str, bytes]:
    msgs = {
        # every shape of line a dot can start, and the end-of-data sequence inside the body
        "dots": HDR % 1 + b".\r\n..\r\n.x\r\n...\r\n .\r\nmid\r\n.\r\nend .\r\n.",
        # LF and CRLF mixed, empty lines at the end, no final line break
        "mixed-eol": HDR % 2 + b"lf\nlf\ncrlf\r\n\n\r\n\nlast line without a break",
        # 8-bit (UTF-8) body and header: BODY=8BITMIME
        "8bit": (HDR % 3).replace(b"Subject: raw", "Subject: ¡Grüße! ✓".encode())
        + "ünïcødé body — 日本語\r\n".encode() + bytes(range(0x80, 0x100)) + b"\r\n",
        # a line of exactly 998 octets, trailing spaces and tabs, a lone space line
        "long-lines": HDR % 4 + b"x" * 998 + b"\r\ntrailing   \r\ntab\t\t\r\n \r\n\t\r\n",
    }
    # 64 KiB is libtern's chunk (message pieces, BDAT chunks): a CRLF split across the first
    # boundary with a dot line right after it, a dot line starting exactly at the second and
    # one just before the third; then 100 KB of dot-heavy lines, so several chunks go out
    big = lines_msg(65537, HDR % 5)  # its last CR at 65535, the LF at 65536
    big += b".dot line after CR|LF split\r\n"
    big = lines_msg(2 * 65536, big) + b".at 131072\r\n"
    big = lines_msg(3 * 65536 - 1, big) + b".just before 196608\r\n"
    big += b"".join(b"." * (i % 3) + b"line %d\r\n" % i for i in range(8000))
    assert big[65535:65537] == b"\r\n" and big[131072:131073] == b"."
    msgs["chunk-boundaries"] = big
    return msgs


RAW = raw_messages()


# --------------------------------------------------------------------------------------------
# the ternd

@pytest.fixture(scope="module")
def _srv(module_ternd_factory):
    return module_ternd_factory(users=USERS, smtps=True, name="client")


@pytest.fixture
def srv(_srv):
    return _srv.ensure_running()


def test_certificate_names_127_0_0_1(srv):
    """The fixtures' certificate carries IP:127.0.0.1, so `--server 127.0.0.1 --ca-file CERT`
    verifies by name too, and no test below needs --insecure to deliver."""
    p = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in",
                        str(srv.cert_path)], capture_output=True, text=True, check=True)
    assert "IP Address:127.0.0.1" in p.stdout, p.stdout
    assert f"DNS:{HOSTNAME}" in p.stdout, p.stdout


@pytest.mark.parametrize("bdat", [False, True], ids=["DATA", "BDAT"])
@pytest.mark.parametrize("name", list(RAW))
def test_raw_plain_smtp_byte_exact(srv, name, bdat, tmp_path):
    raw = RAW[name]
    f = tmp_path / "msg.eml"
    f.write_bytes(raw)
    before = snapshot(srv, "bob@example.org")
    p = tern_send("--server", f"127.0.0.1:{srv.smtp_port}", "--no-tls", "--from", SENDER,
                  "--to", "bob@example.org", "--raw", str(f), "--verbose",
                  *(["--bdat"] if bdat else []))
    assert p.returncode == 0, describe(p)
    err = p.stderr.decode(errors="replace")
    # the transcript shows the path taken: no TLS, and BDAT or DATA as asked
    assert "C: STARTTLS" not in err and "(TLS)" not in p.stdout.decode(), describe(p)
    if bdat:
        assert re.search(r"^C: BDAT \d+ LAST$", err, re.M) and "C: DATA" not in err, err
    else:
        assert "C: DATA" in err and "C: BDAT" not in err, err
    if name == "8bit":
        assert "BODY=8BITMIME" in err, err
    assert re.match(rb"sent to 1 of 1 recipients via 127\.0\.0\.1 port \d+: server: 250 ",
                    p.stdout), describe(p)
    assert_one_exact(srv, "bob@example.org", before["bob@example.org"], norm(raw), SENDER)


def test_raw_from_stdin(srv):
    raw = RAW["dots"]
    before = snapshot(srv, "bob@example.org")
    p = tern_send("--server", f"127.0.0.1:{srv.smtp_port}", "--no-tls", "--from", SENDER,
                  "--to", "bob@example.org", "--raw", "-", input=raw)
    assert p.returncode == 0, describe(p)
    assert_one_exact(srv, "bob@example.org", before["bob@example.org"], norm(raw), SENDER)


def test_starttls_submission_ca_file(srv, tmp_path):
    raw = RAW["mixed-eol"].replace(b"Sender <sender@client.test>", b"<alice@example.org>")
    f = tmp_path / "msg.eml"
    f.write_bytes(raw)
    user = "alice@example.org"
    before = snapshot(srv, "bob@example.org")
    p = tern_send("--server", f"127.0.0.1:{srv.submission_port}", "--ca-file",
                  str(srv.cert_path), "--user", user, "--from", user, "--to", "bob@example.org",
                  "--raw", str(f), "--verbose", password=PW[user])
    assert p.returncode == 0, describe(p)
    err = p.stderr.decode()
    assert "C: STARTTLS" in err and "S: 220 2.0.0" in err, err
    # STARTTLS comes before anything else, AUTH only after it (PLAIN: the default under TLS)
    assert err.index("C: STARTTLS") < err.index("C: AUTH PLAIN") < err.index("C: MAIL FROM"), err
    assert "(TLS)" in p.stdout.decode(), describe(p)
    d = assert_one_exact(srv, "bob@example.org", before["bob@example.org"], norm(raw), user)
    assert b"with ESMTPSA (TLS" in d.received, d.received
    assert_no_secret(p, user, PW[user])


def test_starttls_certificate_checked(srv, tmp_path):
    """Without the CA the self-signed certificate fails (exit 75, the reason and the way out
    printed) and nothing is sent; a name the certificate does not carry fails the same way;
    --insecure sends."""
    f = tmp_path / "msg.eml"
    f.write_bytes(RAW["dots"])
    common = ["--from", SENDER, "--to", "bob@example.org", "--raw", str(f)]
    before = snapshot(srv, "bob@example.org")

    p = tern_send("--server", f"127.0.0.1:{srv.smtp_port}", *common)
    assert p.returncode == 75, describe(p)
    err = p.stderr.decode()
    assert "certificate" in err and "self-signed certificate" in err, err
    assert "--ca-file" in err and "--insecure" in err, err

    p = tern_send("--server", f"localhost:{srv.smtp_port}", "--ca-file", str(srv.cert_path),
                  *common)
    assert p.returncode == 75, describe(p)
    assert "hostname mismatch" in p.stderr.decode(), describe(p)

    p = tern_send("--server", f"127.0.0.1:{srv.smtps_port}", "--tls", *common)
    assert p.returncode == 75, describe(p)
    assert "self-signed certificate" in p.stderr.decode(), describe(p)

    assert new_deliveries(srv, "bob@example.org", before["bob@example.org"], timeout=0.5) == []

    p = tern_send("--server", f"127.0.0.1:{srv.smtp_port}", "--insecure", *common)
    assert p.returncode == 0, describe(p)
    assert "(TLS)" in p.stdout.decode(), describe(p)
    assert_one_exact(srv, "bob@example.org", before["bob@example.org"], norm(RAW["dots"]),
                     SENDER)


def test_implicit_tls_smtps(srv, tmp_path):
    raw = RAW["8bit"].replace(b"Sender <sender@client.test>", b"<bob@example.org>")
    f = tmp_path / "msg.eml"
    f.write_bytes(raw)
    user = "bob@example.org"
    before = snapshot(srv, "alice@example.org")
    p = tern_send("--server", f"127.0.0.1:{srv.smtps_port}", "--tls", "--ca-file",
                  str(srv.cert_path), "--user", user, "--from", user,
                  "--to", "alice@example.org", "--raw", str(f), "--verbose", password=PW[user])
    assert p.returncode == 0, describe(p)
    err = p.stderr.decode()
    assert "C: STARTTLS" not in err, err  # TLS from the first byte: no STARTTLS at all
    assert err.startswith("S: 220 "), err
    d = assert_one_exact(srv, "alice@example.org", before["alice@example.org"], norm(raw), user)
    assert b"with ESMTPSA (TLS" in d.received, d.received
    assert_no_secret(p, user, PW[user])


@pytest.mark.parametrize("mech,user", [
    ("PLAIN", "alice@example.org"),
    ("LOGIN", "alice@example.org"),
    ("SCRAM-SHA-256", "carol@example.net"),
    ("PLAIN", "carol@example.net"),   # PLAIN and LOGIN work against SCRAM keys too
    ("LOGIN", "carol@example.net"),
], ids=["PLAIN-yescrypt", "LOGIN-yescrypt", "SCRAM-scram", "PLAIN-scram", "LOGIN-scram"])
def test_auth_mechanisms(srv, mech, user, tmp_path):
    raw = RAW["dots"].replace(b"Sender <sender@client.test>", f"<{user}>".encode())
    f = tmp_path / "msg.eml"
    f.write_bytes(raw)
    before = snapshot(srv, "bob@example.org")
    p = tern_send("--server", f"127.0.0.1:{srv.submission_port}", "--ca-file",
                  str(srv.cert_path), "--user", user, "--auth", mech, "--from", user,
                  "--to", "bob@example.org", "--raw", str(f), "--verbose", password=PW[user])
    assert p.returncode == 0, describe(p)
    err = p.stderr.decode()
    assert re.search(rf"^C: AUTH {mech}( <auth data hidden>)?$", err, re.M), err
    assert "S: 235 2.7.0" in err, err
    if mech in ("LOGIN", "SCRAM-SHA-256"):  # the later steps hidden as well
        assert re.search(r"^S: 334 .*\nC: <auth data hidden>$", err, re.M), err
    assert_one_exact(srv, "bob@example.org", before["bob@example.org"], norm(raw), user)
    assert_no_secret(p, user, PW[user])


@pytest.mark.parametrize("mech,user,pw", [
    ("PLAIN", "alice@example.org", "not Älice's"),
    ("LOGIN", "alice@example.org", "not Älice's"),
    ("SCRAM-SHA-256", "carol@example.net", "not carol's"),
    # the right password, but yescrypt keeps no SCRAM keys: the server cannot do SCRAM
    ("SCRAM-SHA-256", "alice@example.org", PW["alice@example.org"]),
], ids=["PLAIN", "LOGIN", "SCRAM", "SCRAM-without-keys"])
def test_auth_refused_exit_69(ternd_factory, mech, user, pw):
    t = ternd_factory(users=USERS, tls=True, name="authfail")  # its own failure counters
    before = snapshot(t, "bob@example.org")
    p = tern_send("--server", f"127.0.0.1:{t.submission_port}", "--ca-file", str(t.cert_path),
                  "--user", user, "--auth", mech, "--from", user, "--to", "bob@example.org",
                  "--verbose", password=pw, input=b"body\n")
    assert p.returncode == 69, describe(p)
    assert re.search(rb"^tern send: AUTH refused: 535 5\.7\.8 ", p.stderr, re.M), describe(p)
    assert b"C: MAIL FROM" not in p.stderr, describe(p)
    assert new_deliveries(t, "bob@example.org", before["bob@example.org"], timeout=0.3) == []
    assert_no_secret(p, user, pw)


def test_refused_recipient_others_get_it(srv, tmp_path):
    raw = RAW["long-lines"]
    f = tmp_path / "msg.eml"
    f.write_bytes(raw)
    rcpts = ["alice@example.org", "nobody@example.org", "bob@example.org", "someone@other.test"]
    before = snapshot(srv, "alice@example.org", "bob@example.org")
    p = tern_send("--server", f"127.0.0.1:{srv.smtp_port}", "--no-tls", "--from", SENDER,
                  *[x for r in rcpts for x in ("--to", r)], "--raw", str(f))
    assert p.returncode == 69, describe(p)  # a permanent refusal for some: 69, not 0
    err = p.stderr.decode()
    assert re.search(r"^tern send: <nobody@example\.org> refused: 550 5\.1\.1 .*no such user",
                     err, re.M), err
    assert re.search(r"^tern send: <someone@other\.test> refused: 550 5\.7\.1 .*relay", err,
                     re.M), err
    assert "alice@example.org> refused" not in err and "bob@example.org> refused" not in err
    assert re.match(rb"sent to 2 of 4 recipients via .*: server: 250 2\.0\.0 ", p.stdout), \
        describe(p)
    for r in ("alice@example.org", "bob@example.org"):
        assert_one_exact(srv, r, before[r], norm(raw), SENDER)
    assert not srv.maildir("nobody@example.org").exists()


def test_temporarily_refused_recipient_exit_75(ternd_factory):
    t = ternd_factory(users=USERS, config={"limits.recipients": "2"}, name="rcptlimit")
    rcpts = ["alice@example.org", "bob@example.org", "carol@example.net"]
    before = snapshot(t, *rcpts)
    raw = RAW["dots"]
    p = tern_send("--server", f"127.0.0.1:{t.smtp_port}", "--no-tls", "--from", SENDER,
                  *[x for r in rcpts for x in ("--to", r)], "--raw", "-", input=raw)
    assert p.returncode == 75, describe(p)
    assert re.search(rb"^tern send: <carol@example\.net> refused: 452 4\.5\.3 ", p.stderr,
                     re.M), describe(p)
    assert re.match(rb"sent to 2 of 3 recipients", p.stdout), describe(p)
    for r in rcpts[:2]:
        assert_one_exact(t, r, before[r], norm(raw), SENDER)
    assert new_deliveries(t, "carol@example.net", before["carol@example.net"], timeout=0.3) == []


@pytest.mark.parametrize("mode", ["--no-tls", "--starttls", "--tls"])
def test_closed_port_exit_75(mode):
    port = free_port()  # free: nothing listens there
    p = tern_send("--server", f"127.0.0.1:{port}", mode, "--from", SENDER,
                  "--to", "bob@example.org", input=b"body\n", timeout=30)
    assert p.returncode == 75, describe(p)
    assert re.search(rf"tern send: 127\.0\.0\.1 port {port}: 101 cannot connect .*Connection "
                     r"refused", p.stderr.decode()), describe(p)


def test_composed_message_parses(srv, tmp_path):
    """Subject and display name in UTF-8, a UTF-8 body from stdin, a binary attachment of
    200 KB (NULs, CR, LF, '.' lines: spanning several 64 KiB chunks) and a text attachment with
    a UTF-8 file name, To, Cc and Bcc: Python's email package reads it all back."""
    rnd = random.Random(7)
    binary = bytes(rnd.getrandbits(8) for _ in range(200_003)) + b"\0\r\n.\r\n\n.\r"
    text = "plain text attachment\n.\nzweite Zeile: ü\n".encode()
    (tmp_path / "data.bin").write_bytes(binary)
    (tmp_path / "notes ü.txt").write_bytes(text)
    subject = "Grüße aus Köln — ✓ " * 6 + "日本語の件名"
    body = "Hällo body\n.\n..\nline with trailing space \n"
    before = snapshot(srv, "alice@example.org", "bob@example.org", "carol@example.net")
    p = tern_send("--server", f"127.0.0.1:{srv.smtp_port}", "--no-tls",
                  "--from", "Zoë Ünïcode <sender@client.test>",
                  "--to", "Alice <alice@example.org>", "--cc", "bob@example.org",
                  "--bcc", "carol@example.net", "--subject", subject,
                  "--header", "X-Tern-Test: composed",
                  "--attach", str(tmp_path / "data.bin"),
                  "--attach", str(tmp_path / "notes ü.txt"), input=body.encode())
    assert p.returncode == 0, describe(p)
    assert re.match(rb"sent to 3 of 3 recipients", p.stdout), describe(p)
    copies = {}
    for r in ("alice@example.org", "bob@example.org", "carol@example.net"):
        new = new_deliveries(srv, r, before[r])
        assert len(new) == 1 and new[0].problems() == [], (r, new)
        copies[r] = new[0].body
    # one message, the same octets for every recipient; Bcc never written into it
    assert copies["alice@example.org"] == copies["bob@example.org"] == copies["carol@example.net"]
    raw = copies["alice@example.org"]
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert b"carol@example.net" not in raw, raw[:2000]
    assert not re.search(rb"(?im)^bcc:", head), head
    assert all(b < 0x80 for b in head), f"8-bit octets in the header:\n{head!r}"
    assert all(len(line) <= 998 for line in raw.split(b"\r\n")), "a line over 998 octets"
    assert re.search(rb"(?m)^Message-ID: <[^>\s]+@[^>\s]+>\r$", head), head
    assert re.search(rb"(?m)^Date: ", head), head
    assert re.search(rb"(?m)^MIME-Version: 1\.0\r$", head), head

    m = email.message_from_bytes(raw, policy=email.policy.default)
    assert not m.defects, m.defects
    assert str(m["subject"]) == subject
    assert m["from"].addresses[0].display_name == "Zoë Ünïcode"
    assert m["from"].addresses[0].addr_spec == "sender@client.test"
    assert [a.addr_spec for a in m["to"].addresses] == ["alice@example.org"]
    assert [a.addr_spec for a in m["cc"].addresses] == ["bob@example.org"]
    assert m["x-tern-test"] == "composed"
    assert m.get_content_type() == "multipart/mixed"
    parts = list(m.iter_parts())
    assert [x.get_content_type() for x in parts][0] == "text/plain", parts
    assert parts[0].get_content().replace("\r\n", "\n") == body
    atts = {a.get_filename(): a for a in m.iter_attachments()}
    assert set(atts) == {"data.bin", "notes ü.txt"}, list(atts)
    for part in m.walk():
        assert not part.defects, (part.get_content_type(), part.defects)
    assert atts["data.bin"].get_payload(decode=True) == binary
    t = atts["notes ü.txt"]
    got = t.get_payload(decode=True)
    if t["content-transfer-encoding"].lower() in ("base64", "quoted-printable"):
        assert got == text
    else:  # sent as text: MIME's canonical line break is CRLF
        assert got.replace(b"\r\n", b"\n") == text


# --------------------------------------------------------------------------------------------
# libtern: a C program built against the installed library

C_PROGRAM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tern/client.h>

#if TERN_CLIENT_API_VERSION != 1
#error "TERN_CLIENT_API_VERSION is not 1"
#endif

static void transcript(void *arg, char dir, const char *line, size_t len)
{
    fprintf((FILE *)arg, "%c: %.*s\n", dir, (int)len, line);
}

static void show(const char *what, const struct tern_reply *r)
{
    printf("%s %d %s %s|", what, r->code, r->enh[0] ? r->enh : "-", tern_class_name(r->cls));
    for (const char *s = tern_reply_text(r); *s; s++)
        putchar(*s == '\n' ? '|' : *s);
    putchar('\n');
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t n = 0, k;
    char tmp[8192];
    if (!f)
        return NULL;
    while ((k = fread(tmp, 1, sizeof tmp, f)) > 0) {
        char *nb = realloc(buf, n + k);
        if (!nb) {
            free(buf);
            fclose(f);
            return NULL;
        }
        buf = nb;
        memcpy(buf + n, tmp, k);
        n += k;
    }
    fclose(f);
    *len = n;
    return buf;
}

/* client HOST PORT starttls|implicit CAFILE USER MECH MSGFILE RCPT...; the password in
 * $TERN_TEST_PASSWORD. On one connection: AUTH, then the message three times: with
 * tern_send_message, with tern_send_file, and with tern_mail/tern_rcpt/tern_data_begin and
 * tern_data_write in pieces of 1, 2, 3 ... octets, then tern_quit. */
int main(int argc, char **argv)
{
    if (argc < 9) {
        fprintf(stderr, "usage: client HOST PORT MODE CAFILE USER MECH MSGFILE RCPT...\n");
        return 2;
    }
    const char *user = argv[5], *mech = argv[6], *path = argv[7];
    const char *const *rcpts = (const char *const *)argv + 8;
    size_t n = (size_t)(argc - 8), len = 0;
    Dl_info di;
    if (dladdr((void *)tern_connect, &di) && di.dli_fname)
        printf("lib %s\n", di.dli_fname);
    printf("version %s\n", tern_version());

    struct tern_client_opts o = {0};
    o.ca_file = argv[4];
    o.helo_name = "libtern.client.test";
    o.transcript = transcript;
    o.transcript_arg = stderr;
    o.timeouts.connect = o.timeouts.greeting = o.timeouts.other = 20000;
    o.timeouts.mail = o.timeouts.rcpt = o.timeouts.data_init = o.timeouts.data_end = 20000;
    enum tern_tls tls = strcmp(argv[3], "implicit") == 0 ? TERN_TLS_IMPLICIT : TERN_TLS_STARTTLS;
    struct tern_client *c = tern_client_new(&o);
    struct tern_reply r = {0};
    struct tern_send_result res = {0};
    char *msg = NULL;
    int rc = 1;
    if (!c || !(msg = slurp(path, &len)))
        return 3;
    if (tern_connect(c, argv[1], argv[2], tls, &r) != 0) {
        show("connect", &r);
        goto out;
    }
    if (tls == TERN_TLS_IMPLICIT && tern_ehlo(c, NULL, &r) != 0) {
        show("ehlo", &r);
        goto out;
    }
    struct tern_tls_info ti;
    printf("tls %d\n", tern_is_tls(c));
    if (tern_tls_info(c, &ti) == 0)
        printf("tlsinfo %s verified=%d\n", ti.protocol, ti.verified);
    printf("offered %s\n", tern_caps(c)->auth);
    const char *pw = getenv("TERN_TEST_PASSWORD");
    int k = tern_auth(c, mech, user, pw ? pw : "", &r);
    show("auth", &r);
    if (k != 0)
        goto out;

    k = tern_send_message(c, user, rcpts, n, msg, len, &res);
    show("mail", &res.mail);
    for (size_t i = 0; i < res.nrcpt; i++)
        show("rcpt", &res.rcpt[i]);
    show("final", &res.final);
    printf("accepted %zu\n", res.accepted);
    if (k != 0)
        goto out;

    FILE *f = fopen(path, "rb");
    if (!f)
        goto out;
    k = tern_send_file(c, user, rcpts, n, f, &res);
    fclose(f);
    show("file-final", &res.final);
    printf("file-accepted %zu\n", res.accepted);
    if (k != 0)
        goto out;

    if (tern_mail(c, user, NULL, &r) != 0) {
        show("pieces-mail", &r);
        goto out;
    }
    if (tern_rcpt(c, rcpts[0], NULL, &r) != 0) {
        show("pieces-rcpt", &r);
        goto out;
    }
    if (tern_data_begin(c, &r) != 0) {
        show("pieces-data", &r);
        goto out;
    }
    for (size_t off = 0, step = 1; off < len; off += step, step = step % 7 + 1) {
        size_t m = len - off < step ? len - off : step;
        if (tern_data_write(c, msg + off, m, &r) != 0) {
            show("pieces-write", &r);
            goto out;
        }
    }
    k = tern_data_end(c, &r);
    show("pieces-final", &r);
    if (k != 0)
        goto out;

    k = tern_quit(c, &r);
    show("quit", &r);
    printf("connected %d\n", tern_is_connected(c));
    rc = k == 0 ? 0 : 1;
out:
    free(msg);
    tern_send_result_free(&res);
    tern_reply_free(&r);
    tern_free(c);
    return rc;
}
"""


def header_functions() -> set[str]:
    text = (REPO / "include" / "tern" / "client.h").read_text()
    return set(re.findall(r"\b(tern_[a-z_]+)\s*\(", text)) - {"tern_transcript_fn"}


@pytest.fixture(scope="module")
def installed():
    """`make install` of the tree $TERND was built in (BUILD = its directory) under a temporary
    DESTDIR with PREFIX=/usr. `-o all`: install what is built there without remaking it, so
    edits elsewhere in the tree never rebuild (or break) the binaries under test mid-run."""
    build = ternd_binary().parent
    try:
        build_arg = str(build.relative_to(REPO))
    except ValueError:
        build_arg = str(build)
    for f in ("libtern.a", "libtern.so.0"):
        if not (build / f).exists():
            pytest.fail(f"{build / f} is missing: build libtern (make BUILD={build_arg} all)",
                        pytrace=False)
    dest = Path(tempfile.mkdtemp(prefix="tern-it-install-", dir="/tmp"))
    p = subprocess.run(["make", "--no-print-directory", "-o", "all", f"BUILD={build_arg}",
                        f"DESTDIR={dest}", "PREFIX=/usr", "install"], cwd=REPO,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, f"make install failed:\n{p.stdout}\n{p.stderr}"
    yield dest
    shutil.rmtree(dest, ignore_errors=True)


def pkg_config(dest: Path, *args) -> list[str]:
    env = dict(os.environ, PKG_CONFIG_PATH=str(dest / "usr/lib/pkgconfig"),
               PKG_CONFIG_SYSROOT_DIR=str(dest))  # the staged tree stands for /
    env.pop("PKG_CONFIG_LIBDIR", None)
    p = subprocess.run(["pkg-config", *args, "libtern"], env=env, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return p.stdout.split()


def san_flags() -> list[str]:
    # an ASan/UBSan build's libtern needs the sanitizer runtimes in the program too
    if os.environ.get("TERN_SANITIZED"):
        return ["-fsanitize=address,undefined", "-fno-omit-frame-pointer"]
    return []


@pytest.fixture(scope="module")
def c_clients(installed, tmp_path_factory):
    """{"shared": path, "static": path}: the C program linked both ways."""
    d = tmp_path_factory.mktemp("libtern-c")
    src = d / "client.c"
    src.write_text(C_PROGRAM)
    cflags = pkg_config(installed, "--cflags")
    assert f"-I{installed}/usr/include" in cflags, cflags
    libs = pkg_config(installed, "--libs")
    assert f"-L{installed}/usr/lib" in libs and "-ltern" in libs, libs
    cc = os.environ.get("CC", "cc")
    base = [cc, "-std=c17", "-Wall", "-Wextra", "-Werror", "-O1", "-g", *san_flags()]
    out = {}
    shared = d / "client-shared"
    p = subprocess.run([*base, "-o", str(shared), str(src), *cflags, *libs,
                        f"-Wl,-rpath,{installed}/usr/lib"], capture_output=True, text=True)
    assert p.returncode == 0, f"{p.args}\n{p.stderr}"
    out["shared"] = shared
    # libtern.a: -l:libtern.a instead of -ltern, the rest from the --static line (its
    # Requires.private and Libs.private); the system libraries stay shared (Debian's libgsasl.a
    # needs GSS-API symbols its own .pc does not list, so a fully -static link cannot work here)
    slibs = [("-l:libtern.a" if x == "-ltern" else x)
             for x in pkg_config(installed, "--static", "--libs")]
    assert "-l:libtern.a" in slibs and "-lssl" in slibs and "-lgsasl" in slibs, slibs
    static = d / "client-static"
    p = subprocess.run([*base, "-o", str(static), str(src), *cflags, *slibs],
                       capture_output=True, text=True)
    assert p.returncode == 0, f"{p.args}\n{p.stderr}"
    out["static"] = static
    return out


def needed(binary: Path) -> list[str]:
    p = subprocess.run(["readelf", "-d", str(binary)], capture_output=True, text=True, check=True)
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", p.stdout)


def test_libtern_install_exports_only_the_api(installed):
    lib = installed / "usr/lib"
    assert (lib / "libtern.so").resolve() == (lib / "libtern.so.0").resolve()
    assert (installed / "usr/include/tern/client.h").read_bytes() == \
        (REPO / "include/tern/client.h").read_bytes()
    assert (installed / "usr/share/man/man3/libtern.3").is_file()
    p = subprocess.run(["readelf", "-d", str(lib / "libtern.so.0")], capture_output=True,
                       text=True, check=True)
    assert "Library soname: [libtern.so.0]" in p.stdout, p.stdout
    p = subprocess.run(["nm", "-D", "--defined-only", str(lib / "libtern.so.0")],
                       capture_output=True, text=True, check=True)
    exported = {line.split()[-1].split("@")[0] for line in p.stdout.splitlines()
                if line.split()[-1] != "LIBTERN_0"}
    assert exported == header_functions(), (
        f"exported but not in client.h: {sorted(exported - header_functions())}; "
        f"in client.h but not exported: {sorted(header_functions() - exported)}")
    assert pkg_config(installed, "--modversion") == [
        re.search(r'TERN_VERSION "([^"]+)"', (REPO / "src/util/version.h").read_text()).group(1)]


def test_libtern_programs_linked_as_asked(c_clients, installed):
    assert "libtern.so.0" in needed(c_clients["shared"])
    assert not any(n.startswith("libtern") for n in needed(c_clients["static"]))
    p = subprocess.run(["nm", "--defined-only", str(c_clients["static"])], capture_output=True,
                       text=True, check=True)
    assert re.search(r" T tern_send_message$", p.stdout, re.M), "libtern.a not linked in"


@pytest.mark.parametrize("link", ["shared", "static"])
@pytest.mark.parametrize("mode,mech,user", [
    ("starttls", "PLAIN", "alice@example.org"),
    ("starttls", "SCRAM-SHA-256", "carol@example.net"),
    ("implicit", "LOGIN", "bob@example.org"),
])
def test_libtern_program_delivers(srv, c_clients, installed, link, mode, mech, user, tmp_path):
    # bare LF, a bare CR, CRLF, dot lines and no final line break: normalised and dot-stuffed
    # by libtern, and delivered as the normalised octets
    raw = (f"From: <{user}>\nTo: <alice@example.org>\nSubject: libtern {link} {mech}\n"
           f"Message-ID: <{os.urandom(8).hex()}@client.test>\n\n").encode() + \
        b"line\r\n.\n..two\nbare\rcr\n" + "ü 8-bit\n".encode() + b"x" * 900 + b"\n.\nend"
    f = tmp_path / "msg.eml"
    f.write_bytes(raw)
    port = srv.submission_port if mode == "starttls" else srv.smtps_port
    rcpts = ["alice@example.org", "nobody@example.org"]
    before = snapshot(srv, "alice@example.org")
    p = subprocess.run([str(c_clients[link]), "127.0.0.1", str(port), mode, str(srv.cert_path),
                        user, mech, str(f), *rcpts], capture_output=True, timeout=60,
                       env=dict(os.environ, TERN_TEST_PASSWORD=PW[user]))
    out = p.stdout.decode()
    assert p.returncode == 0, describe(p)
    lib = re.search(r"^lib (.+)$", out, re.M).group(1)
    if link == "shared":  # the staged copy, not some other libtern
        assert Path(lib).resolve() == (installed / "usr/lib/libtern.so.0").resolve(), lib
    else:
        assert Path(lib).resolve() == c_clients[link].resolve(), lib
    assert "tls 1" in out and "verified=1" in out, out
    assert re.search(r"^auth 235 2\.7\.0 positive\|", out, re.M), out
    assert re.search(r"^rcpt 250 2\.1\.5 positive\|", out, re.M), out
    assert re.search(r"^rcpt 550 5\.1\.1 negative\|.*nobody@example\.org", out, re.M), out
    for what in ("final", "file-final", "pieces-final"):
        assert re.search(rf"^{what} 250 2\.0\.0 positive\|", out, re.M), out
    assert "accepted 1" in out and "file-accepted 1" in out, out
    assert re.search(r"^quit 221 ", out, re.M) and "connected 0" in out, out
    err = p.stderr.decode(errors="replace")
    assert f"C: AUTH {mech}" in err and "<auth data hidden>" in err, err
    assert "C: STARTTLS" in err if mode == "starttls" else "C: STARTTLS" not in err, err
    assert_no_secret(p, user, PW[user])
    new = new_deliveries(srv, "alice@example.org", before["alice@example.org"], want=3)
    assert len(new) == 3, new
    for d in new:
        assert d.problems() == [], d.problems()
        assert d.return_path == user
        assert b"with ESMTPSA (TLS" in d.received, d.received
        assert d.body == norm(raw), f"{d.path}:\n{d.body!r}\n!=\n{norm(raw)!r}"


# --------------------------------------------------------------------------------------------
# a real Postfix

def _bench_kit() -> Path:
    """$BENCH_KIT, else the shared kit beside the work folder this checkout is in or below
    (a CI clone may sit elsewhere than the work folder)."""
    if os.environ.get("BENCH_KIT"):
        return Path(os.environ["BENCH_KIT"])
    for up in [REPO, *REPO.parents, Path("/work/main")]:
        kit = up.parent / "shared" / "bench"
        if (kit / "peers.sh").exists():
            return kit
    return REPO.parent / "shared" / "bench"


BENCH_KIT = _bench_kit()
PEERS = BENCH_KIT / "peers.sh"
PF_TRACE_RE = re.compile(rb"\A(?:(?:Return-Path|X-Original-To|Delivered-To|Received):[^\n]*\n"
                         rb"(?:[ \t][^\n]*\n)*)+")


class Postfix:
    def __init__(self):
        if os.geteuid() != 0:
            pytest.fail("the Postfix tests need root: peers.sh runs Postfix's master as root "
                        "(CI runs as root)", pytrace=False)
        if not PEERS.exists():
            pytest.fail(f"no {PEERS}: the shared bench kit (set BENCH_KIT)", pytrace=False)
        self.state = Path(tempfile.mkdtemp(prefix="tern-it-postfix-", dir="/tmp"))
        os.chmod(self.state, 0o755)  # postfix (the user) must reach its queue and data dirs
        self.port = free_port()
        self.env = dict(os.environ, BENCH_STATE=str(self.state), POSTFIX_PORT=str(self.port))
        self.etc = self.state / "postfix" / "etc"
        self.maildir = self.state / "postfix" / "mail" / "Maildir"
        self.log = self.state / "postfix" / "maillog"
        self.started = False

    def peers(self, *args, timeout=300):
        return subprocess.run([str(PEERS), *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout)

    def start(self):
        p = self.peers("start", "postfix")
        self.started = True  # whatever it got to, stop takes it down by its own pid file
        assert p.returncode == 0, f"peers.sh start postfix failed:\n{p.stdout}\n{p.stderr}\n" \
                                  + self.log_text()
        return self

    def enable_tls(self):
        """The same certificate as ternd's, and STARTTLS offered (smtpd_tls_security_level =
        may), then postfix reload."""
        cert, key = self.state / "tls" / "cert.pem", self.state / "tls" / "key.pem"
        make_cert(cert, key)
        os.chmod(cert.parent, 0o755)
        subprocess.run(["postconf", "-c", str(self.etc), "-e", f"smtpd_tls_cert_file={cert}",
                        f"smtpd_tls_key_file={key}", "smtpd_tls_security_level=may"],
                       check=True, capture_output=True)
        before = self.log_text().count("reload -- version")
        subprocess.run(["postfix", "-c", str(self.etc), "reload"], check=True,
                       capture_output=True)
        deadline = time.monotonic() + 20
        while self.log_text().count("reload -- version") <= before:
            assert time.monotonic() < deadline, "postfix did not reload:\n" + self.log_text()
            time.sleep(0.1)
        return cert

    def stop(self):
        if self.started:
            self.peers("stop", "postfix")
        shutil.rmtree(self.state, ignore_errors=True)

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def files(self) -> set[Path]:
        return {p for d in ("new", "cur") if (self.maildir / d).is_dir()
                for p in (self.maildir / d).iterdir()}

    def wait_new(self, before: set, timeout=30.0) -> list[Path]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            new = sorted(self.files() - before)
            if new:
                time.sleep(0.2)  # anything else that was going to land
                return sorted(self.files() - before)
            time.sleep(0.1)
        return []


@pytest.fixture(scope="module")
def postfix():
    pf = Postfix()
    try:
        yield pf.start()
    finally:
        pf.stop()


def postfix_raw(n: int) -> bytes:
    # fully qualified addresses, a Date and a Message-ID: Postfix's cleanup adds or rewrites
    # nothing in the header of a message like this
    return (b"From: Sender <sender@client.test>\r\nTo: <rcpt@example.test>\r\n"
            b"Subject: to postfix %d\r\nDate: Mon, 01 Jan 2024 00:00:00 +0000\r\n"
            b"Message-ID: <postfix-%d-%s@client.test>\r\n\r\n"
            % (n, n, os.urandom(6).hex().encode())) + \
        b".\r\n..\r\n.leading dot\r\nmixed\nends\r\n" + "ünïcode\r\n".encode() + \
        b"trailing  \r\n" + b"z" * 990 + b"\r\nno final break"


def assert_postfix_exact(pf: Postfix, path: Path, raw: bytes):
    """virtual(8) writes the Maildir file with LF line ends after its Return-Path,
    X-Original-To, Delivered-To and Received fields: what follows is the message, as sent
    (CRLF normalised) with CRLF written as LF."""
    data = path.read_bytes()
    m = PF_TRACE_RE.match(data)
    assert m and b"Received: from " in m.group(0), data[:600]
    body = data[m.end():]
    want = norm(raw).replace(b"\r\n", b"\n")
    assert body == want, f"{path}:\n{body!r}\n!=\n{want!r}"


@pytest.mark.parametrize("bdat", [False, True], ids=["DATA", "BDAT"])
def test_postfix_no_tls_byte_exact(postfix, bdat, tmp_path):
    raw = postfix_raw(1 + bdat)
    f = tmp_path / "msg.eml"
    f.write_bytes(raw)
    before = postfix.files()
    p = tern_send("--server", f"127.0.0.1:{postfix.port}", "--no-tls", "--from", SENDER,
                  "--to", "rcpt@example.test", "--raw", str(f), "--verbose",
                  *(["--bdat"] if bdat else []))
    assert p.returncode == 0, describe(p) + postfix.log_text()[-2000:]
    err = p.stderr.decode()
    assert "S: 220 postfix.bench.test ESMTP" in err, err  # it is Postfix we talked to
    assert ("C: BDAT" in err) == bdat and ("C: DATA" in err) != bdat, err
    new = postfix.wait_new(before)
    assert len(new) == 1, (new, postfix.log_text()[-2000:])
    assert_postfix_exact(postfix, new[0], raw)


def test_postfix_starttls(postfix, tmp_path):
    """The peer as peers.sh makes it offers no STARTTLS: `tern send` (STARTTLS by default)
    refuses to go on in clear (exit 75, nothing sent). With STARTTLS turned on in that Postfix
    (ternd's test certificate), it delivers over TLS, verified with --ca-file."""
    raw = postfix_raw(3)
    f = tmp_path / "msg.eml"
    f.write_bytes(raw)
    before = postfix.files()
    common = ["--from", SENDER, "--to", "rcpt@example.test", "--raw", str(f), "--verbose"]
    p = tern_send("--server", f"127.0.0.1:{postfix.port}", *common)
    err = p.stderr.decode()
    if "250-STARTTLS" not in err:
        assert p.returncode == 75, describe(p)
        assert "does not offer STARTTLS" in err, err
        assert "C: MAIL FROM" not in err, err
        assert postfix.wait_new(before, timeout=1.0) == []
        cert = postfix.enable_tls()
    else:  # a kit that already offers it
        cert = None
    ca = ["--ca-file", str(cert)] if cert else ["--insecure"]
    for n, extra in enumerate(([], ["--bdat"])):
        raw = postfix_raw(4 + n)
        f.write_bytes(raw)
        before = postfix.files()
        p = tern_send("--server", f"127.0.0.1:{postfix.port}", *ca, *common, *extra)
        assert p.returncode == 0, describe(p) + postfix.log_text()[-2000:]
        err = p.stderr.decode()
        assert "C: STARTTLS" in err and "S: 220 2.0.0" in err, err
        assert "(TLS)" in p.stdout.decode(), describe(p)
        new = postfix.wait_new(before)
        assert len(new) == 1, (new, postfix.log_text()[-2000:])
        assert_postfix_exact(postfix, new[0], raw)
        assert re.search(r"starttls=1 .*quit=1", postfix.log_text()), postfix.log_text()[-2000:]
