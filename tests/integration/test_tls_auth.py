"""STARTTLS, implicit TLS (smtps), SMTP AUTH (PLAIN, LOGIN, SCRAM-SHA-256), relay and send-as
rules, against a real ternd on 127.0.0.1 with a self-signed certificate (made by the fixtures with
the openssl CLI: EC P-256, CN and SAN mx.test.example, SAN IP 127.0.0.1; clients verify it).

Failed AUTHs are throttled per client IP and per user, so every connection here comes from its
own loopback address (fresh_ip()) and every test that fails an AUTH on purpose uses a user no
other test fails with: one test's failures never delay or block another's.

Before EHLO the existing contract gives no enhanced status codes at all while this one writes
"503 5.5.1" for AUTH before EHLO and for MAIL right after the TLS handshake: those two replies
are checked for 503 with either 5.5.1 or no enhanced code (expect_503_before_ehlo).
"""
from __future__ import annotations

import base64
import hmac
import itertools
import json
import os
import re
import smtplib
import socket
import ssl
import subprocess
import threading
import time
import warnings

import pytest

from tern_it import (DEFAULT_ALIASES, HOSTNAME, Conn, crypt_hash, make_message, message_id_of,
                     scram_hash, scram_keys, sha512_crypt_hash, tern_binary)

SENDER = "sender@client.test"
FOREIGN = "user@other.test"

PW = {
    "alice@example.org": "Alice pw: 1 2 3",
    "bob@example.org": "bob-secret",
    "carol@example.net": "carol scram pw",
    "erin@example.org": "erin-sha512",
    "locked@example.org": "locked-pw",
    "locked2@example.org": "locked2-pw",
    "root@example.org": "root-pw",
    "mallory@example.org": "mallory-pw",
    "victim@example.org": "victim-pw",
    "sam@example.org": "sam scram",
}

USERS = [
    ("alice@example.org", "Alice Liddell", "", crypt_hash(PW["alice@example.org"])),
    ("bob@example.org", "Bob Smith", "", crypt_hash(PW["bob@example.org"])),
    ("carol@example.net", "Carol Smith", "", scram_hash(PW["carol@example.net"])),
    ("dave@example.org", "Dave Mover", "moved=dave@elsewhere.test"),
    ("erin@example.org", "Erin Sha", "", sha512_crypt_hash(PW["erin@example.org"])),
    ("locked@example.org", "Locked Out", "nologin", crypt_hash(PW["locked@example.org"])),
    ("locked2@example.org", "Locked Too", "nologin", crypt_hash(PW["locked2@example.org"])),
    ("root@example.org", "The Admin", "admin", crypt_hash(PW["root@example.org"])),
    ("mallory@example.org", "Mallory", "", crypt_hash(PW["mallory@example.org"])),
    ("victim@example.org", "Victim", "", crypt_hash(PW["victim@example.org"])),
    ("sam@example.org", "Sam Scram", "", scram_hash(PW["sam@example.org"], 10000)),
]
ALIASES = DEFAULT_ALIASES + [
    "info@example.net: alice@example.org",
    "sales@example.org: bob",
]
MECHS = {"PLAIN", "LOGIN", "SCRAM-SHA-256"}

# --------------------------------------------------------------------------------------------
# helpers

_ip_counter = itertools.count(0)


def fresh_ip() -> str:
    """A loopback address no connection of this module has used yet: 127.0.1.1, 127.0.1.2 ..."""
    n = next(_ip_counter)
    return f"127.0.{1 + n // 250}.{1 + n % 250}"


def b64(x) -> str:
    return base64.b64encode(x if isinstance(x, bytes) else x.encode()).decode()


def plain_ir(user, pw, authzid="") -> str:
    return b64(f"{authzid}\0{user}\0{pw}")


def auth_plain(c: Conn, user, pw=None, spec="235 2.7.0", authzid=""):
    pw = PW[user] if pw is None else pw
    return c.expect(f"AUTH PLAIN {plain_ir(user, pw, authzid)}", spec)


def auth_login(c: Conn, user, pw=None, spec="235 2.7.0"):
    pw = PW[user] if pw is None else pw
    c.expect("AUTH LOGIN", "334")
    c.expect(b64(user), "334")
    return c.expect(b64(pw), spec)


def saslname(s: str) -> str:
    return s.replace("=", "=3D").replace(",", "=2C")


def auth_scram(c: Conn, user, pw=None, initial=True, authzid=""):
    """The client side of SCRAM-SHA-256 (RFC 5802, 7677) over SMTP AUTH (RFC 4954): checks the
    server's nonce and signature; returns the final reply (235 on success)."""
    pw = PW[user] if pw is None else pw
    cnonce = b64(os.urandom(18))
    gs2 = "n," + (f"a={saslname(authzid)}" if authzid else "") + ","
    first_bare = f"n={saslname(user)},r={cnonce}"
    if initial:
        r = c.expect(f"AUTH SCRAM-SHA-256 {b64(gs2 + first_bare)}", "334")
    else:
        r = c.expect("AUTH SCRAM-SHA-256", "334")
        assert r.lines[0].strip() == "", f"SCRAM: the server speaks first? {r}"
        r = c.expect(b64(gs2 + first_bare), "334")
    server_first = base64.b64decode(r.lines[0]).decode()
    attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
    assert attrs["r"].startswith(cnonce) and len(attrs["r"]) > len(cnonce), server_first
    salt, iters = base64.b64decode(attrs["s"]), int(attrs["i"])
    assert iters >= 4096, f"SCRAM iteration count {iters} < 4096 (RFC 7677)"
    _, client_key, stored_key, server_key = scram_keys(pw, salt, iters)
    final_wo_proof = f"c={b64(gs2)},r={attrs['r']}"
    auth_msg = f"{first_bare},{server_first},{final_wo_proof}".encode()
    sig = hmac.new(stored_key, auth_msg, "sha256").digest()
    proof = bytes(a ^ b for a, b in zip(client_key, sig))
    r = c.cmd(b64(f"{final_wo_proof},p={b64(proof)}"))
    if r.code != 334:
        return r
    server_final = base64.b64decode(r.lines[0]).decode()
    want = "v=" + b64(hmac.new(server_key, auth_msg, "sha256").digest())
    assert server_final == want, f"SCRAM server signature {server_final!r}, expected {want!r}"
    return c.cmd("")


def done(c: Conn):
    """Ends a test's session: a NOOP must still be answered 250 (no stray reply is pending),
    then the client hangs up. QUIT itself is tested once per listener (test_quit_221)."""
    c.expect("NOOP", "250")
    c.close()


def ehlo_keywords(r) -> dict:
    return {l.split()[0].upper(): l.split()[1:] for l in r.lines[1:] if l.strip()}


def expect_503_before_ehlo(c: Conn, line):
    c.check_enhanced = False
    try:
        r = c.expect(line, "503")
    finally:
        c.check_enhanced = True
    assert r.enh in (None, "5.5.1"), f"503 with {r.enh}, expected 5.5.1 (or none):\n{r}"
    return r


