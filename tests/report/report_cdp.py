"""A tiny headless-Chromium driver over the DevTools protocol on a pipe (stdlib only).

``--remote-debugging-pipe`` makes Chromium read NUL-separated JSON commands on fd 3 and write
responses and events on fd 4, so no websocket client (and no extra dependency) is needed. Used by
the report tests to load ``report.html`` and collect console errors, network requests and the
state of every image, and to take a screenshot.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


class Chromium:
    """One headless browser; ``load(path)`` returns what the page did."""

    def __init__(self, binary: str, timeout: float = 60.0):
        self.timeout = timeout
        self._profile = tempfile.mkdtemp(prefix="distillab-chromium-")
        cmd_r, self._cmd_w = os.pipe()  # we write commands, Chromium reads them on fd 3
        self._resp_r, resp_w = os.pipe()  # Chromium writes on fd 4, we read

        def wire_fds():  # runs in the child before exec: put the pipe ends where Chromium expects them
            os.dup2(cmd_r, 3)
            os.dup2(resp_w, 4)

        self.proc = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--no-default-browser-check",
             "--hide-scrollbars", "--mute-audio", f"--user-data-dir={self._profile}", "--remote-debugging-pipe",
             "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=wire_fds, pass_fds=(3, 4),
        )
        os.close(cmd_r)
        os.close(resp_w)
        self._ids = itertools.count(1)
        self._responses: dict[int, queue.Queue] = {}
        self.events: "queue.Queue[dict]" = queue.Queue()
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._reader.start()

    def _read_loop(self) -> None:
        buffer = b""
        with os.fdopen(self._resp_r, "rb", buffering=0) as pipe:
            while chunk := pipe.read(1 << 16):
                buffer += chunk
                *messages, buffer = buffer.split(b"\0")
                for raw in messages:
                    msg = json.loads(raw)
                    if "id" in msg:
                        with self._lock:
                            box = self._responses.get(msg["id"])
                        if box is not None:
                            box.put(msg)
                    else:
                        self.events.put(msg)

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        msg_id = next(self._ids)
        box: queue.Queue = queue.Queue()
        with self._lock:
            self._responses[msg_id] = box
        msg = {"id": msg_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        try:
            reply = box.get(timeout=self.timeout)
        except queue.Empty:
            raise TimeoutError(f"Chromium did not answer {method} within {self.timeout} s") from None
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def load(self, path: str | Path, width: int = 1280, height: int = 2000, evaluate: str | None = None) -> dict:
        """Open a file, wait for ``load``, and report console errors, requests, images and a screenshot.

        ``evaluate``: a JavaScript expression whose (JSON-serialisable) value is returned as ``value``,
        e.g. element geometry for checks of what the first screen shows.
        """
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable", session=session)
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=session)
        self.send("Page.navigate", {"url": Path(path).resolve().as_uri()}, session=session)
        errors, requests = [], []
        deadline = time.monotonic() + self.timeout
        loaded = False
        while not loaded:
            try:
                event = self.events.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"{path} did not finish loading within {self.timeout} s") from None
            loaded = self._collect(event, session, errors, requests)
        images = self.send("Runtime.evaluate", {"expression": (
            "JSON.stringify(Array.from(document.images).map(i => ({alt: i.alt, complete: i.complete, "
            "w: i.naturalWidth, h: i.naturalHeight})))"), "returnByValue": True}, session=session)
        value = None
        if evaluate is not None:
            value = self.send("Runtime.evaluate", {"expression": evaluate, "returnByValue": True},
                              session=session)["result"].get("value")
        shot = self.send("Page.captureScreenshot", {"format": "png"}, session=session)
        while not self.events.empty():  # late console messages
            self._collect(self.events.get_nowait(), session, errors, requests)
        return {
            "errors": errors,
            "requests": requests,
            "images": json.loads(images["result"]["value"]),
            "screenshot": base64.b64decode(shot["data"]),
            "value": value,
        }

    @staticmethod
    def _collect(event: dict, session: str, errors: list, requests: list) -> bool:
        if event.get("sessionId") != session:
            return False
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            errors.append(params.get("exceptionDetails", {}).get("text", "exception"))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            errors.append(params["entry"].get("text", "log error"))
        elif method == "Network.requestWillBeSent":
            requests.append(params.get("request", {}).get("url", ""))
        return method == "Page.loadEventFired"

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._cmd_w)
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> "Chromium":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
