"""A real headless Chromium, driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`: JSON messages
ended by NUL on file descriptors 3 and 4), so the tests need no driver package and open no port.

    with HeadlessChromium() as browser:
        browser.open(Path("report/index.html"))
        images = browser.evaluate("Array.from(document.images).map(i => i.naturalWidth)")
        browser.screenshot(Path("page.png"))
"""
from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

# Without these flags Chromium reaches for the network (updates, sync, safe browsing, ...): on a machine without
# network those connections are refused many at a time and slow every start.
QUIET_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run")
CANDIDATES = ("chromium", "chromium-browser", "google-chrome")
INSTALL_HINT = "install it with `apt-get install -y chromium` (make test does) or set CHROMIUM=/path/to/chrome"


def chromium_path() -> str:
    """$CHROMIUM, else the first Chromium on PATH; an error saying how to install one otherwise."""
    found = os.environ.get("CHROMIUM") or next((p for p in map(shutil.which, CANDIDATES) if p), None)
    if not found:
        raise RuntimeError(f"no Chromium found ({', '.join(CANDIDATES)}); {INSTALL_HINT}")
    return found


class HeadlessChromium:
    """One browser process with one page; `open`, `evaluate` and `screenshot` act on that page."""

    def __init__(self, width: int = 1280, height: int = 900, timeout: float = 60.0):
        self.width, self.height, self.timeout = width, height, timeout
        self._next_id = 0
        self._buffer = b""
        self._events: list[dict] = []

    def __enter__(self) -> "HeadlessChromium":
        self._profile = tempfile.mkdtemp(prefix="chromium-profile-")
        to_browser_read, self._to_browser = os.pipe()
        self._from_browser, from_browser_write = os.pipe()
        # Above 9, so that putting one end on 3 cannot overwrite the other (pipes may get descriptors 3 and 4).
        ends = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (to_browser_read, from_browser_write)]
        for fd in (to_browser_read, from_browser_write):
            os.close(fd)
        # bash puts the two ends on the protocol's fixed descriptors 3 (commands in) and 4 (replies out), then becomes
        # Chromium: no Python runs between fork and exec, which keeps this safe beside threads (POSIX sh only
        # redirects descriptors 0-9, bash any).
        command = [chromium_path(), *QUIET_FLAGS, f"--user-data-dir={self._profile}", "--remote-debugging-pipe",
                   f"--window-size={self.width},{self.height}", "about:blank"]
        self._process = subprocess.Popen(
            [shutil.which("bash") or "/bin/bash", "-c", f'exec "$@" 3<&{ends[0]} 4>&{ends[1]}', "bash", *command],
            pass_fds=ends, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for fd in ends:
            os.close(fd)
        target = self._call("Target.createTarget", url="about:blank")["targetId"]
        self._session = self._call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self._call("Page.enable", session=True)
        self._call("Emulation.setDeviceMetricsOverride", session=True, width=self.width, height=self.height,
                   deviceScaleFactor=1, mobile=False)
        return self

    def __exit__(self, *exc) -> None:
        try:
            self._call("Browser.close")
        except (OSError, RuntimeError, TimeoutError):
            self._process.kill()
        finally:
            self._process.wait(timeout=30)
            os.close(self._to_browser)
            os.close(self._from_browser)
            shutil.rmtree(self._profile, ignore_errors=True)

    # -- the protocol -------------------------------------------------------------------------------------
    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            if time.monotonic() > deadline:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise RuntimeError(f"Chromium closed the pipe (exit code {self._process.poll()})")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def _call(self, method: str, session: bool = False, **params) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self._session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self._events.append(reply)

    def _wait_for_event(self, method: str) -> dict:
        deadline = time.monotonic() + self.timeout
        while True:
            for i, event in enumerate(self._events):
                if event.get("method") == method:
                    return self._events.pop(i)
            self._events.append(self._read_message(deadline))

    # -- what tests use -----------------------------------------------------------------------------------
    def open(self, page: Path) -> None:
        """Navigate to a local file and wait for its load event (every image loaded or failed by then)."""
        self._events.clear()
        result = self._call("Page.navigate", session=True, url=page.resolve().as_uri())
        if result.get("errorText"):
            raise RuntimeError(f"cannot open {page}: {result['errorText']}")
        self._wait_for_event("Page.loadEventFired")

    def evaluate(self, expression: str):
        """The JSON value of a JavaScript expression in the page."""
        result = self._call("Runtime.evaluate", session=True, expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: Path, full_page: bool = True) -> Path:
        """A PNG of the page (the whole scroll height with `full_page`)."""
        params = {"format": "png"}
        if full_page:
            height = self.evaluate("document.documentElement.scrollHeight")
            params.update(captureBeyondViewport=True,
                          clip={"x": 0, "y": 0, "width": self.width, "height": height, "scale": 1})
        path.write_bytes(base64.b64decode(self._call("Page.captureScreenshot", session=True, **params)["data"]))
        return path