def port_of(srv, listener):
    return {"smtp": srv.smtp_port, "submission": srv.submission_port,
            "smtps": srv.smtps_port}[listener]


def clear_conn(srv, listener="smtp", ehlo=True, **kw) -> Conn:
    c = Conn(port_of(srv, listener), bind=kw.pop("bind", None) or fresh_ip(), **kw)
    if ehlo:
        c.ehlo()
    return c


def tls_conn(srv, listener="submission", ehlo=True, **kw) -> Conn:
    """EHLO, STARTTLS, handshake (certificate verified), EHLO again; or, on smtps, the handshake
    and one EHLO."""
    if listener == "smtps":
        c = Conn(srv.smtps_port, bind=kw.pop("bind", None) or fresh_ip(),
                 tls=srv.tls_context(), **kw)
    else:
        c = clear_conn(srv, listener, **kw)
        c.starttls(srv.tls_context())
    if ehlo:
        c.ehlo()
    return c


def authed(srv, user, listener="submission", mech="PLAIN") -> Conn:
    c = tls_conn(srv, listener)
    {"PLAIN": auth_plain, "LOGIN": auth_login}[mech](c, user)
    return c


def unfold(received: bytes) -> str:
    return re.sub(rb"\r?\n[ \t]+", b" ", received).decode(errors="replace").strip()


def find_by_msgid(srv, addr, msgid):
    return [d for d in srv.mailbox(addr) if d.body is not None and message_id_of(d.body) == msgid]


def delivered_once(srv, addr, msgid, msg):
    found = find_by_msgid(srv, addr, msgid)
    assert len(found) == 1, f"{addr}: expected 1 copy of {msgid}, found {len(found)}"
    assert found[0].problems() == [], found[0].problems()
    assert found[0].body == msg
    return found[0]


def spool_entries(srv) -> dict:
    """{id: envelope dict} of complete entries in DATA_DIR/spool/queue/ (ID.env present)."""
    q = srv.data_dir / "spool" / "queue"
    out = {}
    if q.is_dir():
        for env in q.glob("*.env"):
            out[env.name[:-4]] = json.loads(env.read_text())
    return out


def env_rcpts(env) -> list[str]:
    return [r if isinstance(r, str) else (r.get("addr") or r.get("to") or r.get("rcpt"))
            for r in env["rcpts"]]


def run_tern(srv, *args, input=None, timeout=30):
    """`tern ARGS... -c CONFIG` ($TERN_CONF set too)."""
    cmd = [str(tern_binary()), *args, "-c", str(srv.conf_path)]
    env = dict(os.environ, TERN_CONF=str(srv.conf_path))
    return subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout,
                          env=env)


# --------------------------------------------------------------------------------------------
# servers

@pytest.fixture(scope="module")
def _tls_srv(module_ternd_factory):
    return module_ternd_factory(users=USERS, aliases=ALIASES, smtps=True, name="tls")


@pytest.fixture
def tls_srv(_tls_srv):
    """A certificate, an smtps listener, plaintext = no (the default)."""
    return _tls_srv.ensure_running()


@pytest.fixture(scope="module")
def _loop_srv(module_ternd_factory):
    return module_ternd_factory(users=USERS, aliases=ALIASES, tls=True,
                                config={"auth.plaintext": "loopback"}, name="loopback")


@pytest.fixture
def loop_srv(_loop_srv):
    """A certificate and plaintext = loopback: AUTH in clear from 127.0.0.0/8."""
    return _loop_srv.ensure_running()


@pytest.fixture(scope="module")
def _notls_srv(module_ternd_factory):
    return module_ternd_factory(users=USERS, aliases=ALIASES, name="notls")


@pytest.fixture
def notls_srv(_notls_srv):
    """No [tls] at all."""
    return _notls_srv.ensure_running()


# --------------------------------------------------------------------------------------------
# EHLO and STARTTLS

@pytest.mark.parametrize("listener", ["smtp", "submission"])
def test_ehlo_in_clear_offers_starttls_not_auth(tls_srv, listener):
    with clear_conn(tls_srv, listener, ehlo=False) as c:
        kw = ehlo_keywords(c.ehlo())
        assert "STARTTLS" in kw, kw
        assert "AUTH" not in kw, f"AUTH offered in clear with plaintext = no: {kw}"
        done(c)


@pytest.mark.parametrize("listener", ["smtp", "submission", "smtps"])
def test_ehlo_under_tls_offers_auth_not_starttls(tls_srv, listener):
    with tls_conn(tls_srv, listener, ehlo=False) as c:
        kw = ehlo_keywords(c.ehlo())
        assert "STARTTLS" not in kw, f"STARTTLS offered under TLS: {kw}"
        assert set(kw.get("AUTH", [])) == MECHS, f"AUTH under TLS: {kw.get('AUTH')}"
        done(c)


def test_no_certificate_no_starttls_454_and_auth_538(notls_srv):
    with clear_conn(notls_srv, ehlo=False) as c:
        kw = ehlo_keywords(c.ehlo())
        assert "STARTTLS" not in kw and "AUTH" not in kw, kw
        c.expect("STARTTLS", "454 4.7.0")
        c.expect(f"AUTH PLAIN {plain_ir('alice@example.org', PW['alice@example.org'])}",
                 "538 5.7.11")
        c.expect("NOOP", "250 2.0.0")
        done(c)


def test_plaintext_loopback_offers_auth_in_clear(loop_srv):
    with clear_conn(loop_srv, ehlo=False) as c:
        kw = ehlo_keywords(c.ehlo())
        assert "STARTTLS" in kw and set(kw.get("AUTH", [])) == MECHS, kw
        auth_plain(c, "alice@example.org")
        done(c)


@pytest.mark.parametrize("listener", ["smtp", "submission", "smtps"])
@pytest.mark.parametrize("authenticated", [False, True], ids=["anon", "auth"])
def test_quit_221(tls_srv, listener, authenticated):
    """QUIT under TLS: 221, then the server closes (the 221 must not be lost with the TLS
    state)."""
    with tls_conn(tls_srv, listener) as c:
        if authenticated:
            auth_plain(c, "alice@example.org")
        c.expect("QUIT", "221 2.0.0")
        c.expect_eof()


@pytest.mark.parametrize("arg", ["now", "TLS", "x"])
def test_starttls_with_argument_501(tls_srv, arg):
    with clear_conn(tls_srv) as c:
        c.expect(f"STARTTLS {arg}", "501 5.5.4")
        c.starttls(tls_srv.tls_context())  # the session goes on; a plain STARTTLS still works
        c.ehlo()
        done(c)


@pytest.mark.parametrize("listener", ["submission", "smtps"])
def test_starttls_under_tls_503(tls_srv, listener):
    with tls_conn(tls_srv, listener) as c:
        c.expect("STARTTLS", "503 5.5.1")
        c.expect("NOOP", "250 2.0.0")
        done(c)


