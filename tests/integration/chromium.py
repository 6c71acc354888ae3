"""Drive Debian's headless ``chromium`` over the Chrome DevTools Protocol.

Just what the status page test needs, over aiohttp's websocket client (no extra
package): start a browser with a throwaway profile, open a page, evaluate
JavaScript, type the way a user does, watch the network and the console, and take
a screenshot. A missing ``chromium`` fails the test with the command that installs
it (``make tools``), never a skip.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

__all__ = ["Browser", "Page", "CdpError", "chromium_binary"]


class CdpError(Exception):
    """A DevTools command answered with an error, or the browser went away."""


def chromium_binary() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("chromium is not installed: run `make tools` (apt-get install chromium)", pytrace=False)
    return found


class Browser:
    """One headless chromium process and its DevTools websocket."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.profile = workdir / "chromium-profile"
        self.log_path = workdir / "chromium.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._listeners: dict[str, list[Callable[[str, dict[str, Any]], None]]] = {}

    async def start(self, timeout: float = 90.0) -> Browser:
        self.profile.mkdir(parents=True, exist_ok=True)
        port_file = self.profile / "DevToolsActivePort"
        port_file.unlink(missing_ok=True)
        argv = [
            chromium_binary(), "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--remote-debugging-port=0", f"--user-data-dir={self.profile}", "--no-first-run",
            "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
            "--disable-sync", "--disable-component-update", "--mute-audio", "--hide-scrollbars",
            "--window-size=1440,1000", "about:blank",
        ]
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        # Chromium writes its DevTools port and browser path here once it listens.
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.proc.returncode}:\n{self.log()}")
            lines = port_file.read_text().split("\n") if port_file.exists() else []
            if len(lines) >= 2 and lines[1].strip():
                port, path = lines[0].strip(), lines[1].strip()
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"chromium did not open its DevTools port in {timeout}s:\n{self.log()}")
            await asyncio.sleep(0.1)
        self._session = aiohttp.ClientSession()
        self._ws = await self._session.ws_connect(f"ws://127.0.0.1:{port}{path}", max_msg_size=0)
        self._reader = asyncio.get_running_loop().create_task(self._read())
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def _read(self) -> None:
        assert self._ws is not None
        async for message in self._ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(message.data)
            if "id" in data:
                future = self._pending.pop(data["id"], None)
                if future is not None and not future.done():
                    future.set_result(data)
            else:
                for listener in self._listeners.get(data.get("sessionId", ""), []):
                    listener(data["method"], data.get("params", {}))
        for future in self._pending.values():
            if not future.done():
                future.set_exception(CdpError("the browser closed its DevTools connection"))

    async def send(self, method: str, params: dict[str, Any] | None = None, *, session: str | None = None,
                   timeout: float = 30.0) -> dict[str, Any]:
        assert self._ws is not None
        message_id = next(self._ids)
        message: dict[str, Any] = {"id": message_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[message_id] = future
        await self._ws.send_str(json.dumps(message))
        answer = await asyncio.wait_for(future, timeout)
        if "error" in answer:
            raise CdpError(f"{method}: {answer['error']}")
        return answer.get("result", {})

    async def new_page(self) -> Page:
        target = await self.send("Target.createTarget", {"url": "about:blank"})
        attached = await self.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True})
        page = Page(self, attached["sessionId"])
        self._listeners[page.session] = [page._on_event]
        for domain in ("Page", "Runtime", "Network", "Log"):
            await page.send(f"{domain}.enable")
        return page

    async def close(self) -> None:
        if self._ws is not None:
            try:
                await self.send("Browser.close", timeout=10)
            except (CdpError, asyncio.TimeoutError, ConnectionError):
                pass
            await self._ws.close()
        if self._reader is not None:
            await asyncio.wait({self._reader}, timeout=10)
        if self._session is not None:
            await self._session.close()
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class Page:
    """One tab. ``events`` keeps every DevTools event it received, in order."""

    def __init__(self, browser: Browser, session: str) -> None:
        self.browser = browser
        self.session = session
        self.events: list[tuple[str, dict[str, Any]]] = []
        self._loaded = asyncio.Event()

    def _on_event(self, method: str, params: dict[str, Any]) -> None:
        self.events.append((method, params))
        if method == "Page.loadEventFired":
            self._loaded.set()

    async def send(self, method: str, params: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
        return await self.browser.send(method, params, session=self.session, **kwargs)

    async def goto(self, url: str, timeout: float = 30.0) -> None:
        self._loaded.clear()
        await self.send("Page.navigate", {"url": url})
        await asyncio.wait_for(self._loaded.wait(), timeout)

    async def evaluate(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                      "awaitPromise": True})
        if "exceptionDetails" in result:
            raise CdpError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, *, timeout: float = 30.0, what: str | None = None) -> Any:
        """Poll ``expression`` until it is truthy; its value."""
        deadline = time.monotonic() + timeout
        value: Any = None
        while time.monotonic() < deadline:
            value = await self.evaluate(expression)
            if value:
                return value
            await asyncio.sleep(0.1)
        raise AssertionError(f"timed out after {timeout}s waiting for {what or expression} (last: {value!r})")

    async def click(self, selector: str) -> None:
        """A real mouse click in the middle of the element, as a user's."""
        box = await self.evaluate(
            f"(() => {{ const r = document.querySelector({json.dumps(selector)}).getBoundingClientRect();"
            " return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        for kind in ("mousePressed", "mouseReleased"):
            await self.send("Input.dispatchMouseEvent",
                            {"type": kind, "x": box[0], "y": box[1], "button": "left", "clickCount": 1})

    async def type(self, text: str) -> None:
        """Type ``text`` into the focused element, one key at a time."""
        for char in text:
            await self.send("Input.dispatchKeyEvent", {"type": "keyDown", "text": char, "key": char})
            await self.send("Input.dispatchKeyEvent", {"type": "keyUp", "key": char})

    async def press_enter(self) -> None:
        await self.send("Input.dispatchKeyEvent", {"type": "keyDown", "key": "Enter", "code": "Enter",
                                                   "windowsVirtualKeyCode": 13, "text": "\r"})
        await self.send("Input.dispatchKeyEvent", {"type": "keyUp", "key": "Enter", "code": "Enter",
                                                   "windowsVirtualKeyCode": 13})

    async def screenshot(self, path: Path, *, width: int = 1440) -> bytes:
        """The whole page (not just the viewport) as PNG, written to ``path``."""
        height = await self.evaluate("Math.ceil(document.documentElement.scrollHeight)")
        await self.send("Emulation.setDeviceMetricsOverride",
                        {"width": width, "height": int(height), "deviceScaleFactor": 1, "mobile": False})
        shot = await self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
        data = base64.b64decode(shot["data"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return data

    def requests(self) -> list[dict[str, Any]]:
        """Every request the page sent (``Network.requestWillBeSent``'s ``request``)."""
        return [params["request"] for method, params in self.events if method == "Network.requestWillBeSent"]

    def problems(self) -> list[str]:
        """Script exceptions and console errors other than failed loads (a 401 logs one)."""
        found = []
        for method, params in self.events:
            if method == "Runtime.exceptionThrown":
                found.append(json.dumps(params["exceptionDetails"])[:500])
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error" \
                    and params["entry"].get("source") != "network":
                found.append(params["entry"].get("text", ""))
            elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
                found.append(json.dumps(params.get("args"))[:500])
        return found
