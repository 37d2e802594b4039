"""Shared machinery for tern's integration tests: start and stop a real ternd on loopback, speak
SMTP to it with a raw client that checks the reply grammar (and the enhanced-status-code rule) on
every reply, and read what landed in the Maildirs.

Imported by conftest.py and the test modules (pytest puts this directory on sys.path).
"""
from __future__ import annotations

import base64
import collections
import os
import pwd
import random
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HOSTNAME = "mx.test.example"
TIMEOUT = float(os.environ.get("TERN_IT_TIMEOUT", "10"))  # seconds to wait for any one reply
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer")

# user, full name (gecos), extra fields[, stored password (default PASSWORD)]
DEFAULT_USERS = [
    ("alice@example.org", "Alice Liddell", ""),
    ("bob@example.org", "Bob Smith", ""),
    ("carol@example.net", "Carol Smith", ""),
    ("dave@example.org", "Dave Mover", "moved=dave@elsewhere.test"),
]
DEFAULT_ALIASES = [
    "postmaster: alice@example.org",
    "team@example.org: alice, bob",
]
PASSWORD = "{CRYPT}$y$j9T$abc$def"


def ternd_binary() -> Path:
    p = Path(os.environ.get("TERND", "build/ternd"))
    return p if p.is_absolute() else REPO / p


def tern_binary() -> Path:
    """The `tern` CLI: $TERN, else the one beside $TERND."""
    if os.environ.get("TERN"):
        p = Path(os.environ["TERN"])
        return p if p.is_absolute() else REPO / p
    return ternd_binary().with_name("tern")


# ---------------------------------------------------------------------------------------------
# ports

_handed_out: set[int] = set()
LIVE: list["Ternd"] = []  # servers not yet cleaned up
USED: list["Ternd"] = []  # servers the current test started or asked for: their logs go in
                          # its failure report


def free_port() -> int:
    """A free TCP port on 127.0.0.1 in 20001..32000 (below Linux's ephemeral range, so client
    sockets never take it between now and ternd's bind)."""
    rnd = random.Random()
    for _ in range(200):
        port = rnd.randint(20001, 32000)
        if port in _handed_out:
            continue
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            s.close()
        _handed_out.add(port)
        return port
    raise RuntimeError("no free port found in 20001..32000")


# ---------------------------------------------------------------------------------------------
# the daemon

def users_text(users) -> str:
    """Dovecot passwd-file: user:password:uid:gid:gecos:home:shell:extra. A user is
    (address, name, extra) or (address, name, extra, stored password)."""
    out = []
    for u in users:
        addr, name, extra = u[:3]
        pw = u[3] if len(u) > 3 and u[3] is not None else PASSWORD
        out.append(f"{addr}:{pw}:::{name}:::{extra}\n")
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# credentials and certificates

_CRYPT_ALPHABET = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def crypt_hash(password: str, cost: str = "j9T") -> str:
    """{CRYPT} yescrypt ($y$, libxcrypt's default; cost "j9T" ~15 ms, each letter up doubles
    it), via Python's deprecated crypt module."""
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt
    salt = "".join(random.choice(_CRYPT_ALPHABET) for _ in range(16))
    h = crypt.crypt(password, f"$y${cost}${salt}$")
    if not h or not h.startswith("$y$"):
        raise RuntimeError("this libcrypt does not do yescrypt")
    return "{CRYPT}" + h


def sha512_crypt_hash(password: str) -> str:
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt
        return "{CRYPT}" + crypt.crypt(password, crypt.mksalt(crypt.METHOD_SHA512))


def scram_keys(password: str, salt: bytes, iterations: int):
    """(SaltedPassword, ClientKey, StoredKey, ServerKey) of SCRAM-SHA-256 (RFC 5802, 7677)."""
    import hashlib
    import hmac
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    return salted, client_key, stored_key, server_key


def scram_hash(password: str, iterations: int = 4096) -> str:
    """{SCRAM-SHA-256}ITER,SALT,STOREDKEY,SERVERKEY in Dovecot's format (base64 parts)."""
    salt = os.urandom(16)
    _, _, stored, server = scram_keys(password, salt, iterations)
    b = lambda x: base64.b64encode(x).decode()
    return f"{{SCRAM-SHA-256}}{iterations},{b(salt)},{b(stored)},{b(server)}"