def test_starttls_resets_session(tls_srv):
    """After the handshake the client must EHLO again; what it said before is forgotten."""
    with clear_conn(tls_srv, "smtp", ehlo=False) as c:
        c.ehlo("first.client.test")
        c.starttls(tls_srv.tls_context())
        expect_503_before_ehlo(c, f"MAIL FROM:<{SENDER}>")
        kw = ehlo_keywords(c.ehlo("second.client.test"))
        assert "STARTTLS" not in kw, kw
        c.expect(f"MAIL FROM:<{SENDER}>", "250 2.1.0")
        c.expect("RCPT TO:<carol@example.net>", "250 2.1.5")
        msgid, msg = make_message(to="carol@example.net", subject="after STARTTLS")
        c.data(msg)
        version, cipher = c.sock.version(), c.sock.cipher()[0]
        done(c)
    rcvd = unfold(delivered_once(tls_srv, "carol@example.net", msgid, msg).received)
    assert rcvd.startswith("Received: from second.client.test "), rcvd
    assert re.search(r" with ESMTPS\b", rcvd), rcvd
    assert version in rcvd and cipher in rcvd, f"no {version} / {cipher} in {rcvd}"


@pytest.mark.parametrize("injected", [b"NOOP\r\n",
                                      b"EHLO evil.test\r\nMAIL FROM:<evil@client.test>\r\n",
                                      b"RSET\r\nNOOP\r\nNOOP\r\nQUIT\r\n"],
                         ids=["noop", "ehlo-mail", "rset-noops-quit"])
def test_starttls_pipelined_plaintext_discarded_cve_2011_0411(tls_srv, injected):
    """STARTTLS and more commands in one write: the commands after STARTTLS were sent in clear
    (an attacker could have put them there) and must be thrown away, never executed, neither
    before nor after the handshake."""
    with clear_conn(tls_srv, "smtp") as c:
        c.send_raw(b"STARTTLS\r\n" + injected, kinds=["STARTTLS"])
        r = c.reply()
        assert r.matches("220 2.0.0 Ready to start TLS"), r
        assert c.buf == b"", f"a reply in clear after 220: {c.buf!r}"
        try:
            c.sock = tls_srv.tls_context().wrap_socket(c.sock, server_hostname=HOSTNAME)
        except (ssl.SSLError, OSError) as e:
            pytest.fail(f"handshake failed after an injected {injected!r} (was it answered in "
                        f"clear?): {e}\n{c.transcript()}")
        c.esmtp, c.mode = False, "after STARTTLS"
        r = c.ehlo()
        assert r.lines[0].startswith(HOSTNAME) and len(r.lines) > 2, \
            f"the first reply after the handshake is not EHLO's:\n{r}\n{c.transcript()}"
        c.expect("RCPT TO:<alice@example.org>", "503 5.5.1")  # no MAIL was executed
        c.expect("NOOP", "250 2.0.0")
        c.expect("NOOP", "250 2.0.0")  # and nothing else is queued up behind
        c.close()


def test_starttls_then_garbage_instead_of_handshake(tls_srv):
    """A client that answers 220 with plain text: the connection ends, ternd goes on."""
    with clear_conn(tls_srv, "smtp") as c:
        c.expect("STARTTLS", "220 2.0.0")
        c.send_raw(b"EHLO not.a.handshake\r\n" + b"\x16\x03\x01\x00\x05hello" + b"\r\n")
        c.sock.settimeout(10)
        data = b""
        try:
            while True:
                chunk = c.sock.recv(4096)
                if not chunk:
                    break
                data += chunk
        except (ConnectionResetError, socket.timeout):
            pass
        assert not re.search(rb"(^|\n)[2-5]\d\d[ -]", data), f"an SMTP reply in clear: {data!r}"
    with tls_conn(tls_srv, "smtp") as c2:
        done(c2)


# --------------------------------------------------------------------------------------------
# smtps (implicit TLS, RFC 8314)

def test_smtps_handshake_then_greeting(tls_srv):
    with tls_conn(tls_srv, "smtps", ehlo=False) as c:
        assert c.greeting.matches(f"220 {HOSTNAME}"), c.greeting
        assert c.sock.version() in ("TLSv1.2", "TLSv1.3"), c.sock.version()
        c.ehlo()
        done(c)


def test_smtps_client_speaking_clear_gets_no_smtp(tls_srv):
    with socket.create_connection(("127.0.0.1", tls_srv.smtps_port), timeout=5,
                                  source_address=(fresh_ip(), 0)) as s:
        s.sendall(b"EHLO client.test\r\n")
        data = b""
        try:
            while len(data) < 65536:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        except (ConnectionResetError, socket.timeout):
            pass
    assert b"220" not in data and b"250" not in data, f"smtps spoke SMTP in clear: {data!r}"


def _tls11_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    return ctx


def _client_can_speak_tls11(srv) -> bool:
    """The TLS 1.1 client context works against a TLS 1.1 server of our own: so a failure
    against ternd is ternd's refusal, not our OpenSSL's."""
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        sctx.minimum_version = ssl.TLSVersion.TLSv1_1
    sctx.load_cert_chain(str(srv.cert_path), str(srv.tls_path("key")))
    a, b = socket.socketpair()
    result = {}

    def serve():
        try:
            with sctx.wrap_socket(a, server_side=True) as s:
                result["server"] = s.version()
        except (ssl.SSLError, OSError) as e:
            result["server"] = e
    th = threading.Thread(target=serve)
    th.start()
    try:
        with _tls11_context().wrap_socket(b) as s:
            result["client"] = s.version()
    except (ssl.SSLError, OSError) as e:
        result["client"] = e
    th.join(10)
    a.close()
    b.close()
    return result.get("client") == "TLSv1.1"


@pytest.mark.parametrize("how", ["smtps", "starttls"])
def test_tls11_handshake_fails(tls_srv, how):
    if not _client_can_speak_tls11(tls_srv):
        pytest.skip("this OpenSSL cannot make a TLS 1.1 client handshake at all")
    if how == "smtps":
        with pytest.raises((ssl.SSLError, OSError)):
            Conn(tls_srv.smtps_port, bind=fresh_ip(), tls=_tls11_context()).close()
    else:
        with clear_conn(tls_srv, "submission") as c:
            with pytest.raises((ssl.SSLError, OSError)):
                c.starttls(_tls11_context())
    with tls_conn(tls_srv, "smtps") as c:  # and ternd is fine
        done(c)


@pytest.mark.parametrize("listener", ["smtps", "submission"])
def test_tls12_handshake_works(tls_srv, listener):
    ctx = tls_srv.tls_context(maximum=ssl.TLSVersion.TLSv1_2)
    if listener == "smtps":
        c = Conn(tls_srv.smtps_port, bind=fresh_ip(), tls=ctx)
    else:
        c = clear_conn(tls_srv, listener)
        c.starttls(ctx)
    with c:
        assert c.sock.version() == "TLSv1.2", c.sock.version()
        c.ehlo()
        done(c)


# --------------------------------------------------------------------------------------------
# Received: over TLS

