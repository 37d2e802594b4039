"""Password hashing must not block ternd's event loop: yescrypt is slow on purpose, so AUTH
verifies on worker threads while the loop keeps answering everyone else. A correctness property,
not a benchmark: with hashing on the loop, 20 concurrent AUTHs hold every other client for the
sum of 20 hashes; off the loop, a NOOP elsewhere comes back in about no time at all."""
from __future__ import annotations

import base64
import statistics
import threading
import time

from tern_it import DEFAULT_ALIASES, Conn, crypt_hash

N_AUTH = 20
PASSWORD = "loop test pw"


def auth_plain(c: Conn, user, pw):
    c.expect("AUTH PLAIN " + base64.b64encode(f"\0{user}\0{pw}".encode()).decode(),
             "235 2.7.0")


def test_auth_does_not_block_loop(ternd_factory):
    # yescrypt at cost jCT (~0.1 s a hash here): 20 of them serialised would be ~2 s
    stored = crypt_hash(PASSWORD, cost="jCT")
    users = [(f"loop{i}@example.org", f"Loop {i}", "", stored) for i in range(N_AUTH)]
    users.append(("alice@example.org", "Alice Liddell", "", stored))
    aliases = [a for a in DEFAULT_ALIASES if not a.startswith("team@")]
    t = ternd_factory(users=users, aliases=aliases, tls=True,
                      config={"auth.plaintext": "loopback"}, name="authloop")

    def lone_auth(i):
        with Conn(t.submission_port, bind=f"127.0.7.{i}") as c:
            c.ehlo()
            t0 = time.monotonic()
            auth_plain(c, "alice@example.org", PASSWORD)
            took = time.monotonic() - t0
            c.quit()
        return took

    lone_auth(200)  # warm-up: first use of the worker pool, page faults of the hash's memory
    lone = statistics.median(lone_auth(201 + i) for i in range(3))

    conns = [Conn(t.submission_port, bind=f"127.0.8.{i + 1}", timeout=60)
             for i in range(N_AUTH)]
    for c in conns:
        c.ehlo()
    pinger = Conn(t.smtp_port, bind="127.0.8.250")
    pinger.ehlo()
    barrier = threading.Barrier(N_AUTH + 1)
    results: list = [None] * N_AUTH
    done = threading.Event()

    def do_auth(i):
        try:
            barrier.wait(10)
            t0 = time.monotonic()
            auth_plain(conns[i], f"loop{i}@example.org", PASSWORD)
            results[i] = time.monotonic() - t0
        except BaseException as e:  # reported below
            results[i] = e

    threads = [threading.Thread(target=do_auth, args=(i,)) for i in range(N_AUTH)]
    for th in threads:
        th.start()
    rtts = []
    barrier.wait(10)
    t_start = time.monotonic()
    waiter = threading.Thread(target=lambda: ([th.join(60) for th in threads], done.set()))
    waiter.start()
    while not done.is_set() or len(rtts) < 5:
        t0 = time.monotonic()
        pinger.expect("NOOP", "250")
        rtts.append(time.monotonic() - t0)
        time.sleep(0.005)
    burst = time.monotonic() - t_start
    waiter.join()
    pinger.quit()
    for c in conns:
        c.close()

    errors = [r for r in results if not isinstance(r, float)]
    assert not errors, f"AUTHs failed: {errors[:3]}"
    limit = lone * 1.5 + 0.2
    print(f"lone AUTH (yescrypt) {lone * 1000:.0f} ms; {N_AUTH} concurrent AUTHs done in "
          f"{burst:.2f} s (slowest {max(results):.2f} s); NOOP round trip max "
          f"{max(rtts) * 1000:.0f} ms, median {statistics.median(rtts) * 1000:.1f} ms over "
          f"{len(rtts)} NOOPs; limit {limit * 1000:.0f} ms")
    assert max(rtts) < limit, (
        f"the event loop stalled during AUTH: a NOOP took {max(rtts):.3f} s while one hash "
        f"takes {lone:.3f} s (limit {limit:.3f} s): is the hashing on the loop thread?")
