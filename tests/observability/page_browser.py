"""Headless Chromium driven over the DevTools protocol, with nothing but the stdlib.

Chromium's ``--remote-debugging-pipe`` reads DevTools commands from fd 3 and writes
answers and events to fd 4, each a JSON object ending in a NUL byte. That is all a test
needs to open a page, run JavaScript in it and wait for the DOM to show something —
without playwright or selenium, and without a websocket client.

Every read has a deadline; ``close()`` ends the browser's whole process group (it was
started in its own session) and removes its profile directory, also after a failure.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

CHROMIUM = "/usr/bin/chromium"
T = TypeVar("T")

FLAGS = (
    "--headless",
    "--no-sandbox",  # containers and CI runners rarely allow the setuid/namespace sandbox
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--remote-debugging-pipe",
)


class BrowserError(AssertionError):
    """Chromium answered a command with an error, went away, or did not answer in time."""


class Browser:
    def __init__(self, executable: str = CHROMIUM, window: tuple[int, int] = (1280, 1000)) -> None:
        self._profile = Path(tempfile.mkdtemp(prefix="registry-chromium-"))
        self._next_id = 0
        self._buffer = b""
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        width, height = window
        argv = [
            executable,
            *FLAGS,
            f"--user-data-dir={self._profile}",
            f"--window-size={width},{height}",
            "about:blank",
        ]
        # bash (dash takes single-digit fds only) puts our pipe ends on the fds Chromium
        # expects, 3 and 4, then execs it.
        script = f'exec "$@" 3<&{to_child_r} 4>&{from_child_w} {to_child_r}<&- {from_child_w}>&-'
        self.log_path = self._profile.with_suffix(".log")
        try:
            with self.log_path.open("wb") as log:
                self.proc = subprocess.Popen(
                    ["/bin/bash", "-c", script, "bash", *argv],
                    pass_fds=(to_child_r, from_child_w),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        except BaseException:
            self._close_fds(self._to_child, self._from_child)
            shutil.rmtree(self._profile, ignore_errors=True)
            raise
        finally:
            self._close_fds(to_child_r, from_child_w)

    @staticmethod
    def _close_fds(*fds: int) -> None:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no chromium log)"
        return "\n".join(text.splitlines()[-lines:])

    # -- the protocol ------------------------------------------------------------------

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        session: str | None = None,
        timeout: float = 15.0,
    ) -> dict[str, Any]:
        """Send one command and wait (bounded) for its answer; events are skipped."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        try:
            os.write(self._to_child, json.dumps(message).encode() + b"\0")
        except OSError as exc:
            raise BrowserError(f"chromium is gone ({exc}):\n{self.log_tail()}") from None
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline, method)
            if reply.get("id") != self._next_id:
                continue  # an event, or the answer to an earlier command that timed out
            if "error" in reply:
                raise BrowserError(f"{method}: {reply['error']}")
            result: dict[str, Any] = reply.get("result", {})
            return result

    def _read(self, deadline: float, method: str) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrowserError(f"no answer to {method} in time:\n{self.log_tail()}")
            ready, _, _ = select.select([self._from_child], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(self._from_child, 1 << 16)
            if not chunk:
                raise BrowserError(f"chromium closed the pipe during {method}:\n{self.log_tail()}")
            self._buffer += chunk
        raw, _, self._buffer = self._buffer.partition(b"\0")
        value: dict[str, Any] = json.loads(raw)
        return value

    def open(self, url: str) -> Page:
        """A new tab showing ``url``, attached so that commands can be sent to it."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        page = Page(self, session)
        page.navigate(url)
        return page

    # -- lifecycle ---------------------------------------------------------------------

    def close(self) -> None:
        """End Chromium (all its processes) and remove its profile; safe to call twice."""
        if self.proc.poll() is None:
            with contextlib.suppress(BrowserError, OSError):
                self.call("Browser.close", timeout=3.0)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5.0)
        # Renderers and the zygote are in the session Popen started; end any left.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5.0)
        self._close_fds(self._to_child, self._from_child)
        shutil.rmtree(self._profile, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.log_path.unlink()


class Page:
    def __init__(self, browser: Browser, session: str) -> None:
        self.browser = browser
        self.session = session

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.browser.call(method, params, session=self.session)

    def navigate(self, url: str, timeout: float = 15.0) -> None:
        """Load ``url`` and wait until its document has loaded."""
        reply = self.call("Page.navigate", {"url": url})
        if reply.get("errorText"):
            raise BrowserError(f"navigating to {url}: {reply['errorText']}")
        target = json.dumps(url)
        self.wait_for(
            f"{url} to load",
            f"location.href === new URL({target}).href && document.readyState === 'complete'",
            lambda loaded: loaded is True,
            timeout,
        )

    def evaluate(self, expression: str) -> Any:
        """The JSON value of ``expression`` in the page (promises are awaited)."""
        reply = self.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in reply:
            raise BrowserError(f"{expression!r} raised: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    def wait_for(
        self, what: str, expression: str, accept: Callable[[Any], bool], timeout: float
    ) -> Any:
        """Evaluate ``expression`` until ``accept`` likes its value; fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if accept(value):
                return value
            if time.monotonic() >= deadline:
                raise BrowserError(
                    f"timed out after {timeout:g} s waiting for {what}; last value: {value!r}"
                )
            time.sleep(0.1)

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
        path.write_bytes(base64.b64decode(data["data"]))