@pytest.mark.parametrize("listener,auth,tls_max", [
    ("smtp", False, None), ("submission", True, None),
    ("smtps", True, None), ("smtp", True, ssl.TLSVersion.TLSv1_2),
], ids=["starttls", "starttls-auth", "smtps-auth", "tls12-auth"])
def test_received_names_protocol_tls_version_and_cipher(tls_srv, listener, auth, tls_max):
    ctx = tls_srv.tls_context(maximum=tls_max) if tls_max else tls_srv.tls_context()
    if listener == "smtps":
        c = Conn(tls_srv.smtps_port, bind=fresh_ip(), tls=ctx)
    else:
        c = clear_conn(tls_srv, listener)
        c.starttls(ctx)
    with c:
        c.ehlo("tls.client.test")
        frm = SENDER
        if auth:
            auth_plain(c, "bob@example.org")
            frm = "bob@example.org"
        msgid, msg = make_message(frm=frm, to="carol@example.net", subject="received over TLS")
        c.expect(f"MAIL FROM:<{frm}>", "250")
        c.expect("RCPT TO:<carol@example.net>", "250")
        c.data(msg)
        version, cipher = c.sock.version(), c.sock.cipher()[0]
        done(c)
    rcvd = unfold(delivered_once(tls_srv, "carol@example.net", msgid, msg).received)
    proto = "ESMTPSA" if auth else "ESMTPS"
    assert re.search(rf" with {proto}\b", rcvd), f"expected 'with {proto}': {rcvd}"
    assert version in rcvd, f"{version} not named: {rcvd}"
    assert cipher in rcvd, f"cipher {cipher} not named: {rcvd}"
    assert f" by {HOSTNAME} " in rcvd and "[127.0." in rcvd, rcvd
    assert PW["bob@example.org"] not in rcvd


# --------------------------------------------------------------------------------------------
# AUTH: refusals

@pytest.mark.parametrize("listener", ["smtp", "submission"])
@pytest.mark.parametrize("line", ["AUTH PLAIN " + plain_ir("alice@example.org", "x"),
                                  "AUTH PLAIN", "AUTH LOGIN", "AUTH SCRAM-SHA-256"])
def test_auth_in_clear_538(tls_srv, listener, line):
    with clear_conn(tls_srv, listener) as c:
        c.expect(line, "538 5.7.11 Encryption required for requested authentication mechanism")
        c.expect("NOOP", "250 2.0.0")  # no SASL exchange was started
        done(c)


def test_auth_before_ehlo_503(tls_srv, loop_srv):
    with tls_conn(tls_srv, "smtps", ehlo=False) as c:
        expect_503_before_ehlo(c, f"AUTH PLAIN {plain_ir('alice@example.org', 'x')}")
        c.ehlo()
        auth_plain(c, "alice@example.org")
        done(c)
    with clear_conn(loop_srv, ehlo=False) as c:
        expect_503_before_ehlo(c, "AUTH LOGIN")
        done(c)
    with clear_conn(tls_srv, "submission", ehlo=False) as c:  # after STARTTLS, before EHLO
        c.ehlo()
        c.starttls(tls_srv.tls_context())
        expect_503_before_ehlo(c, f"AUTH PLAIN {plain_ir('alice@example.org', 'x')}")
        done(c)


@pytest.mark.parametrize("second", ["AUTH PLAIN " + plain_ir("bob@example.org", "bob-secret"),
                                    "AUTH LOGIN", "AUTH SCRAM-SHA-256"])
def test_auth_when_authenticated_503(tls_srv, second):
    with authed(tls_srv, "alice@example.org") as c:
        c.expect(second, "503 5.5.1")
        c.expect("MAIL FROM:<alice@example.org>", "250")  # still alice
        done(c)


def test_auth_during_transaction_503(tls_srv):
    with tls_conn(tls_srv, "smtp") as c:
        c.expect(f"MAIL FROM:<{SENDER}>", "250 2.1.0")
        c.expect(f"AUTH PLAIN {plain_ir('alice@example.org', PW['alice@example.org'])}",
                 "503 5.5.1")
        c.expect("RSET", "250")
        auth_plain(c, "alice@example.org")
        done(c)


@pytest.mark.parametrize("mech", ["CRAM-MD5", "DIGEST-MD5", "GSSAPI", "XOAUTH2", "FOO",
                                  "SCRAM-SHA-1", "SCRAM-SHA-256-PLUS", "PLAINX"])
def test_auth_unknown_mechanism_504(tls_srv, mech):
    with tls_conn(tls_srv, "smtps") as c:
        c.expect(f"AUTH {mech}", "504 5.5.4")
        auth_plain(c, "alice@example.org")  # nothing was started
        done(c)


@pytest.mark.parametrize("where", ["login-user", "login-password", "plain", "scram-first",
                                   "scram-final"])
def test_auth_cancel_501(tls_srv, where):
    with tls_conn(tls_srv, "submission") as c:
        if where.startswith("login"):
            c.expect("AUTH LOGIN", "334")
            if where == "login-password":
                c.expect(b64("alice@example.org"), "334")
        elif where == "plain":
            c.expect("AUTH PLAIN", "334")
        elif where == "scram-first":
            c.expect("AUTH SCRAM-SHA-256", "334")
        else:
            first = f"n,,n=carol@example.net,r={b64(os.urandom(12))}"
            c.expect(f"AUTH SCRAM-SHA-256 {b64(first)}", "334")
        c.expect("*", "501 5.0.0")
        c.expect("MAIL FROM:<alice@example.org>", "530 5.7.0")  # not authenticated
        done(c)


@pytest.mark.parametrize("how", ["initial", "plain-response", "login-user", "login-password"])
@pytest.mark.parametrize("junk", ["!!!!", "YW*=", "=YWxp", "YWxp!ZQ=="],
                         ids=["bangs", "star", "leading-pad", "bang-inside"])
def test_auth_bad_base64_501(tls_srv, how, junk):
    with tls_conn(tls_srv, "submission") as c:
        if how == "initial":
            c.expect(f"AUTH PLAIN {junk}", "501 5.5.2")
        elif how == "plain-response":
            c.expect("AUTH PLAIN", "334")
            c.expect(junk, "501 5.5.2")
        else:
            c.expect("AUTH LOGIN", "334")
            if how == "login-password":
                c.expect(b64("alice@example.org"), "334")
            c.expect(junk, "501 5.5.2")
        c.expect("NOOP", "250 2.0.0")
        done(c)


def test_auth_wrong_password_and_unknown_user_same_535(tls_srv):
    """The same reply for a wrong password and a user who does not exist."""
    texts = []
    for user, pw, mech in [("victim@example.org", "wrong", "PLAIN"),
                           ("ghost1@example.org", "wrong", "PLAIN"),
                           ("ghost3@example.org", "x", "LOGIN")]:
        with tls_conn(tls_srv, "submission") as c:
            f = auth_plain if mech == "PLAIN" else auth_login
            r = f(c, user, pw, spec="535 5.7.8")
            texts.append(r.text)
            c.expect("MAIL FROM:<victim@example.org>", "530 5.7.0")
            done(c)
    assert len(set(texts)) == 1, f"535 texts tell users apart: {texts}"


def test_auth_scram_wrong_password_535(tls_srv):
    with tls_conn(tls_srv, "smtps") as c:
        r = auth_scram(c, "carol@example.net", "not carol's")
        assert r.matches("535 5.7.8"), f"{r}\n{c.transcript()}"
        done(c)