_CERT_CACHE: dict = {}


def make_cert(cert: Path, key: Path):
    """A self-signed EC P-256 certificate for HOSTNAME (SAN DNS:HOSTNAME, IP:127.0.0.1), made
    once per test run with the openssl CLI and copied."""
    if "pem" not in _CERT_CACHE:
        d = Path(tempfile.mkdtemp(prefix="tern-it-cert-", dir="/tmp"))
        try:
            subprocess.run(
                ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                 "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(d / "key.pem"),
                 "-out", str(d / "cert.pem"), "-days", "30", "-subj", f"/CN={HOSTNAME}",
                 "-addext", f"subjectAltName=DNS:{HOSTNAME},IP:127.0.0.1"],
                check=True, capture_output=True)
            _CERT_CACHE["pem"] = ((d / "cert.pem").read_bytes(), (d / "key.pem").read_bytes())
        finally:
            shutil.rmtree(d, ignore_errors=True)
    c, k = _CERT_CACHE["pem"]
    cert.parent.mkdir(parents=True, exist_ok=True)
    key.parent.mkdir(parents=True, exist_ok=True)
    cert.write_bytes(c)
    key.write_bytes(k)
    os.chmod(key, 0o600)


def client_tls_context(cafile: Path | None = None, minimum=None, maximum=None,
                       ciphers=None) -> ssl.SSLContext:
    """Verifies the server against cafile (our self-signed cert) and HOSTNAME; no cafile: no
    verification at all."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if cafile:
        ctx.load_verify_locations(cafile=str(cafile))
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if ciphers:
        ctx.set_ciphers(ciphers)
    if minimum:
        ctx.minimum_version = minimum
    if maximum:
        ctx.maximum_version = maximum
    return ctx


def ensure_run_user() -> str:
    """The `user =` ternd drops to: `tern` (created if missing) when we are root, else us."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid()).pw_name
    try:
        pwd.getpwnam("tern")
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                        "/usr/sbin/nologin", "tern"], check=True)
    return "tern"


