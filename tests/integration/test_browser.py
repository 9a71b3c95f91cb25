"""The interactive docs in a real browser: headless Chromium (Debian's `chromium`, installed when
missing as the other real components are: tests/integration/debian.py) driven over the Chrome
DevTools Protocol, with no network but loopback. /docs renders, "Try it out" -> Execute on the
Titanic model answers 200 with a prediction, /redoc renders the operations; every request the
pages make goes to the server itself, and none is refused by its Content-Security-Policy.

Screenshots for a person to look at: build/screenshots/ (git-ignored)."""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
import yaml
from websockets.sync.client import ClientConnection, connect

from tests.conftest import CAR, REPO, TITANIC
from tests.integration.debian import require_tool
from tests.integration.server import RunningServer, running_server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

SCREENSHOTS = REPO / "build" / "screenshots"
PREDICT = "#operations-titanic-predict_titanic"  # Swagger UI's id: tag, operationId


class DevTools:
    """One page's CDP session: commands by id, events kept for the asserts."""

    def __init__(self, socket: ClientConnection) -> None:
        self.socket = socket
        self.ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        message_id = next(self.ids)
        self.socket.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv(timeout=60))
            if message.get("id") == message_id:
                assert "error" not in message, f"{method}: {message['error']}"
                result: dict[str, Any] = message.get("result", {})
                return result
            self.events.append(message)

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def wait_for(self, expression: str, what: str, timeout: float = 60) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            assert time.monotonic() < deadline, f"{what}: not seen in {timeout} s"
            time.sleep(0.2)

    def screenshot(self, name: str, *, full_page: bool = False) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        data = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=full_page)
        path = SCREENSHOTS / name
        path.write_bytes(base64.b64decode(data["data"]))
        return path

    def settle(self, seconds: float = 1.0) -> None:
        """Let late loads happen; their events arrive with the next command's answer."""
        time.sleep(seconds)
        self.evaluate("1")

    def of(self, method: str) -> list[dict[str, Any]]:
        return [event["params"] for event in self.events if event.get("method") == method]


@contextlib.contextmanager
def chromium() -> Iterator[Callable[[], DevTools]]:
    binary = require_tool("chromium", "chromium", needed_for="the docs pages in a real browser")
    profile = Path(tempfile.mkdtemp(prefix="fastinfer-chromium-"))
    command = [
        binary, "--headless=new", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
        "--disable-extensions", "--disable-background-networking", "--disable-sync",
        "--window-size=1280,1600", f"--user-data-dir={profile}", "--remote-debugging-port=0",
        # No network but loopback: every other name fails to resolve.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "about:blank",
    ]  # fmt: skip
    if os.geteuid() == 0:
        command.insert(1, "--no-sandbox")  # Chromium's sandbox refuses to run as root
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sockets = contextlib.ExitStack()
    try:
        active = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (active.is_file() and active.read_text().count("\n") >= 1):
            assert process.poll() is None, f"chromium exited with {process.returncode}"
            assert time.monotonic() < deadline, "chromium did not open its DevTools port"
            time.sleep(0.1)
        port = int(active.read_text().split()[0])

        def page() -> DevTools:
            target = httpx.put(f"http://127.0.0.1:{port}/json/new?about:blank", timeout=10)
            socket = sockets.enter_context(
                connect(target.json()["webSocketDebuggerUrl"], max_size=None)
            )
            tools = DevTools(socket)
            for domain in ("Page", "Runtime", "Network", "Log"):
                tools.send(f"{domain}.enable")
            return tools

        yield page
    finally:
        sockets.close()
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    log = tmp_path_factory.mktemp("browser") / "server.log"
    with running_server([str(TITANIC), str(CAR), "--workers", "1"], log) as running:
        yield running


def _only_the_server_was_asked(tools: DevTools, server: RunningServer) -> None:
    tools.settle()
    urls = [params["request"]["url"] for params in tools.of("Network.requestWillBeSent")]
    assert urls, "the page made no request"
    elsewhere = [url for url in urls if not url.startswith((server.url, "data:", "blob:"))]
    assert elsewhere == [], elsewhere
    failed = [params for params in tools.of("Network.loadingFailed") if not params.get("canceled")]
    assert failed == [], failed
    errors = [
        params["entry"]["text"]
        for params in tools.of("Log.entryAdded")
        if params["entry"]["level"] == "error"
    ]
    thrown = tools.of("Runtime.exceptionThrown")
    assert errors == [] and thrown == [], (errors, thrown)  # CSP refusals are logged as errors


def test_swagger_ui_renders_and_try_it_out_predicts_with_the_titanic_model(
    server: RunningServer,
) -> None:
    spec = yaml.safe_load((TITANIC / "model.yaml").read_text())
    with chromium() as page:
        tools = page()
        tools.send("Page.navigate", url=f"{server.url}/docs")
        tools.wait_for(f"!!document.querySelector('{PREDICT}')", "the Titanic predict operation")
        tools.evaluate(
            f"(document.querySelector('{PREDICT} .opblock-summary-control')"
            f" || document.querySelector('{PREDICT} .opblock-summary')).click()"
        )
        # tryItOutEnabled: the example body is editable and Execute is there at once.
        tools.wait_for(f"!!document.querySelector('{PREDICT} .btn.execute')", "Execute")
        editor = f"document.querySelector('{PREDICT} textarea.body-param__text')"
        # The editor may render a moment after the button (seen once in CI: null.value).
        body = tools.wait_for(f"({editor} || {{}}).value", "the request body editor")
        assert json.loads(body)["inputs"][0] == spec["example"]
        tools.evaluate(f"document.querySelector('{PREDICT} .btn.execute').click()")
        status = tools.wait_for(
            f"(document.querySelector('{PREDICT} .live-responses-table tbody .response-col_status')"
            " || {}).innerText",
            "the live response",
        )
        answer = tools.evaluate(
            f"document.querySelector('{PREDICT} .live-responses-table .response-col_description"
            " pre').innerText"
        )
        tools.evaluate(f"document.querySelector('{PREDICT}').scrollIntoView()")
        path = tools.screenshot("docs-try-it-out-titanic.png")  # the operation and its answer
        _only_the_server_was_asked(tools, server)
    assert status.strip() == "200", (status, answer)
    prediction = json.loads(answer)["predictions"][0]
    assert prediction["label"] == spec["expected_example_output"]
    assert set(prediction["probabilities"]) == set(spec["output"]["labels"].values())
    assert path.stat().st_size > 10_000
    print(f"screenshot: {path}")


def test_redoc_renders_every_model_operation(server: RunningServer) -> None:
    with chromium() as page:
        tools = page()
        tools.send("Page.navigate", url=f"{server.url}/redoc")
        text = tools.wait_for(
            "document.body?.innerText.includes('/v1/models/titanic/predict')"
            " && document.body.innerText",
            "ReDoc's operations",
        )
        path = tools.screenshot("redoc.png", full_page=True)
    assert "/v1/models/car_evaluation/predict" in text
    assert path.stat().st_size > 10_000
    print(f"screenshot: {path}")


def test_redoc_asks_nothing_beyond_the_server(server: RunningServer) -> None:
    with chromium() as page:
        tools = page()
        tools.send("Page.navigate", url=f"{server.url}/redoc")
        tools.wait_for(
            "document.body?.innerText.includes('/v1/models/titanic/predict')", "ReDoc's operations"
        )
        tools.screenshot("redoc.png", full_page=True)  # renders the side menu's footer too
        _only_the_server_was_asked(tools, server)