@pytest.mark.parametrize("mech,user", [("PLAIN", "locked@example.org"),
                                       ("LOGIN", "locked2@example.org")])
def test_auth_locked_user_535(tls_srv, mech, user):
    with tls_conn(tls_srv, "submission") as c:
        f = auth_plain if mech == "PLAIN" else auth_login
        f(c, user, spec="535 5.7.8")  # the right password
        c.expect(f"MAIL FROM:<{user}>", "530 5.7.0")
        done(c)


@pytest.mark.parametrize("decoded", ["alice@example.org", "\0alice@example.org",
                                     "\0\0", "\0alice@example.org\0", "a\0b\0c\0d", ""],
                         ids=["no-nul", "one-nul", "empty-fields", "empty-pw", "four-fields",
                              "empty"])
def test_auth_plain_malformed_never_235(tls_srv, decoded):
    with tls_conn(tls_srv, "submission") as c:
        r = c.cmd(f"AUTH PLAIN {b64(decoded)}" if decoded else "AUTH PLAIN =")
        if r.code == 334:  # "=": an empty initial response; the server asks again
            r = c.cmd("")  # an empty response once more
            if r.code == 334:  # still asking: give up
                r = c.expect("*", "501 5.0.0")
        assert r.code in (535, 501), f"malformed PLAIN {decoded!r}: {r}\n{c.transcript()}"
        c.expect("MAIL FROM:<alice@example.org>", "530 5.7.0")
        done(c)


def test_auth_line_of_12000_octets_is_read_whole(tls_srv):
    """RFC 4954 section 4: AUTH lines up to 12288 octets. A long (wrong) credential is answered
    as a credential (535), not as an overlong command (500), and the session goes on."""
    line = "AUTH PLAIN " + plain_ir("longline@example.org", "x" * 8900)
    assert 11000 < len(line) + 2 <= 12288, len(line)
    with tls_conn(tls_srv, "submission") as c:
        c.expect(line, "535 5.7.8")
        c.expect("MAIL FROM:<longline@example.org>", "530 5.7.0")
        done(c)


def test_authzid_needs_admin(tls_srv):
    with tls_conn(tls_srv, "submission") as c:
        auth_plain(c, "mallory@example.org", authzid="alice@example.org", spec="535 5.7.8")
        c.expect("MAIL FROM:<alice@example.org>", "530 5.7.0")
        done(c)
    with tls_conn(tls_srv, "submission") as c:  # the same identity twice is no change
        auth_plain(c, "bob@example.org", authzid="bob@example.org")
        done(c)
    with tls_conn(tls_srv, "submission") as c:  # an admin acts as alice
        auth_plain(c, "root@example.org", authzid="alice@example.org")
        c.expect("MAIL FROM:<alice@example.org>", "250")
        done(c)


def test_authzid_scram_needs_admin(tls_srv):
    with tls_conn(tls_srv, "smtps") as c:
        r = auth_scram(c, "sam@example.org", authzid="alice@example.org")
        assert r.matches("535 5.7.8"), f"{r}\n{c.transcript()}"
        done(c)


# --------------------------------------------------------------------------------------------
# AUTH: success, every mechanism and form

@pytest.mark.parametrize("user", ["alice@example.org", "erin@example.org", "carol@example.net"],
                         ids=["yescrypt", "sha512crypt", "scram-hash"])
@pytest.mark.parametrize("form", ["initial", "no-initial", "empty-initial", "login"])
def test_auth_plain_login_forms_235(tls_srv, user, form):
    with tls_conn(tls_srv, "submission") as c:
        creds = plain_ir(user, PW[user])
        if form == "initial":
            c.expect(f"AUTH PLAIN {creds}", "235 2.7.0")
        elif form == "no-initial":
            r = c.expect("AUTH PLAIN", "334")
            assert r.lines[0].strip() == "", r
            c.expect(creds, "235 2.7.0")
        elif form == "empty-initial":
            c.expect("AUTH PLAIN =", "334")
            c.expect(creds, "235 2.7.0")
        else:
            auth_login(c, user)
        c.expect(f"MAIL FROM:<{user}>", "250")
        done(c)


@pytest.mark.parametrize("initial", [True, False], ids=["initial", "no-initial"])
@pytest.mark.parametrize("user", ["carol@example.net", "sam@example.org"])
def test_auth_scram_sha256_235(tls_srv, user, initial):
    with tls_conn(tls_srv, "smtps") as c:
        r = auth_scram(c, user, initial=initial)
        assert r.matches("235 2.7.0"), f"{r}\n{c.transcript()}"
        c.expect(f"MAIL FROM:<{user}>", "250")
        done(c)


def test_auth_in_clear_from_loopback_when_allowed(loop_srv):
    with clear_conn(loop_srv, "submission") as c:
        auth_login(c, "alice@example.org")
        done(c)
    with clear_conn(loop_srv, "smtp") as c:
        r = auth_scram(c, "carol@example.net")
        assert r.matches("235 2.7.0"), r
        done(c)


def test_smtplib_starttls_login(tls_srv):
    ctx = tls_srv.tls_context()
    with smtplib.SMTP("127.0.0.1", tls_srv.submission_port, local_hostname="client.test",
                      timeout=10, source_address=(fresh_ip(), 0)) as s:
        s.ehlo()
        assert s.has_extn("starttls") and not s.has_extn("auth")
        code, _ = s.starttls(context=ctx)
        assert code == 220
        s.ehlo()
        assert set(s.esmtp_features["auth"].split()) == MECHS
        code, _ = s.login("alice@example.org", PW["alice@example.org"])  # picks PLAIN
        assert code == 235
        msgid, msg = make_message(frm="alice@example.org", to="bob@example.org",
                                  subject="smtplib STARTTLS")
        assert s.sendmail("alice@example.org", ["bob@example.org"], msg) == {}
    delivered_once(tls_srv, "bob@example.org", msgid, msg)


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_smtplib_auth_mechanisms(tls_srv, mech):
    with smtplib.SMTP("127.0.0.1", tls_srv.smtp_port, local_hostname="client.test",
                      timeout=10, source_address=(fresh_ip(), 0)) as s:
        s.starttls(context=tls_srv.tls_context())
        s.ehlo()
        s.user, s.password = "bob@example.org", PW["bob@example.org"]
        obj = s.auth_plain if mech == "PLAIN" else s.auth_login
        code, _ = s.auth(mech, obj, initial_response_ok=(mech == "PLAIN"))
        assert code == 235
        with pytest.raises(smtplib.SMTPAuthenticationError) as e:
            s2 = smtplib.SMTP("127.0.0.1", tls_srv.smtp_port, local_hostname="c.test",
                              timeout=10, source_address=(fresh_ip(), 0))
            try:
                s2.starttls(context=tls_srv.tls_context())
                s2.ehlo()
                s2.user, s2.password = f"nobody-{mech.lower()}@example.org", "nope"
                s2.auth(mech, s2.auth_plain if mech == "PLAIN" else s2.auth_login,
                        initial_response_ok=(mech == "PLAIN"))
            finally:
                s2.close()
        assert e.value.smtp_code == 535