class Ternd:
    """One ternd on its own data dir and ports. `config` overrides keys as {"section.key": value}
    (value None drops the key)."""

    def __init__(self, config=None, users=None, aliases=None, env=None, name="ternd",
                 tls=False, smtps=False, mailboxes=None):
        self.binary = ternd_binary()
        self.run_user = ensure_run_user()
        self.root = Path(tempfile.mkdtemp(prefix="tern-it-", dir="/tmp"))
        os.chmod(self.root, 0o755)  # the unprivileged ternd must reach data/
        self.data_dir = self.root / "data"
        self.data_dir.mkdir()
        self.log_path = self.root / f"{name}.log"
        self.conf_path = self.data_dir / "tern.conf"
        self.smtp_port = free_port()
        self.submission_port = free_port()
        self.smtps_port = free_port() if smtps else None
        self.users = list(DEFAULT_USERS if users is None else users)
        self.aliases = list(DEFAULT_ALIASES if aliases is None else aliases)
        # shared mailboxes ("team@example.org: alice@example.org, bob@example.org"): written
        # to DATA_DIR/mailboxes and named in [server] only when given
        self.mailboxes = None if mailboxes is None else list(mailboxes)
        self.sections = {
            "server": {"hostname": HOSTNAME, "data_dir": str(self.data_dir),
                       "user": self.run_user, "domains": "example.org, example.net",
                       "workers": "4"},
            "listen": {"smtp": f"127.0.0.1:{self.smtp_port}",
                       "submission": f"127.0.0.1:{self.submission_port}"},
            "limits": {"message_size": "10M", "recipients": "100", "connections": "1000",
                       "connections_per_ip": "50", "bad_commands": "20",
                       "junk_commands": "1000", "command_timeout": "300",
                       "data_timeout": "600", "shutdown_timeout": "30",
                       "min_free_space": "0"},
            "policy": {"vrfy": "authenticated", "expn": "authenticated"},
            # outbound mail stays queued unless a test sends it somewhere on loopback: no test
            # may reach a real MX (tests that deliver set relay.defer = no and their routes)
            "relay": {"defer": "yes"},
        }
        if self.mailboxes is not None:
            self.sections["server"]["mailboxes"] = "mailboxes"
        if tls or smtps:  # [tls]: a self-signed certificate, made by write_files
            self.sections["tls"] = {"cert": "tls/cert.pem", "key": "tls/key.pem"}
        if smtps:
            self.sections["listen"]["smtps"] = f"127.0.0.1:{self.smtps_port}"
        for k, v in (config or {}).items():
            sec, key = k.split(".", 1)
            if v is None:
                self.sections.setdefault(sec, {}).pop(key, None)
            else:
                self.sections.setdefault(sec, {})[key] = str(v)
        self.env = dict(os.environ)
        self.env.update(env or {})
        self.proc: subprocess.Popen | None = None
        self.returncodes: list[int] = []
        self.notes: list[str] = []  # how each run ended, when it ended badly
        self._killed = False
        self.write_files()
        LIVE.append(self)

    # files -------------------------------------------------------------------------------
    def config_text(self) -> str:
        out = []
        for sec, kv in self.sections.items():
            out.append(f"[{sec}]")
            out += [f"{k} = {v}" for k, v in kv.items()]
            out.append("")
        return "\n".join(out)

    def _write(self, path: Path, text: str):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)

    def tls_path(self, key="cert") -> Path | None:
        v = self.sections.get("tls", {}).get(key)
        if not v:
            return None
        p = Path(v)
        return p if p.is_absolute() else self.data_dir / p

    @property
    def cert_path(self) -> Path | None:
        return self.tls_path("cert")

    def write_files(self):
        cert, key = self.tls_path("cert"), self.tls_path("key")
        if cert and key and not cert.exists() and not key.exists():
            make_cert(cert, key)  # any [tls] cert the config names but nobody made yet
        self._write(self.conf_path, self.config_text())
        self._write(self.data_dir / "users", users_text(self.users))
        self._write(self.data_dir / "aliases", "".join(a + "\n" for a in self.aliases))
        if self.mailboxes is not None:
            self._write(self.data_dir / "mailboxes", "".join(m + "\n" for m in self.mailboxes))
        self.chown()

    def chown(self):
        if os.geteuid() != 0:
            return
        pw = pwd.getpwnam(self.run_user)
        for dirpath, dirnames, filenames in os.walk(self.data_dir):
            os.chown(dirpath, pw.pw_uid, pw.pw_gid)
            for f in filenames:
                os.chown(os.path.join(dirpath, f), pw.pw_uid, pw.pw_gid)

    # process -----------------------------------------------------------------------------
    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, wait=True):
        assert not self.alive()
        if not self.binary.exists():
            raise RuntimeError(f"{self.binary} does not exist (build it, or set TERND)")
        if self not in USED:
            USED.append(self)
        log = open(self.log_path, "ab")
        self._killed = False
        self.proc = subprocess.Popen([str(self.binary), "-c", str(self.conf_path)],
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                     env=self.env)
        log.close()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=20.0):
        """Until the smtp port greets 220 (and a QUIT is answered and the connection closed,
        so the probe no longer counts against any connection limit)."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ternd exited with {self.proc.returncode} while starting:\n"
                                   + self.log_tail())
            try:
                with socket.create_connection(("127.0.0.1", self.smtp_port), timeout=5) as s:
                    f = s.makefile("rb")
                    line = f.readline()
                    if not line.startswith(b"220"):
                        raise RuntimeError(f"ternd greeted {line!r}")
                    s.sendall(b"QUIT\r\n")
                    while f.readline():
                        pass
                # the submission (and smtps) listeners too
                socket.create_connection(("127.0.0.1", self.submission_port), timeout=5).close()
                if self.smtps_port:
                    socket.create_connection(("127.0.0.1", self.smtps_port), timeout=5).close()
                return
            except (ConnectionRefusedError, ConnectionResetError, socket.timeout) as e:
                last = e
                time.sleep(0.05)
        raise RuntimeError(f"ternd not ready after {timeout}s ({last}):\n" + self.log_tail())

    def ensure_running(self):
        """For daemons shared between tests: if an earlier test crashed it, note the crash (it
        still fails at teardown) and start it again, so one crash fails one test, not all."""
        if self not in USED:
            USED.append(self)
        if self.proc is not None and not self.alive():
            self.check_exit()
            self.start()
        return self

    def signal(self, sig):
        assert self.alive()
        os.kill(self.pid, sig)

    def reload(self, timeout=10.0):
        """SIGHUP, then wait for the log's "reloaded" line (ternd re-reads config, users and
        aliases). Raises if ternd logs that the reload failed."""
        before = self.log_text().count("reloaded ")
        failed = self.log_text().count("reload of ")
        self.signal(signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_text()
            if text.count("reload of ") > failed:
                raise RuntimeError("ternd refused the reload:\n" + self.log_tail(20))
            if text.count("reloaded ") > before:
                return
            time.sleep(0.02)
        raise RuntimeError(f"no 'reloaded' in the log {timeout}s after SIGHUP:\n"
                           + self.log_tail(20))

    def kill9(self):
        if self.alive():
            self._killed = True
            os.kill(self.pid, signal.SIGKILL)
            self.returncodes.append(self.proc.wait(10))

    def check_exit(self):
        """Notes a run that died on its own of a signal (a crash), not by our hand."""
        if self.proc is None or self.proc.poll() is None:
            return
        rc = self.proc.returncode
        if rc >= 0 or self._killed:
            return
        note = f"ternd pid {self.proc.pid} died of signal {-rc} ({signal.Signals(-rc).name})"
        if note not in self.notes:
            self.notes.append(note)

    def stop(self, timeout=10.0):
        """SIGTERM, then SIGKILL after timeout. Returns the exit status (None if never ran)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self._killed = True  # whatever happens next is our doing
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
                if self.proc.returncode != 0:
                    self.notes.append(f"ternd exited {self.proc.returncode} on SIGTERM")
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait(10)
                self.notes.append(f"ternd still running {timeout:.0f} s after SIGTERM; killed")
            self.returncodes.append(self.proc.returncode)
        else:
            self.check_exit()
        return self.proc.returncode

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, n=60) -> str:
        lines = self.log_text().splitlines()
        return "\n".join(lines[-n:])

    def sanitizer_report(self) -> str | None:
        text = self.log_text()
        if any(m in text for m in SANITIZER_MARKS):
            return text[-8000:]
        return None

    def cleanup(self):
        if self in LIVE:
            LIVE.remove(self)
        if os.environ.get("TERN_IT_KEEP"):
            return
        shutil.rmtree(self.root, ignore_errors=True)

    def rss_kib(self) -> int:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    # mail --------------------------------------------------------------------------------
    def maildir(self, addr: str) -> Path:
        user, domain = addr.lower().rsplit("@", 1)
        return self.data_dir / "mail" / domain / user

    def mailbox(self, addr: str) -> list["Delivered"]:
        return read_mailbox(self.maildir(addr))

    def all_delivered_files(self) -> set[Path]:
        base = self.data_dir / "mail"
        if not base.exists():
            return set()
        return {p for p in base.glob("*/*/new/*")} | {p for p in base.glob("*/*/cur/*")}

    def smtp(self, **kw) -> "Conn":
        return Conn(self.smtp_port, **kw)

    def submission(self, **kw) -> "Conn":
        return Conn(self.submission_port, **kw)

    def tls_context(self, **kw) -> ssl.SSLContext:
        """A client context that trusts this server's certificate (and checks HOSTNAME)."""
        return client_tls_context(self.cert_path, **kw)

    def smtps(self, ctx=None, **kw) -> "Conn":
        """Implicit TLS (RFC 8314): the handshake first, then the greeting."""
        assert self.smtps_port, "this ternd has no smtps listener (smtps=True)"
        return Conn(self.smtps_port, tls=ctx or self.tls_context(), **kw)


