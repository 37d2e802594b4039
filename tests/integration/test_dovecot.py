"""Reading mail with Dovecot: contrib/dovecot/dovecot.conf over the Maildirs a real ternd writes.

One ternd (users with yescrypt and SCRAM passwords, a locked user, and the shared mailbox
team@example.org for alice and bob in its `mailboxes` file) receives a message for alice and one
for team@example.org over SMTP. Then a real Dovecot starts from the contrib configuration, its
placeholders filled in for that data dir, with test-only overrides (loopback ports chosen free
at run time, its own base_dir, state_dir and log file); TLS stays as configured, on tern's
certificate. Python's imaplib then checks who reads what. Dovecot is stopped by PID (SIGTERM,
then SIGKILL); a failing test prints its log.

The test writes no dovecot-acl itself: the shared Maildir and its dovecot-acl are ternd's work
(from the `mailboxes` file).
"""
from __future__ import annotations

import functools
import grp
import imaplib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from tern_it import (REPO, TIMEOUT, crypt_hash, free_port, make_message, scram_hash)

DOVECOT = Path("/usr/sbin/dovecot")
DOVECONF = Path("/usr/bin/doveconf")
IMAP_BINARY = Path("/usr/lib/dovecot/imap")  # from dovecot-imapd
CONTRIB = REPO / "contrib" / "dovecot" / "dovecot.conf"

PASSWORDS = {
    "alice@example.org": "alice-Wonderland-7",
    "bob@example.org": "bob-Builder-42",
    "carol@example.net": "carol-Singer-3",
    "dave@example.org": "dave-Locked-0",
}
# (address, name, extra fields, stored password): yescrypt, SCRAM-SHA-256, and a locked user
USERS = [
    ("alice@example.org", "Alice Liddell", "admin", crypt_hash(PASSWORDS["alice@example.org"])),
    ("bob@example.org", "Bob Smith", "", scram_hash(PASSWORDS["bob@example.org"])),
    ("carol@example.net", "Carol Smith", "userdb_quota_rule=*:storage=10M",
     crypt_hash(PASSWORDS["carol@example.net"])),
    ("dave@example.org", "Dave Locked", "nologin", crypt_hash(PASSWORDS["dave@example.org"])),
]
ALIASES = ["postmaster: alice@example.org"]
MAILBOXES = ["team@example.org: alice@example.org, bob@example.org"]
TEAM = "team@example.org"
SHARED = "Shared/example.org/team"  # team@example.org as Dovecot shows it


def require_dovecot():
    missing = [str(p) for p in (DOVECOT, DOVECONF, IMAP_BINARY) if not p.exists()]
    if missing:
        pytest.fail(f"Dovecot is not installed ({', '.join(missing)} missing): it is a test "
                    "dependency; run scripts/deps.sh (apt-get install dovecot-imapd)",
                    pytrace=False)
    if os.geteuid() != 0:
        pytest.fail("the Dovecot tests need root: Dovecot's master starts as root to run mail "
                    "sessions as tern's user", pytrace=False)