def test_smtplib_smtps_sendmail_local_and_foreign(tls_srv):
    msgid, msg = make_message(frm="alice@example.org", to="carol@example.net",
                              subject="smtps smtplib")
    before = set(spool_entries(tls_srv))
    with smtplib.SMTP_SSL("127.0.0.1", tls_srv.smtps_port, local_hostname="client.test",
                          timeout=10, context=tls_srv.tls_context(),
                          source_address=(fresh_ip(), 0)) as s:
        s.login("alice@example.org", PW["alice@example.org"])
        assert s.sendmail("alice@example.org", ["carol@example.net", "friend@other.test"],
                          msg) == {}
    delivered_once(tls_srv, "carol@example.net", msgid, msg)
    new = {k: v for k, v in spool_entries(tls_srv).items() if k not in before}
    assert any("friend@other.test" in env_rcpts(e) for e in new.values()), new


def swaks(args, timeout=60):
    return subprocess.run(["swaks", "--helo", "client.test", "--timeout", "20",
                           "--local-interface", fresh_ip(), *args],
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("mode,mech", [("--tls", "PLAIN"), ("--tls", "LOGIN"),
                                       ("--tlsc", "PLAIN"), ("--tlsc", "LOGIN")])
def test_swaks_tls_auth(tls_srv, mode, mech):
    port = tls_srv.smtps_port if mode == "--tlsc" else tls_srv.submission_port
    token = os.urandom(6).hex()
    p = swaks(["--server", f"127.0.0.1:{port}", mode, "--auth", mech,
               "--auth-user", "bob@example.org", "--auth-password", PW["bob@example.org"],
               "--from", "bob@example.org", "--to", "alice@example.org",
               "--header", f"Subject: swaks {token}", "--body", f"swaks {token}"])
    assert p.returncode == 0, p.stdout + p.stderr
    assert "235 2.7.0" in p.stdout, p.stdout
    got = [d for d in tls_srv.mailbox("alice@example.org") if token.encode() in (d.body or b"")]
    assert len(got) == 1, p.stdout
    assert re.search(rb"with ESMTPSA\b", got[0].received), got[0].received


def test_swaks_wrong_password_and_clear_auth(tls_srv):
    p = swaks(["--server", f"127.0.0.1:{tls_srv.submission_port}", "--tls", "--auth", "PLAIN",
               "--auth-user", "swaksghost@example.org", "--auth-password", "nope",
               "--from", "alice@example.org", "--to", "bob@example.org"])
    assert p.returncode != 0 and "535 5.7.8" in p.stdout, p.stdout
    # without --tls swaks finds no AUTH in EHLO and gives up: nothing is sent in clear
    p = swaks(["--server", f"127.0.0.1:{tls_srv.submission_port}", "--auth", "PLAIN",
               "--auth-user", "alice@example.org", "--auth-password", "secret-not-sent",
               "--from", "alice@example.org", "--to", "bob@example.org"])
    assert p.returncode != 0, p.stdout
    assert "AUTH PLAIN" not in p.stdout, p.stdout


# --------------------------------------------------------------------------------------------
# submission, relay, send-as

def test_submission_mail_without_auth_530(tls_srv):
    with clear_conn(tls_srv, "submission") as c:
        c.expect(f"MAIL FROM:<{SENDER}>", "530 5.7.0 Authentication required")
        done(c)
    with tls_conn(tls_srv, "submission") as c:
        c.expect("MAIL FROM:<alice@example.org>", "530 5.7.0 Authentication required")
        c.expect("MAIL FROM:<>", "530 5.7.0")
        auth_plain(c, "alice@example.org")
        c.expect("MAIL FROM:<alice@example.org>", "250 2.1.0")
        done(c)


@pytest.mark.parametrize("user,frm,ok", [
    ("alice@example.org", "alice@example.org", True),
    ("alice@example.org", "alice@EXAMPLE.ORG", True),
    ("alice@example.org", "postmaster@example.org", True),
    ("alice@example.org", "postmaster@example.net", True),
    ("alice@example.org", "team@example.org", True),
    ("alice@example.org", "info@example.net", True),
    ("alice@example.org", "", True),
    ("alice@example.org", "bob@example.org", False),
    ("alice@example.org", "sales@example.org", False),
    ("alice@example.org", "carol@example.net", False),
    ("alice@example.org", "alice@example.net", False),
    ("alice@example.org", "alice@other.test", False),
    ("alice@example.org", "alice@example.org.other.test", False),
    ("alice@example.org", "someone@other.test", False),
    ("alice@example.org", "nobody@example.org", False),
    ("bob@example.org", "bob@example.org", True),
    ("bob@example.org", "sales@example.org", True),
    ("bob@example.org", "team@example.org", True),
    ("bob@example.org", "postmaster@example.org", False),
    ("bob@example.org", "info@example.net", False),
    ("bob@example.org", "alice@example.org", False),
])
def test_send_as(tls_srv, user, frm, ok):
    with authed(tls_srv, user) as c:
        if ok:
            c.expect(f"MAIL FROM:<{frm}>", "250 2.1.0")
        else:
            c.expect(f"MAIL FROM:<{frm}>", "553 5.7.1 Sender address not owned by user")
            c.expect("RCPT TO:<carol@example.net>", "503 5.5.1")  # no transaction began
        done(c)


def test_smtp_listener_never_relays_even_authenticated(tls_srv):
    """Relaying is for submission (587) and smtps (465): an authenticated user on the smtp
    listener may still send only to local recipients, and smtps, like submission, needs AUTH."""
    before_spool = set(spool_entries(tls_srv))
    with authed(tls_srv, "alice@example.org", "smtp") as c:
        c.expect("MAIL FROM:<alice@example.org>", "250 2.1.0")
        c.expect("RCPT TO:<friend@other.test>", "550 5.7.1")
        c.expect("RCPT TO:<alice@[192.0.2.1]>", "550 5.7.1")
        c.expect("RSET", "250")
        done(c)
    with Conn(tls_srv.smtps_port, bind=fresh_ip(), tls=tls_srv.tls_context()) as c:
        c.ehlo()
        c.expect("MAIL FROM:<a@client.test>", "530 5.7.0")
        done(c)
    assert set(spool_entries(tls_srv)) == before_spool


@pytest.mark.parametrize("listener", ["submission", "smtps"])
def test_authenticated_relay_spools_and_delivers_local(tls_srv, listener):
    before_spool = set(spool_entries(tls_srv))
    foreign = [f"friend-{listener}@other.test", "Someone@Far.Example"]
    msgid, msg = make_message(frm="alice@example.org", to=foreign[0],
                              subject=f"relay {listener}")
    with authed(tls_srv, "alice@example.org", listener) as c:
        c.expect("MAIL FROM:<alice@example.org>", "250 2.1.0")
        for r in foreign:
            c.expect(f"RCPT TO:<{r}>", "250")
        c.expect("RCPT TO:<team@example.org>", "250 2.1.5")
        c.expect("RCPT TO:<carol@example.net>", "250 2.1.5")
        c.data(msg)
        done(c)
    for local in ("alice@example.org", "bob@example.org", "carol@example.net"):
        d = delivered_once(tls_srv, local, msgid, msg)
        assert re.search(rb"with ESMTPSA\b", d.received), d.received
    new = {k: v for k, v in spool_entries(tls_srv).items() if k not in before_spool}
    assert len(new) == 1, f"expected one new spool entry, got {new}"
    qid, env = next(iter(new.items()))
    qdir = tls_srv.data_dir / "spool" / "queue"
    assert (qdir / f"{qid}.msg").is_file(), sorted(p.name for p in qdir.iterdir())
    stored = (qdir / f"{qid}.msg").read_bytes()
    assert stored.endswith(msg), "spooled message does not end with the bytes sent"
    assert re.search(rb"with ESMTPSA\b", stored[:len(stored) - len(msg)]), stored[:400]
    assert env["from"] == "alice@example.org", env
    assert env["auth_user"] == "alice@example.org", env
    rcpts = [r.lower() for r in env_rcpts(env)]
    assert {r.lower() for r in foreign} <= set(rcpts), env
    assert not {"alice@example.org", "bob@example.org", "carol@example.net",
                "team@example.org"} & set(rcpts), f"local recipients queued too: {env}"
    assert list((tls_srv.data_dir / "spool" / "tmp").glob("*")) == []
    p = run_tern(tls_srv, "queue", "list")
    assert p.returncode == 0, p.stdout + p.stderr
    assert qid in p.stdout and foreign[0] in p.stdout, p.stdout


def test_unauthenticated_foreign_rcpt_never_spooled(tls_srv):
    before = set(spool_entries(tls_srv))
    with tls_conn(tls_srv, "smtp") as c:
        c.expect(f"MAIL FROM:<{SENDER}>", "250")
        c.expect(f"RCPT TO:<{FOREIGN}>", "550 5.7.1")
        c.expect("RCPT TO:<alice@example.org>", "250")
        msgid, msg = make_message(subject="inbound only")
        c.data(msg)
        done(c)
    delivered_once(tls_srv, "alice@example.org", msgid, msg)
    assert set(spool_entries(tls_srv)) == before


# --------------------------------------------------------------------------------------------
# the open-relay battery: never 250 for a foreign recipient without AUTH

RELAY_DISGUISES = [
    "user@other.test",
    "USER@OTHER.TEST",
    "user@Other.Test",
    "user@other.test.",
    "user@OTHER.TEST.",
    "user%other.test@example.org",
    "user%other.test@EXAMPLE.ORG",
    "user%other.test%example.org@example.org",
    "other.test!user@example.org",
    "\"user@other.test\"@example.org",
    "\"user%other.test\"@example.org",
    "@a.test,@b.test:user@other.test",
    "@example.org:user@other.test",
    "user@[192.0.2.1]",
    "user@[IPv6:2001:db8::1]",
    "alice@example.org.other.test",
    "alice@sub.example.org",
    "postmaster@other.test",
]
# A domain with a trailing dot is not RFC 5321 syntax: refused as a bad mailbox, not as relaying.
def relay_refusal(disguise):
    return "553 5.1.3" if disguise.endswith(".") else "550 5.7.1"


RELAY_LISTENERS = ["smtp", "submission"]
RELAY_STATES = ["plain", "starttls", "failed-auth"]
RELAY_CASES = len(RELAY_DISGUISES) * len(RELAY_LISTENERS) * len(RELAY_STATES)


@pytest.fixture(scope="module")
def _relay_srv(module_ternd_factory):
    return module_ternd_factory(users=USERS, aliases=ALIASES, tls=True, name="relay",
                                config={"limits.bad_commands": "1000"})


@pytest.fixture(scope="module")
def relay_conns(_relay_srv):
    """One connection per (listener, state), reused by that state's cases (so the failed AUTH
    happens once per listener, not once per disguise); reopened if it was closed."""
    conns = {}
    ghosts = itertools.count(1)

    def get(listener, state) -> Conn:
        srv = _relay_srv.ensure_running()
        c = conns.get((listener, state))
        if c is not None and not c.closed:
            return c
        c = clear_conn(srv, listener) if state == "plain" else tls_conn(srv, listener)
        if state == "failed-auth":
            auth_plain(c, f"ghost{next(ghosts)}@example.org", "wrong", spec="535 5.7.8")
        conns[(listener, state)] = c
        return c
    yield get
    for c in conns.values():
        c.close()


@pytest.mark.parametrize("disguise", RELAY_DISGUISES)
@pytest.mark.parametrize("state", RELAY_STATES)
@pytest.mark.parametrize("listener", RELAY_LISTENERS)
def test_open_relay_battery(relay_conns, listener, state, disguise):
    c = relay_conns(listener, state)
    try:
        mail = c.cmd(f"MAIL FROM:<{SENDER}>")
        rcpt = c.cmd(f"RCPT TO:<{disguise}>")
        c.expect("RSET", "250")
    except BaseException:  # the session broke: the next case starts a new one
        c.close()
        c.closed = True
        raise
    if listener == "submission":
        assert mail.matches("530 5.7.0"), f"{mail}\n{c.transcript()}"
    else:
        assert mail.matches("250"), f"{mail}\n{c.transcript()}"
    assert rcpt.code // 100 != 2, (f"OPEN RELAY: {listener}/{state} accepted <{disguise}>: "
                                   f"{rcpt}\n{c.transcript()}")
    if listener == "submission":  # MAIL was refused: no transaction to add it to
        assert rcpt.code in (503, 530, 550, 553), f"{rcpt}\n{c.transcript()}"
    else:
        assert rcpt.matches(relay_refusal(disguise)), f"<{disguise}>: {rcpt}\n{c.transcript()}"