# ---------------------------------------------------------------------------------------------
# reading Maildirs

class Delivered:
    """One file in new/: NAME,S=SIZE holding Return-Path:, Received: and the client's bytes."""
    PREFIX_RE = re.compile(rb"\AReturn-Path: <([^>\r\n]*)>\r?\n(Received:[^\r\n]*\r?\n"
                           rb"(?:[ \t][^\r\n]*\r?\n)*)")

    def __init__(self, path: Path):
        self.path = path
        self.name = path.name
        self.raw = path.read_bytes()
        m = re.match(r"^(.+),S=(\d+)(:2,.*)?$", path.name)
        self.base = m.group(1) if m else None
        self.size_field = int(m.group(2)) if m else None
        p = self.PREFIX_RE.match(self.raw)
        self.return_path = p.group(1).decode(errors="replace") if p else None
        self.received = p.group(2) if p else None
        self.body = self.raw[p.end():] if p else None  # the bytes the client sent

    def problems(self) -> list[str]:
        out = []
        if self.base is None:
            out.append(f"name {self.name!r} is not NAME,S=SIZE")
        elif self.size_field != len(self.raw):
            out.append(f"S={self.size_field} but the file has {len(self.raw)} bytes")
        if self.body is None:
            out.append("file does not start with Return-Path: <...> and a Received: header: "
                       + repr(self.raw[:300]))
        return out

    def __repr__(self):
        return f"<Delivered {self.path}>"