class Dovecot:
    """A private Dovecot: the contrib configuration, placeholders filled in, included from a
    test configuration that only adds loopback listeners on free ports and its own dirs."""

    def __init__(self, data_dir: Path, user: str, group: str):
        self.root = Path(tempfile.mkdtemp(prefix="tern-it-dovecot-", dir="/tmp"))
        os.chmod(self.root, 0o755)  # login processes (dovenull) reach base_dir
        self.etc = self.root / "etc"          # what /etc/dovecot is to an administrator
        self.base_dir = self.root / "run"
        self.state_dir = self.root / "state"
        self.log_path = self.root / "dovecot.log"
        self.out_path = self.root / "dovecot.out"  # the master's stdout/stderr
        for d in (self.etc, self.state_dir):
            d.mkdir()
        self.conf = self.etc / "dovecot.conf"
        self.test_conf = self.etc / "test.conf"
        self.subst = {"@DATA_DIR@": str(data_dir), "@TERN_USER@": user, "@TERN_GROUP@": group}
        self.imap_port = free_port()
        self.imaps_port = free_port()
        self.proc: subprocess.Popen | None = None
        self.children: set[int] = set()

    def install(self):
        """The README's steps: copy, substitute, `doveconf -n` (no errors, no warnings)."""
        text = CONTRIB.read_text()
        for k, v in self.subst.items():
            text = text.replace(k, v)
        left = sorted(set(re.findall(r"@[A-Z_]+@", text)))
        assert not left, f"placeholders left in {CONTRIB} after substitution: {left}"
        self.conf.write_text(text)
        self.test_conf.write_text(f"""\
# test-only overrides of {self.conf}
!include {self.conf}
base_dir = {self.base_dir}
state_dir = {self.state_dir}
log_path = {self.log_path}
listen = 127.0.0.1
service imap-login {{
  inet_listener imap {{
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    port = {self.imaps_port}
  }}
}}
""")
        for conf in (self.conf, self.test_conf):
            r = subprocess.run([str(DOVECONF), "-n", "-c", str(conf)], capture_output=True,
                               text=True, timeout=30)
            assert r.returncode == 0 and not r.stderr.strip(), \
                f"doveconf -n -c {conf} exited {r.returncode}:\n{r.stderr}"

    def start(self, timeout=20.0):
        with open(self.out_path, "ab") as out:
            self.proc = subprocess.Popen([str(DOVECOT), "-F", "-c", str(self.test_conf)],
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dovecot exited with {self.proc.returncode} while "
                                   f"starting:\n{self.log_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.imap_port), timeout=5) as s:
                    greeting = s.makefile("rb").readline()
                if not greeting.startswith(b"* OK"):
                    raise RuntimeError(f"dovecot greeted {greeting!r}:\n{self.log_text()}")
                return self
            except (ConnectionRefusedError, ConnectionResetError, socket.timeout) as e:
                last = e
                time.sleep(0.05)
        raise RuntimeError(f"dovecot not ready after {timeout}s ({last}):\n{self.log_text()}")

    def _child_pids(self) -> set[int]:
        """The master's direct children (auth, imap-login, imap, ...), from /proc."""
        pids = set()
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == self.proc.pid:
                pids.add(int(d.name))
        return pids

    def stop(self, timeout=10.0) -> list[str]:
        """SIGTERM the master, SIGKILL after timeout; then any child of ours it left behind.
        Returns notes on anything that did not go as it should."""
        notes = []
        if self.proc is None:
            return notes
        if self.proc.poll() is None:
            self.children = self._child_pids()
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
                notes.append(f"dovecot still running {timeout:.0f} s after SIGTERM; killed")
        else:
            notes.append(f"dovecot (pid {self.proc.pid}) had exited with "
                         f"{self.proc.returncode} before the end of the tests")
        deadline = time.monotonic() + 5
        for pid in sorted(self.children):
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.05)
            if _alive(pid):
                name = _cmdline(pid)
                os.kill(pid, signal.SIGKILL)
                notes.append(f"dovecot child {pid} ({name}) outlived its master; killed")
        return notes

    def log_text(self) -> str:
        out = []
        for p in (self.log_path, self.out_path):
            try:
                text = p.read_text(errors="replace")
            except FileNotFoundError:
                continue
            if text.strip():
                out.append(f"== {p}\n{text}")
        return "\n".join(out) or "(dovecot logged nothing)"

    def cleanup(self):
        if not os.environ.get("TERN_IT_KEEP"):
            shutil.rmtree(self.root, ignore_errors=True)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return "?"