def test_open_relay_battery_left_nothing(_relay_srv):
    """The disguises again in one transaction with a real local recipient: the message reaches
    alice once and nothing is spooled for anyone."""
    srv = _relay_srv.ensure_running()
    print(f"open-relay battery: {RELAY_CASES} cases ({len(RELAY_LISTENERS)} listeners x "
          f"{len(RELAY_STATES)} states x {len(RELAY_DISGUISES)} disguises)")
    with tls_conn(srv, "smtp") as c:
        c.expect(f"MAIL FROM:<{SENDER}>", "250")
        for d in RELAY_DISGUISES:
            c.expect(f"RCPT TO:<{d}>", relay_refusal(d))
        c.expect("RCPT TO:<alice@example.org>", "250")
        msgid, msg = make_message(subject="battery")
        c.data(msg)
        done(c)
    delivered_once(srv, "alice@example.org", msgid, msg)
    assert spool_entries(srv) == {}, spool_entries(srv)
    q = srv.data_dir / "spool" / "queue"
    assert not q.is_dir() or list(q.iterdir()) == [], list(q.iterdir())
    assert {p.parent.parent.parent.name for p in srv.all_delivered_files()} <= \
        {"example.org", "example.net"}


# --------------------------------------------------------------------------------------------
# throttling