def read_mailbox(maildir: Path) -> list[Delivered]:
    new = maildir / "new"
    if not new.is_dir():
        return []
    return [Delivered(p) for p in sorted(new.iterdir())]


def tmp_files(data_dir: Path) -> list[Path]:
    return list((data_dir / "mail").glob("*/*/tmp/*"))


# ---------------------------------------------------------------------------------------------
# the raw SMTP client

ENH_RE = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?: |$)")
LINE_RE = re.compile(r"^(\d{3})([ -]|$)(.*)$", re.S)


class ProtocolError(AssertionError):
    pass


class Reply:
    def __init__(self, code: int, lines: list[str], kind: str):
        self.code = code
        self.lines = lines  # text after "ddd[- ]", one per line
        self.kind = kind    # the command it answers, as far as the client knows
        m = ENH_RE.match(lines[0])
        self.enh = m.group(0).strip() if m else None
        self.text = lines[0][m.end():] if m else lines[0]

    @property
    def first(self) -> str:
        return f"{self.code} {self.lines[0]}"

    def matches(self, spec: str) -> bool:
        """spec "550", "550 5.1.1" or "550 5.1.1 some text": code, then a prefix of the first
        line's text."""
        code, _, rest = spec.partition(" ")
        return str(self.code) == code and self.lines[0].startswith(rest)

    def has_line(self, prefix: str) -> bool:
        return any(l.startswith(prefix) for l in self.lines)

    def __str__(self):
        n = len(self.lines)
        return "\n".join(f"{self.code}{'-' if i < n - 1 else ' '}{l}"
                         for i, l in enumerate(self.lines))

    __repr__ = __str__


