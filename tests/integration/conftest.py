"""pytest fixtures for tern's integration tests.

Each ternd gets its own temporary data dir (config, users, aliases), its own free ports > 20000,
runs in the foreground as a child of pytest, and is stopped by PID at teardown: SIGTERM, then
SIGKILL after 10 s. A sanitizer report (ASan, UBSan, LSan) anywhere in its stderr fails the test.

    TERND=path    the daemon to test (default build/ternd, relative to the repo root)
    TERN_IT_KEEP=1  keep the temporary data dirs and logs
"""
from __future__ import annotations

import pytest

import tern_it
from tern_it import Ternd


class Servers:
    """Starts ternds and tears every one of them down."""

    def __init__(self):
        self.started: list[Ternd] = []

    def __call__(self, config=None, users=None, aliases=None, env=None, start=True,
                 name="ternd", tls=False, smtps=False, mailboxes=None) -> Ternd:
        t = Ternd(config=config, users=users, aliases=aliases, env=env, name=name, tls=tls,
                  smtps=smtps, mailboxes=mailboxes)
        self.started.append(t)
        if start:
            t.start()
        return t

    def finish(self):
        reports, notes = [], []
        for t in self.started:
            t.stop()
            notes += t.notes
            rep = t.sanitizer_report()
            if rep:
                reports.append(f"ternd (pid {t.proc.pid if t.proc else '?'}, "
                               f"{t.log_path}):\n{rep}")
            t.cleanup()
        self.started.clear()
        if reports:
            pytest.fail("sanitizer report in ternd's stderr:\n" + "\n\n".join(reports),
                        pytrace=False)
        if notes:
            pytest.fail("\n".join(notes), pytrace=False)


@pytest.fixture
def ternd_factory():
    """make(config={"section.key": value}, users=[...], aliases=[...], tls=False,
    smtps=False, mailboxes=None) -> a started Ternd. tls: a self-signed certificate in [tls];
    smtps: that and an implicit-TLS listener (Ternd.smtps_port); mailboxes: lines of the shared
    mailboxes file (DATA_DIR/mailboxes, named in [server])."""
    s = Servers()
    yield s
    s.finish()


@pytest.fixture(scope="module")
def module_ternd_factory():
    s = Servers()
    yield s
    s.finish()


@pytest.fixture(scope="module")
def module_server(module_ternd_factory) -> Ternd:
    return module_ternd_factory(config={"policy.vrfy": "all", "policy.expn": "all",
                                        "policy.deny": "127.0.0.2/32"})


@pytest.fixture
def server(module_server) -> Ternd:
    """The shared daemon of a test module: the contract's config with VRFY and EXPN answered
    to everyone, and 127.0.0.2 on the deny list. Restarted (crash noted) if a test killed it."""
    return module_server.ensure_running()


def mailbox(t: Ternd, addr: str):
    """Delivered messages of a mailbox (helper also importable as tern_it.read_mailbox)."""
    return t.mailbox(addr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    tern_it.USED.clear()
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and rep.when in ("call", "setup", "teardown"):
        for t in tern_it.USED:
            t.check_exit()
            tail = t.log_tail(40)
            if t.notes:
                tail += "\n" + "\n".join(t.notes)
            rep.sections.append((f"ternd log {t.log_path} (tail)", tail))
