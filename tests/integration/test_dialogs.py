"""Runs tests/dialogs/*.dialog against a real ternd: short SMTP conversations, chasquid-style.

Format, one directive a line:
    # comment                      (blank lines are ignored too)
    %config section.key = value    the ternd this dialog needs (dialogs with the same config
                                   share one daemon; the base config is the contract's, with
                                   deny = 127.0.0.2/32)
    %bind 127.0.0.2                connect from this loopback address
    c: LINE                        send LINE + CRLF (everything after "c: ", spaces included)
    c*N: LINE                      send LINE + CRLF N times
    c!: RAW                        send raw bytes; \\r \\n \\t \\\\ \\xHH are escapes
    s: 250                         read the next reply; its code must be 250
    s: 550 5.1.1 text              ... and its first line must start with "5.1.1 text"
    s: 250-PIPELINING              some line of the reply just read (read one if none since
                                   the last c:) starts with "PIPELINING"
    s~: text                       the reply just read contains "text" somewhere
    s: eof                         the server closes the connection now
In LINE and RAW, {{N*TEXT}} stands for TEXT repeated N times.

Every reply is also checked for the enhanced-status-code rule (tern_it.Conn), and a dialog that
leaves the connection open ends with an implicit QUIT that must be answered 221: so a stray
extra reply anywhere in a dialog fails it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tern_it import REPO, Conn

DIALOGS = sorted((REPO / "tests" / "dialogs").glob("*.dialog"))
BASE_CONFIG = {"policy.deny": "127.0.0.2/32"}


@dataclass
class Dialog:
    path: Path
    config: dict = field(default_factory=dict)
    bind: str | None = None
    steps: list = field(default_factory=list)  # (kind, payload, lineno)


def expand(text: str) -> str:
    return re.sub(r"\{\{(\d+)\*(.*?)\}\}", lambda m: m.group(2) * int(m.group(1)), text)


def unescape(text: str) -> bytes:
    out = bytearray()
    i = 0
    raw = text.encode()
    while i < len(raw):
        ch = raw[i:i + 1]
        if ch == b"\\" and i + 1 < len(raw):
            nxt = raw[i + 1:i + 2]
            if nxt == b"x":
                out += bytes([int(raw[i + 2:i + 4], 16)])
                i += 4
                continue
            out += {b"r": b"\r", b"n": b"\n", b"t": b"\t", b"\\": b"\\"}[nxt]
            i += 2
            continue
        out += ch
        i += 1
    return bytes(out)


def parse(path: Path) -> Dialog:
    d = Dialog(path)
    for n, line in enumerate(path.read_text().split("\n"), 1):
        line = line.rstrip("\r")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line.startswith("%config "):
            key, _, value = line[len("%config "):].partition("=")
            d.config[key.strip()] = value.strip()
        elif line.startswith("%bind "):
            d.bind = line[len("%bind "):].strip()
        elif m := re.match(r"^c(?:\*(\d+))?:(?: (.*))?$", line):
            d.steps += [("c", expand(m.group(2) or ""), n)] * int(m.group(1) or 1)
        elif line.startswith("c!:"):
            d.steps.append(("raw", unescape(expand(line[3:].lstrip(" "))), n))
        elif line.startswith("s~:"):
            d.steps.append(("contains", line[3:].strip(), n))
        elif line.startswith("s:"):
            spec = line[2:].strip()
            if spec == "eof":
                d.steps.append(("eof", None, n))
            elif re.match(r"^\d{3}-", spec):
                d.steps.append(("line", spec, n))
            elif re.match(r"^\d{3}( |$)", spec):
                d.steps.append(("reply", spec, n))
            else:
                raise ValueError(f"{path.name}:{n}: bad expectation {line!r}")
        else:
            raise ValueError(f"{path.name}:{n}: cannot parse {line!r}")
    if not d.steps or d.steps[0][0] not in ("reply", "line"):
        raise ValueError(f"{path.name}: a dialog starts by reading the greeting (s: 220)")
    return d


@pytest.fixture(scope="module")
def dialog_servers(module_ternd_factory):
    cache = {}

    def get(config: dict):
        merged = dict(BASE_CONFIG)
        merged.update(config)
        key = tuple(sorted(merged.items()))
        if key not in cache:
            cache[key] = module_ternd_factory(config=merged, name=f"dialog{len(cache)}")
        return cache[key].ensure_running()
    return get


# Every reply code of the seed tables (/work/shared/seeds) that tern can be made to give today.
# Not here: 211 (tern answers HELP with 214), 251 (no forwarding), 451/455 (local failures),
# 521, 235/334/530/535/538 (no AUTH yet), 454 (no TLS yet).
SEED_CODES = {220, 221, 214, 250, 252, 354, 421, 450, 452, 500, 501, 502, 503, 504, 550, 551,
              552, 553, 554, 555}


def test_dialog_count_and_seed_codes_covered():
    assert len(DIALOGS) >= 40, f"only {len(DIALOGS)} dialogs in tests/dialogs"
    seen = set()
    for p in DIALOGS:
        seen |= {int(payload[:3]) for kind, payload, _ in parse(p).steps
                 if kind in ("reply", "line")}
    assert SEED_CODES <= seen, f"no dialog expects {sorted(SEED_CODES - seen)}"


@pytest.mark.parametrize("path", DIALOGS, ids=[p.stem for p in DIALOGS])
def test_dialog(dialog_servers, path):
    d = parse(path)
    srv = dialog_servers(d.config)
    c = Conn(srv.smtp_port, bind=d.bind, greet=False)
    current = None
    closed = False

    def fail(n, msg):
        pytest.fail(f"{path.name}:{n}: {msg}\n{c.transcript()}", pytrace=False)

    try:
        for kind, payload, n in d.steps:
            if kind == "c":
                c.send(payload)
                current = None
            elif kind == "raw":
                c.send_raw(payload)
                current = None
            elif kind == "reply":
                current = c.reply()
                if not current.matches(payload):
                    fail(n, f"expected {payload!r}, got:\n{current}")
            elif kind == "line":
                if current is None:
                    current = c.reply()
                code, text = payload[:3], payload[4:]
                if str(current.code) != code or not current.has_line(text):
                    fail(n, f"expected a line {payload!r} in:\n{current}")
            elif kind == "contains":
                if current is None or payload not in "\n".join(current.lines):
                    fail(n, f"expected {payload!r} in the last reply:\n{current}")
            elif kind == "eof":
                c.expect_eof()
                closed = True
        if not closed:
            r = c.cmd("QUIT")
            if r.code != 221:
                fail("end", f"implicit QUIT answered {r} (a stray reply?)")
            c.expect_eof()
    except AssertionError as e:  # ProtocolError from the client: already has a transcript
        pytest.fail(f"{path.name}: {e}", pytrace=False)
    finally:
        c.close()