class Conn:
    """A blocking SMTP client over a raw socket. Every reply is checked: well-formed CRLF lines,
    one code per reply, and RFC 2034 enhanced codes on every line of every reply after a
    successful EHLO (except the EHLO/HELO replies and 354), none before EHLO or after HELO."""

    def __init__(self, port, host="127.0.0.1", bind=None, timeout=TIMEOUT, greet=True,
                 check_enhanced=True, tls: ssl.SSLContext | None = None,
                 server_hostname=HOSTNAME):
        self.port = port
        self.timeout = timeout
        self.sock = socket.create_connection(
            (host, port), timeout=timeout, source_address=(bind, 0) if bind else None)
        if tls is not None:  # implicit TLS: handshake before anything else
            try:
                self.sock = tls.wrap_socket(self.sock, server_hostname=server_hostname)
            except BaseException:
                self.sock.close()
                raise
        self.buf = b""
        self.esmtp = False
        self.mode = "before HELO/EHLO"
        self.in_data = False
        self.kinds: collections.deque[str] = collections.deque(["GREETING"])
        self.log: list[str] = []
        self.check_enhanced = check_enhanced
        self.closed = False
        self.greeting = self.reply() if greet else None

    # sending -----------------------------------------------------------------------------
    def _note(self, prefix, data: bytes):
        t = data.decode("utf-8", "backslashreplace")
        if len(t) > 300:
            t = t[:240] + f"...<{len(t)} chars>..." + t[-40:]
        self.log.append(prefix + t.replace("\r", "\\r").replace("\n", "\\n"))

    def send_raw(self, data: bytes, kinds=()):
        self._note("C: ", data)
        if self.in_data and (b"\r\n.\r\n" in data or data.startswith(b".\r\n")):
            self.in_data = False
            self.kinds.append("DATA-END")
        self.kinds.extend(kinds)
        self.sock.sendall(data)

    def send(self, line):
        """Sends one line plus CRLF. Outside DATA it is a command and one reply is expected."""
        if isinstance(line, str):
            line = line.encode()
        if self.in_data:
            if line == b".":
                self.in_data = False
                self.kinds.append("DATA-END")
        else:
            verb = line.split(b" ", 1)[0].decode("ascii", "replace").upper()
            self.kinds.append(verb)
        self._note("C: ", line + b"\r\n")
        self.sock.sendall(line + b"\r\n")

    def send_lines(self, lines):
        """Pipelining: all the command lines in one write."""
        data = b""
        for line in lines:
            if isinstance(line, str):
                line = line.encode()
            self.kinds.append(line.split(b" ", 1)[0].decode("ascii", "replace").upper())
            data += line + b"\r\n"
        self._note("C: ", data)
        self.sock.sendall(data)

    # receiving ---------------------------------------------------------------------------
    def _readline(self, timeout=None) -> bytes | None:
        deadline = time.monotonic() + (timeout or self.timeout)
        while b"\r\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ProtocolError(f"timed out waiting for a reply line\n{self.transcript()}")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                if self.buf:
                    raise ProtocolError(f"connection closed mid-line {self.buf!r}\n"
                                        + self.transcript())
                self.closed = True
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        if b"\n" in line or b"\r" in line:
            raise ProtocolError(f"bare CR/LF in reply line {line!r}\n{self.transcript()}")
        return line

    def reply(self, timeout=None) -> Reply:
        lines = []
        code = None
        while True:
            raw = self._readline(timeout)
            if raw is None:
                raise ProtocolError("connection closed while waiting for a reply\n"
                                    + self.transcript())
            self._note("S: ", raw)
            line = raw.decode("utf-8", "replace")
            m = LINE_RE.match(line)
            if not m:
                raise ProtocolError(f"malformed reply line {line!r}\n{self.transcript()}")
            c = int(m.group(1))
            if code is not None and c != code:
                raise ProtocolError("code changed inside a multi-line reply\n"
                                    + self.transcript())
            code = c
            lines.append(m.group(3))
            if m.group(2) != "-":
                break
        kind = self.kinds.popleft() if self.kinds else "?"
        r = Reply(code, lines, kind)
        if kind == "DATA" and code == 354:
            self.in_data = True
        self._check_enhanced(r)
        if kind == "EHLO" and code == 250:
            self.esmtp, self.mode = True, "after EHLO"
        elif kind == "HELO" and code == 250:
            self.esmtp, self.mode = False, "after HELO"
        return r

    def _check_enhanced(self, r: Reply):
        if not self.check_enhanced or r.kind in ("EHLO", "HELO") or r.code in (354, 334):
            return  # 334 carries a SASL challenge in base64, never a status code (RFC 4954)
        for line in r.lines:
            m = ENH_RE.match(line)
            if self.esmtp:
                if not m:
                    raise ProtocolError(f"reply line without an enhanced status code after "
                                        f"EHLO: {r.code} {line!r}\n{self.transcript()}")
                if m.group(1) != str(r.code)[0]:
                    raise ProtocolError(f"enhanced code class {m.group(1)} does not match "
                                        f"{r.code}\n{self.transcript()}")
            elif m:
                raise ProtocolError(f"enhanced status code {self.mode}: {r.code} {line!r}\n"
                                    + self.transcript())

    def replies(self, n) -> list[Reply]:
        return [self.reply() for _ in range(n)]

    def cmd(self, line) -> Reply:
        self.send(line)
        return self.reply()

    def expect(self, line, spec: str) -> Reply:
        """Sends line (None: send nothing) and asserts the next reply matches spec."""
        if line is not None:
            self.send(line)
        r = self.reply()
        if not r.matches(spec):
            raise AssertionError(f"expected {spec!r}, got {r.first!r}\n{self.transcript()}")
        return r

    def expect_eof(self, timeout=None):
        """The server closes the connection next, sending nothing more."""
        raw = self._readline(timeout)
        if raw is not None:
            self._note("S: ", raw)
            raise AssertionError(f"expected the connection to close, got {raw!r}\n"
                                 + self.transcript())

    def starttls(self, ctx: ssl.SSLContext, server_hostname=HOSTNAME) -> Reply:
        """STARTTLS, 220 2.0.0, then the handshake on this socket (RFC 3207). Asserts that
        nothing followed the 220 in clear. The session is reset: EHLO again."""
        r = self.expect("STARTTLS", "220 2.0.0")
        if self.buf:
            raise ProtocolError(f"bytes after the 220 to STARTTLS, before the handshake: "
                                f"{self.buf!r}\n{self.transcript()}")
        self.sock = ctx.wrap_socket(self.sock, server_hostname=server_hostname)
        self.log.append(f"-- TLS {self.sock.version()} {self.sock.cipher()[0]}")
        self.esmtp, self.mode = False, "after STARTTLS, before EHLO"
        return r

    @property
    def tls(self) -> bool:
        return isinstance(self.sock, ssl.SSLSocket)

    def ehlo(self, name="client.test") -> Reply:
        return self.expect(f"EHLO {name}", "250")

    def helo(self, name="client.test") -> Reply:
        return self.expect(f"HELO {name}", "250")

    def data(self, message: bytes, spec="250 2.0.0") -> Reply:
        """DATA with the message (already CRLF; dot-stuffed here); returns the final reply."""
        self.expect("DATA", "354")
        self.send_raw(dot_stuff(message) + b".\r\n")
        return self.expect(None, spec)

    def quit(self):
        try:
            self.expect("QUIT", "221")
        finally:
            self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def transcript(self, n=40) -> str:
        return "transcript:\n  " + "\n  ".join(self.log[-n:])

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