def _alive(pid: int) -> bool:
    """Running, not a zombie and not gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class SourceIMAP4(imaplib.IMAP4):
    """imaplib.IMAP4 from a chosen source address."""

    def __init__(self, host, port, timeout, source=None):
        self.source = source
        super().__init__(host, port, timeout=timeout)

    def _create_socket(self, timeout):
        return socket.create_connection((self.host, self.port), timeout,
                                        source_address=(self.source, 0) if self.source else None)


class Env:
    def __init__(self, ternd, dovecot, alice_id, team_id, team_error):
        self.ternd = ternd
        self.dovecot = dovecot
        self.alice_id = alice_id    # Message-ID of the message sent to alice@example.org
        self.team_id = team_id      # ... and of the one sent to team@example.org
        self.team_error = team_error  # why ternd did not take the message for team, or None
        self.sessions: list[imaplib.IMAP4] = []  # closed after each test, even a failed one

    def imap(self, user, password=None, implicit_tls=False, source=None,
             timeout=TIMEOUT) -> imaplib.IMAP4:
        """A logged-in IMAP session over TLS (STARTTLS, or implicit on the imaps port) that
        checks tern's certificate. source: the client's loopback address."""
        ctx = self.ternd.tls_context()
        if implicit_tls:
            m = imaplib.IMAP4_SSL("127.0.0.1", self.dovecot.imaps_port, ssl_context=ctx,
                                  timeout=timeout)
        else:
            m = SourceIMAP4("127.0.0.1", self.dovecot.imap_port, timeout=timeout,
                            source=source)
            m.starttls(ssl_context=ctx)
        self.sessions.append(m)
        m.login(user, PASSWORDS.get(user.lower(), "") if password is None else password)
        return m

    def close_sessions(self):
        for m in self.sessions:
            try:
                m.shutdown()
            except OSError:
                pass
        self.sessions.clear()

    def require_team(self):
        """The steps that need ternd's shared mailbox support (the `mailboxes` file): the
        delivery to team@example.org, and the Maildir and dovecot-acl ternd makes for it."""
        assert self.team_error is None, \
            f"ternd did not accept the message for {TEAM}: {self.team_error}"
        acl = self.ternd.maildir(TEAM) / "dovecot-acl"
        deadline = time.monotonic() + 10  # ternd writes it on a worker just after start
        while not acl.is_file() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert acl.is_file(), f"ternd wrote no {acl} for the members in its mailboxes file"
        return acl


def quoted(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


LIST_RE = re.compile(rb'^\((?P<flags>[^)]*)\) (?:NIL|"(?:[^"\\]|\\.)*") (?P<name>.+)$')


def list_names(m: imaplib.IMAP4, pattern="*") -> dict[str, str]:
    """LIST "" pattern: {mailbox name: its flags}."""
    typ, data = m.list('""', quoted(pattern))
    assert typ == "OK", (typ, data)
    out = {}
    for item in data:
        if item is None:
            continue
        if isinstance(item, tuple):  # name sent as a literal
            head, name = item
            flags = LIST_RE.match(head.rstrip() + b" x").group("flags")
        else:
            mm = LIST_RE.match(item)
            assert mm, f"unparsed LIST response {item!r}"
            flags, name = mm.group("flags"), mm.group("name")
            if name.startswith(b'"'):
                name = re.sub(rb'\\(.)', rb'\1', name[1:-1])
        out[name.decode()] = flags.decode()
    return out


def messages(m: imaplib.IMAP4) -> list[tuple[str, set[str]]]:
    """(Message-ID, flags) of every message in the selected mailbox, without setting \\Seen."""
    typ, data = m.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
    assert typ == "OK", (typ, data)
    out = []
    for item in data:
        if not isinstance(item, tuple):
            continue
        flags = set(re.search(rb"FLAGS \(([^)]*)\)", item[0]).group(1).decode().split())
        mid = re.search(rb"(?im)^Message-ID:\s*(<[^>]+>)", item[1])
        out.append((mid.group(1).decode() if mid else None, flags))
    return out


def select(m: imaplib.IMAP4, name: str, readonly=False) -> int:
    typ, data = m.select(quoted(name), readonly=readonly)
    assert typ == "OK", f"SELECT {name}: {typ} {data}"
    return int(data[0])


def dovecot_log_on_failure(test):
    """Prints Dovecot's log (shown with the failure) when the test fails."""
    @functools.wraps(test)
    def run(*args, **kwargs):
        try:
            return test(*args, **kwargs)
        except BaseException:
            env = kwargs.get("env")
            if env is not None:
                print(f"---- Dovecot log ----\n{env.dovecot.log_text()}")
            raise
    return run


# ---------------------------------------------------------------------------------------------
# the fixture: one ternd, two messages, one Dovecot, for the whole module

@pytest.fixture(scope="module")
def module_env(module_ternd_factory):
    require_dovecot()
    t = module_ternd_factory(users=USERS, aliases=ALIASES, mailboxes=MAILBOXES, tls=True)
    # the permissions `tern init` and `make run` give: only tern's user reaches the users file
    os.chmod(t.data_dir, 0o750)
    os.chmod(t.data_dir / "users", 0o640)

    alice_id, alice_msg = make_message(to="alice@example.org", subject="for alice only")
    team_id, team_msg = make_message(to=TEAM, subject="for the team")
    team_error = None
    with t.smtp() as c:
        c.ehlo()
        c.expect("MAIL FROM:<sender@client.test>", "250")
        c.expect("RCPT TO:<alice@example.org>", "250")
        c.data(alice_msg)
        c.expect("MAIL FROM:<sender@client.test>", "250")
        r = c.cmd(f"RCPT TO:<{TEAM}>")
        if r.code == 250:
            r = c.data(team_msg, spec="250")
        else:
            team_error = r.first
            c.expect("RSET", "250")
        c.quit()

    pw = pwd.getpwnam(t.run_user)
    d = Dovecot(t.data_dir, t.run_user, grp.getgrgid(pw.pw_gid).gr_name)
    try:
        d.install()
        d.start()
        yield Env(t, d, alice_id, team_id, team_error)
    finally:
        notes = d.stop()
        log = d.log_text()
        d.cleanup()
    if notes:
        pytest.fail("\n".join(notes) + "\n" + log, pytrace=False)


