"""``SyncClient`` after ``os.fork()``: the child gets ``ClientForked`` at once (it used to
wait forever on a thread that the fork left behind), ``close()`` in the child returns at
once, and the parent's client keeps working."""

from __future__ import annotations

import os
import time

import pytest

from registry.client import ClientForked, SyncClient, Unavailable

UNREACHABLE = "127.0.0.1:1"


def test_a_forked_child_gets_a_clear_error_and_the_parent_is_unaffected() -> None:
    client = SyncClient([UNREACHABLE], timeout=0.5)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report what happened through the pipe, never return
        os.close(read_end)
        outcome = "returned"
        started = time.monotonic()
        try:
            client.whereis("anything")
        except ClientForked as exc:
            outcome = "ClientForked" if "forked from it" in str(exc) else f"message: {exc}"
        except BaseException as exc:  # pragma: no cover - reported to the parent
            outcome = f"{type(exc).__name__}: {exc}"
        client.close()
        os.write(write_end, f"{outcome} {time.monotonic() - started:.3f}".encode())
        os._exit(0)
    os.close(write_end)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.05)  # polling a child process: no condition to wait on in-process
        else:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung using the client")
        report = os.read(read_end, 1000).decode()
    finally:
        os.close(read_end)
    outcome, seconds = report.rsplit(" ", 1)
    assert outcome == "ClientForked"
    assert float(seconds) < 1.0  # at once, not after a timeout
    # The parent's client still works (it answers: the address is unreachable).
    with pytest.raises(Unavailable, match=r"127\.0\.0\.1:1"):
        client.whereis("anything")
    client.close()