# ---------------------------------------------------------------------------------------------
# messages

def dot_stuff(msg: bytes) -> bytes:
    if not msg.endswith(b"\r\n"):
        msg += b"\r\n"
    out = re.sub(rb"(?m)^\.", b"..", msg)
    return out


def make_message(frm="sender@client.test", to="alice@example.org", subject="test",
                 body: bytes | None = None, msgid=None, rnd=None) -> tuple[str, bytes]:
    """(Message-ID, message bytes with CRLF line ends). A random body when body is None."""
    rnd = rnd or random
    msgid = msgid or f"<{uuid.uuid4().hex}@client.test>"
    if body is None:
        n = rnd.randint(1, 40)
        raw = bytes(rnd.getrandbits(8) for _ in range(n * 57))
        b64 = base64.b64encode(raw)
        body = b"\r\n".join(b64[i:i + 76] for i in range(0, len(b64), 76)) + b"\r\n"
    hdr = (f"From: <{frm}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n"
           f"Message-ID: {msgid}\r\nDate: Mon, 01 Jan 2024 00:00:00 +0000\r\n\r\n").encode()
    return msgid, hdr + body


MSGID_RE = re.compile(rb"^Message-ID: (<[^>\r\n]+>)\r?$", re.M | re.I)


def message_id_of(data: bytes) -> str | None:
    m = MSGID_RE.search(data)
    return m.group(1).decode() if m else None


def send_message(conn: Conn, frm: str, rcpts: list[str], message: bytes) -> Reply:
    conn.expect(f"MAIL FROM:<{frm}>", "250")
    for r in rcpts:
        conn.expect(f"RCPT TO:<{r}>", "250")
    return conn.data(message)