def _timed_fail(srv, ip, user, pw="wrong"):
    with clear_conn(srv, "submission", bind=ip, timeout=60) as c:
        t0 = time.monotonic()
        auth_plain(c, user, pw, spec="535 5.7.8")
        took = time.monotonic() - t0
        done(c)
    return took


def test_auth_throttle_per_user_and_per_ip(ternd_factory):
    """max_failures = 2 and window = 5 s (5 and 600 by default: the same code, less waiting):
    blocked per user and per IP, replies to failures held 1 s, 2 s, and free again once the
    window has passed."""
    window = 5
    t = ternd_factory(users=USERS, aliases=ALIASES, tls=True,
                      config={"auth.plaintext": "loopback", "auth.max_failures": "2",
                              "auth.window": str(window)}, name="throttle")
    # per user: 2 failures for victim, each from a different address
    took = [_timed_fail(t, f"127.0.9.{i}", "victim@example.org") for i in (1, 2)]
    print(f"per-user failure replies took {[round(x, 2) for x in took]} s")
    assert took[0] >= 0.9 and took[1] >= 1.8, f"failure replies not delayed 1 s, 2 s: {took}"
    with clear_conn(t, "submission", bind="127.0.9.4", timeout=60) as c:
        auth_plain(c, "victim@example.org", spec="454 4.7.0")  # the right password
        auth_plain(c, "bob@example.org")  # this address is not blocked, only victim
        done(c)
    # per IP: 2 failures from one address, each for a different (unknown) user
    ip = "127.0.9.10"
    took = [_timed_fail(t, ip, f"nobody{i}@example.org") for i in (1, 2)]
    print(f"per-IP failure replies took {[round(x, 2) for x in took]} s")
    assert took[0] >= 0.9 and took[1] >= 1.8, f"failure replies not delayed 1 s, 2 s: {took}"
    with clear_conn(t, "submission", bind=ip, timeout=60) as c:
        auth_plain(c, "alice@example.org", spec="454 4.7.0")
        c.expect("MAIL FROM:<alice@example.org>", "530 5.7.0")
        done(c)
    last_failure = time.monotonic()
    with clear_conn(t, "submission", bind="127.0.9.11") as c:  # alice herself is fine
        auth_plain(c, "alice@example.org")
        done(c)
    # the window passes: the address and the user may try again
    time.sleep(max(0.0, last_failure + window + 0.5 - time.monotonic()))
    with clear_conn(t, "submission", bind=ip, timeout=60) as c:
        auth_plain(c, "alice@example.org")
        done(c)
    with clear_conn(t, "submission", bind="127.0.9.12", timeout=60) as c:
        auth_plain(c, "victim@example.org")
        done(c)


# --------------------------------------------------------------------------------------------
# `tern user`

def test_tern_user_round_trip(ternd_factory):
    t = ternd_factory(users=USERS, aliases=ALIASES, tls=True,
                      config={"auth.plaintext": "loopback"}, name="usercmd")
    users_file = t.data_dir / "users"

    def must(p):
        assert p.returncode == 0, f"exit {p.returncode}\n{p.stdout}{p.stderr}"
        return p

    def auth(user, pw, spec):
        with clear_conn(t, "submission") as c:
            auth_plain(c, user, pw, spec=spec)
            done(c)

    must(run_tern(t, "user", "add", "newbie@example.org", "--password-stdin",
                  input="first pw 1\n"))
    line = [l for l in users_file.read_text().splitlines()
            if l.startswith("newbie@example.org:")]
    assert len(line) == 1 and line[0].split(":")[1].startswith("{CRYPT}$y$"), line
    assert "first pw 1" not in users_file.read_text()
    t.reload()
    auth("newbie@example.org", "first pw 1", "235 2.7.0")
    with clear_conn(t, "smtp") as c:  # and mail reaches the new user
        c.expect(f"MAIL FROM:<{SENDER}>", "250")
        c.expect("RCPT TO:<newbie@example.org>", "250 2.1.5")
        done(c)

    must(run_tern(t, "user", "passwd", "newbie@example.org", "--password-stdin",
                  input="second pw 2\n"))
    t.reload()
    auth("newbie@example.org", "first pw 1", "535 5.7.8")
    auth("newbie@example.org", "second pw 2", "235 2.7.0")

    must(run_tern(t, "user", "add", "scrammy@example.org", "--password-stdin", "--scram",
                  input="scram pw\n"))
    must(run_tern(t, "user", "add", "boss@example.org", "--password-stdin", "--admin",
                  input="boss pw\n"))
    text = users_file.read_text()
    assert re.search(r"^scrammy@example\.org:\{SCRAM-SHA-256\}\d+,", text, re.M), text
    assert re.search(r"^boss@example\.org:.*\badmin\b", text, re.M), text
    t.reload()
    with clear_conn(t, "submission") as c:
        r = auth_scram(c, "scrammy@example.org", "scram pw")
        assert r.matches("235 2.7.0"), f"{r}\n{c.transcript()}"
        done(c)
    with clear_conn(t, "submission") as c:
        auth_plain(c, "boss@example.org", "boss pw", authzid="newbie@example.org")
        c.expect("MAIL FROM:<newbie@example.org>", "250")
        done(c)

    must(run_tern(t, "user", "del", "newbie@example.org"))
    assert "newbie@example.org:" not in users_file.read_text()
    t.reload()
    auth("newbie@example.org", "second pw 2", "535 5.7.8")
    with clear_conn(t, "smtp") as c:
        c.expect(f"MAIL FROM:<{SENDER}>", "250")
        c.expect("RCPT TO:<newbie@example.org>", "550 5.1.1")
        done(c)
    auth("alice@example.org", PW["alice@example.org"], "235 2.7.0")  # others untouched


def test_check_from_header(ternd_factory):
    """[policy] check_from = yes: an authenticated user's From: header must name only addresses
    it owns (the envelope is checked regardless); one From: field, not two."""
    srv = ternd_factory(users=USERS, aliases=ALIASES, tls=True, name="checkfrom",
                        config={"policy.check_from": "yes"})
    cases = [
        (b"From: Bob <bob@example.org>\r\nSubject: x\r\n\r\nhi\r\n", "553 5.7.1"),
        (b"From: alice@example.org, bob@example.org\r\nSubject: x\r\n\r\nhi\r\n", "553 5.7.1"),
        (b"From: alice@example.org\r\nFrom: alice@example.org\r\n\r\nhi\r\n", "553 5.7.1"),
        (b"Subject: no from at all\r\n\r\nhi\r\n", "553 5.7.1"),
        (b"From: \"Liddell, Alice\"\r\n <alice@example.org>\r\nSubject: x\r\n\r\nhi\r\n",
         "250 2.0.0"),
        (b"From: ALICE@Example.ORG (Alice)\r\nSubject: x\r\n\r\nhi\r\n", "250 2.0.0"),
    ]
    with authed(srv, "alice@example.org", "submission") as c:
        for msg, spec in cases:
            c.expect("MAIL FROM:<alice@example.org>", "250")
            c.expect("RCPT TO:<bob@example.org>", "250")
            c.data(msg, spec=spec)
        done(c)
    assert len(srv.mailbox("bob@example.org")) == 2