@pytest.fixture
def env(module_env) -> Env:
    module_env.ternd.ensure_running()  # its log goes into a failure report too
    assert module_env.dovecot.proc.poll() is None, \
        f"dovecot has exited ({module_env.dovecot.proc.returncode}):\n" \
        + module_env.dovecot.log_text()
    yield module_env
    module_env.close_sessions()


# ---------------------------------------------------------------------------------------------
# the tests

@dovecot_log_on_failure
def test_users_log_in_with_their_own_passwords(env):
    for user in ("alice@example.org", "bob@example.org", "carol@example.net"):
        m = env.imap(user)  # yescrypt, SCRAM-SHA-256 stored keys, yescrypt
        m.logout()
    m = env.imap("carol@example.net", implicit_tls=True)  # imaps
    m.logout()


@dovecot_log_on_failure
def test_private_inbox(env):
    m = env.imap("alice@example.org")
    assert select(m, "INBOX") == 1
    assert [mid for mid, _ in messages(m)] == [env.alice_id]
    m.logout()
    # the login name is case-insensitive and still reaches the lower-case Maildir
    m = env.imap("Alice@Example.ORG", PASSWORDS["alice@example.org"])
    assert select(m, "INBOX", readonly=True) == 1
    m.logout()
    m = env.imap("carol@example.net")
    assert select(m, "INBOX") == 0
    m.logout()


@dovecot_log_on_failure
def test_user_maildirs_are_not_shared(env):
    """The public namespace spans DATA_DIR/mail, where every user's Maildir is too: without a
    dovecot-acl they give nobody any right, so nobody sees them there."""
    for user, other in [("alice@example.org", "example.org/bob"),
                        ("carol@example.net", "example.org/alice"),
                        ("bob@example.org", "example.org/alice")]:
        m = env.imap(user)
        for name in (f"Shared/{other}", f"Shared/{user.split('@')[1]}/{user.split('@')[0]}"):
            typ, data = m.select(quoted(name), readonly=True)
            assert typ == "NO", f"{user} could SELECT {name}: {data}"
        names = list_names(m)
        assert not [n for n, flags in names.items() if n.startswith("Shared/")
                    and n != SHARED and "\\noselect" not in flags.lower()], names
        m.logout()


@dovecot_log_on_failure
def test_members_share_the_mailbox_and_its_flags(env):
    acl = env.require_team()
    text = acl.read_text()
    assert re.search(r"(?m)^user=alice@example\.org ", text) \
        and re.search(r"(?m)^user=bob@example\.org ", text) and "carol" not in text, text

    alice = env.imap("alice@example.org")
    assert SHARED in list_names(alice)
    assert select(alice, SHARED) == 1
    [(mid, flags)] = messages(alice)
    assert mid == env.team_id and "\\Seen" not in flags, (mid, flags)

    bob = env.imap("bob@example.org")
    assert SHARED in list_names(bob)
    assert select(bob, SHARED) == 1
    [(mid, flags)] = messages(bob)
    assert mid == env.team_id and "\\Seen" not in flags, (mid, flags)
    # the same bytes for both: what tern stored
    body = {}
    for who, m in (("alice", alice), ("bob", bob)):
        typ, data = m.fetch("1", "(BODY.PEEK[])")
        assert typ == "OK", data
        body[who] = data[0][1]
    assert body["alice"] == body["bob"]
    assert env.team_id.encode() in body["alice"]

    # alice reads it: bob's open session and a new one see \Seen
    typ, data = alice.store("1", "+FLAGS", "(\\Seen)")
    assert typ == "OK", data
    assert bob.noop()[0] == "OK"
    typ, data = bob.fetch("1", "(FLAGS)")
    assert typ == "OK" and b"\\Seen" in data[0], data
    bob.logout()
    bob = env.imap("bob@example.org")
    select(bob, SHARED, readonly=True)
    assert messages(bob) == [(env.team_id, {"\\Seen"})]
    bob.logout()
    alice.logout()

    # the flag is in the one shared Maildir (Maildir ":2,S"), which Dovecot used as tern's user
    maildir = env.ternd.maildir(TEAM)
    files = list((maildir / "cur").iterdir()) + list((maildir / "new").iterdir())
    assert len(files) == 1 and files[0].parent.name == "cur" \
        and files[0].name.endswith(":2,S"), files
    assert files[0].read_bytes() == body["alice"]
    uid = pwd.getpwnam(env.ternd.run_user).pw_uid
    for top in (env.ternd.data_dir / "mail", env.ternd.data_dir / "dovecot"):
        for p in [top, *top.rglob("*")]:
            assert p.lstat().st_uid == uid, f"{p} is not owned by {env.ternd.run_user}"
    # Dovecot's indexes of shared mailboxes live in DATA_DIR/dovecot, not in tern's Maildirs;
    # at the top of DATA_DIR/mail only the acl plugin's list of shared mailboxes (its place is
    # fixed: the namespace's root)
    assert not [p.name for p in maildir.iterdir()
                if p.name.startswith("dovecot") and p.name != "dovecot-acl"]
    assert set(p.name for p in (env.ternd.data_dir / "mail").iterdir()) \
        <= {"example.net", "example.org", "dovecot-acl-list"}
    assert (env.ternd.data_dir / "dovecot" / "public" / "example.org" / "team").is_dir()


@dovecot_log_on_failure
def test_subscriptions_are_per_user(env):
    env.require_team()
    alice = env.imap("alice@example.org")
    assert alice.subscribe(quoted(SHARED))[0] == "OK"
    typ, data = alice.lsub('""', "*")
    assert typ == "OK" and any(d and SHARED.encode() in d for d in data), data
    alice.logout()
    bob = env.imap("bob@example.org")
    typ, data = bob.lsub('""', "*")
    assert typ == "OK" and not any(d and SHARED.encode() in d for d in data), data
    bob.logout()


@dovecot_log_on_failure
def test_non_member_cannot_see_the_shared_mailbox(env):
    env.require_team()  # else this would prove nothing: nobody would see it
    carol = env.imap("carol@example.net")
    names = list_names(carol)
    assert not [n for n in names if "team" in n or n.startswith("Shared")], names
    for readonly in (False, True):
        typ, data = carol.select(quoted(SHARED), readonly=readonly)
        assert typ == "NO", f"carol could {'EXAMINE' if readonly else 'SELECT'} {SHARED}: {data}"
    typ, data = carol.status(quoted(SHARED), "(MESSAGES)")
    assert typ == "NO", data
    carol.logout()


@dovecot_log_on_failure
def test_members_cannot_delete_the_shared_mailbox_or_add_folders(env):
    env.require_team()
    alice = env.imap("alice@example.org")
    typ, data = alice._simple_command("DELETE", quoted(SHARED))
    assert typ == "NO", f"alice deleted {SHARED}: {data}"
    typ, data = alice._simple_command("RENAME", quoted(SHARED), quoted("Shared/example.org/x"))
    assert typ == "NO", f"alice renamed {SHARED}: {data}"
    # no subfolders either: Dovecot would make them outside the Maildir++ layout tern reads
    typ, data = alice._simple_command("CREATE", quoted(SHARED + "/Sub"))
    assert typ == "NO", f"alice created a folder under {SHARED}: {data}"
    assert select(alice, SHARED, readonly=True) == 1
    alice.logout()


@dovecot_log_on_failure
def test_wrong_passwords_and_locked_users_are_refused(env):
    """Last: Dovecot delays every failed login (2 s) and then further logins from the same
    address, so each attempt comes from its own loopback address, all at once."""
    cases = [("alice@example.org", "wrong"),
             ("alice@example.org", PASSWORDS["bob@example.org"]),
             ("bob@example.org", PASSWORDS["alice@example.org"]),
             ("nobody@example.org", "x"),
             ("dave@example.org", None)]  # locked by `tern user lock`: the nologin field
    results = {}

    def attempt(i, user, password):
        try:
            env.imap(user, password, source=f"127.0.0.{10 + i}", timeout=30).logout()
            results[i] = "logged in"
        except imaplib.IMAP4.error as e:
            results[i] = e
        except Exception as e:  # noqa: BLE001 - reported below
            results[i] = f"unexpected {e!r}"

    threads = [threading.Thread(target=attempt, args=(i, u, p))
               for i, (u, p) in enumerate(cases)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    for i, (user, password) in enumerate(cases):
        assert isinstance(results.get(i), imaplib.IMAP4.error), \
            f"{user} with password {password!r}: {results.get(i)}"
    assert "LOGIN" in str(results[4]).upper() or "CONTACTADMIN" in str(results[4]), results[4]
