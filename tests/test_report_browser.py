"""``smolmix report`` pages in a real browser: headless Chromium, driven over the DevTools
protocol on a pipe (standard library only), loads each page from disk and checks that it has
no console errors, that every image is displayed, and that the key numbers are in its text.

Skipped, with the reason, only where Chromium is not installed (CI installs Debian's
``chromium``). Screenshots of the pages go to ``$SMOLMIX_REPORT_SHOTS`` when it is set.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from smolmix.cli import main

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None,
                                reason="Chromium is not installed (apt-get install chromium)")
WIDTH = 1200
TIMEOUT = 60.0
PAGE_STATE = """(() => ({
  text: document.body.innerText,
  images: Array.from(document.images).map(i => ({
    src: i.getAttribute('src'), complete: i.complete, width: i.naturalWidth})),
  tables: Array.from(document.querySelectorAll('table')).map(t => ({
    caption: t.caption ? t.caption.innerText : '',
    rows: Array.from(t.rows).map(r => Array.from(r.cells).map(c => c.innerText))})),
  height: document.documentElement.scrollHeight,
}))()"""


class Browser:
    """Headless Chromium over ``--remote-debugging-pipe``: JSON messages, each ended by a NUL
    byte, written to its fd 3 and read from its fd 4."""

    def __init__(self, profile: Path) -> None:
        to_child, self._write = os.pipe()
        self._read, from_child = os.pipe()
        # bash hands them over as fds 3 and 4; keep ours clear of those numbers
        child_in = fcntl.fcntl(to_child, fcntl.F_DUPFD, 10)
        child_out = fcntl.fcntl(from_child, fcntl.F_DUPFD, 10)
        for fd in (to_child, from_child):
            os.close(fd)
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--mute-audio",
                 "--remote-debugging-pipe", f"--user-data-dir={profile}", "about:blank"]
        self._process = subprocess.Popen(
            ["bash", "-c", f'exec "$0" "$@" 3<&{child_in}- 4>&{child_out}-', CHROMIUM, *flags],
            pass_fds=(child_in, child_out), stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        for fd in (child_in, child_out):
            os.close(fd)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        """Send a command and wait for its result (events that arrive meanwhile are kept)."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._receive()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def wait_for(self, method: str, session: str) -> dict:
        """The first event ``method`` of ``session`` not yet consumed."""
        while True:
            for k, event in enumerate(self.events):
                if event.get("method") == method and event.get("sessionId") == session:
                    return self.events.pop(k)
            self.events.append(self._receive())

    def _receive(self) -> dict:
        deadline = time.monotonic() + TIMEOUT
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._read], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError("Chromium did not answer")
            chunk = os.read(self._read, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (OSError, RuntimeError, TimeoutError):
            pass
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        os.close(self._write)
        os.close(self._read)


def _errors(events: list[dict], session: str) -> list[str]:
    """Console errors, uncaught exceptions and browser log errors (failed loads included)."""
    found = []
    for event in events:
        if event.get("sessionId") != session:
            continue
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            found.append("console: " + " ".join(str(a.get("value", a.get("description")))
                                                for a in params.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            found.append("exception: " + ((details.get("exception") or {}).get("description")
                                          or details.get("text", "")))
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            found.append(f"log: {params['entry'].get('text')} {params['entry'].get('url', '')}")
    return found


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium = Browser(tmp_path_factory.mktemp("chromium-profile"))
    yield chromium
    chromium.close()


def load(browser: Browser, page: Path, shot: str | None = None) -> dict:
    """Open ``page`` in a fresh tab; return its text, images and the errors it logged (and
    save a full-page screenshot as ``$SMOLMIX_REPORT_SHOTS/<shot>.png``)."""
    target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = browser.send("Target.attachToTarget",
                           {"targetId": target, "flatten": True})["sessionId"]
    for domain in ("Page", "Runtime", "Log"):
        browser.send(f"{domain}.enable", session=session)
    browser.send("Emulation.setDeviceMetricsOverride", {"width": WIDTH, "height": 900,
                                                        "deviceScaleFactor": 1,
                                                        "mobile": False}, session=session)
    browser.send("Page.navigate", {"url": page.resolve().as_uri()}, session=session)
    browser.wait_for("Page.loadEventFired", session)
    state = browser.send("Runtime.evaluate", {"expression": PAGE_STATE, "returnByValue": True},
                         session=session)["result"]["value"]
    folder = os.environ.get("SMOLMIX_REPORT_SHOTS")
    if folder and shot:
        clip = {"x": 0, "y": 0, "width": WIDTH, "height": state["height"], "scale": 1}
        data = browser.send("Page.captureScreenshot", {"format": "png", "clip": clip,
                                                       "captureBeyondViewport": True},
                            session=session)["data"]
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / f"{shot}.png").write_bytes(base64.b64decode(data))
    time.sleep(0.2)  # let late console messages arrive
    browser.send("Runtime.evaluate", {"expression": "0"}, session=session)
    state["errors"] = _errors(browser.events, session)
    browser.send("Target.closeTarget", {"targetId": target})
    return state


def assert_page_is_sound(state: dict, images: int) -> None:
    assert state["errors"] == []
    assert len(state["images"]) >= images
    broken = [i["src"] for i in state["images"] if not (i["complete"] and i["width"] > 0)]
    assert broken == []


def cells(state: dict, column: str, caption: str = "") -> dict[str, str]:
    """Row name -> the cell under ``column`` in the rendered table that has that column
    (and ``caption``)."""
    for table in state["tables"]:
        header, *rows = table["rows"]
        if column in header and table["caption"] == caption:
            k = header.index(column)
            return {row[0]: row[k] for row in rows}
    raise AssertionError(f"no table with a column {column!r} and caption {caption!r}")


# ---------------------------------------------------------------- the runs


@pytest.fixture(scope="module")
def runs(report_runs):
    """Two tiny train runs (natural mixture, and one with ``sort`` boosted) and an eval run."""
    return report_runs


def _report(runs: list[Path], out: Path) -> Path:
    assert main(["report", *map(str, runs), "--out", str(out), "--quiet"]) == 0
    return out / "report.html"


def _final(run: Path, metric: str) -> dict[str, float]:
    final = json.loads((run / "manifest.json").read_text())["final"]
    return {task: metrics[metric] for task, metrics in final.items()}


def test_lab_run_reports(browser, tmp_path):
    lab = tmp_path / "lab"
    assert main(["lab", "rare-tasks", "--preset", "smoke", "--out", str(lab), "--jobs", "1",
                 "--quiet"]) == 0
    results = json.loads((lab / "results.json").read_text())
    rare = [f"{round(v * 100)}%" for v in results["summary"]["rare_acc_by_size"]]
    for page, shot in ((lab / "report.html", None),
                       (_report([lab], tmp_path / "report"), "lab")):
        state = load(browser, page, shot)
        assert_page_is_sound(state, images=4)  # heatmap, curves, boost, rare vs size
        assert {"heatmap.png", "boost.png"} <= {i["src"] for i in state["images"]}
        assert "What this run shows" in state["text"]
        for size, acc in zip(results["summary"]["size_names"], rare):
            assert size in state["text"] and acc in state["text"]


def test_train_run_reports(browser, runs, tmp_path):
    state = load(browser, _report([runs / "train-natural"], tmp_path / "r"), "train")
    assert_page_is_sound(state, images=2)  # exact match and loss curves
    run = runs / "train-natural"
    assert cells(state, "exact match") == {
        t: f"{v:.3f}" for t, v in _final(run, "exact_match").items()}
    assert cells(state, "loss") == {t: f"{v:.4f}" for t, v in _final(run, "loss").items()}
    assert "Final scores" in state["text"]


def test_eval_run_reports(browser, runs, tmp_path):
    state = load(browser, _report([runs / "eval-natural"], tmp_path / "r"), "eval")
    assert_page_is_sound(state, images=1)
    scores = json.loads((runs / "eval-natural" / "scores.json").read_text())
    accuracy, interval = cells(state, "accuracy"), cells(state, "95% interval")
    for task, s in scores["tasks"].items():
        assert accuracy[task] == f"{s['mean']:.3f}"
        assert interval[task] == f"[{s['low']:.3f}, {s['high']:.3f}]"
    assert accuracy["overall"] == f"{scores['overall']['mean']:.3f}"


def test_two_train_runs_side_by_side(browser, runs, tmp_path):
    page = _report([runs / "train-natural", runs / "train-boosted"], tmp_path / "r")
    state = load(browser, page, "train_side_by_side")
    assert_page_is_sound(state, images=2)
    for run in ("train-natural", "train-boosted"):  # a column per run
        assert cells(state, run, caption="exact match") == {
            t: f"{v:.3f}" for t, v in _final(runs / run, "exact_match").items()}
        assert cells(state, run, caption="loss") == {
            t: f"{v:.4f}" for t, v in _final(runs / run, "loss").items()}


def test_the_checks_catch_a_broken_page(browser, tmp_path):
    page = tmp_path / "broken.html"
    page.write_text("<!doctype html><html><body><p>some text</p><img src='missing.png'>"
                    "<script>console.error('oops'); throw new Error('boom');</script>"
                    "</body></html>")
    state = load(browser, page)
    assert [i["width"] for i in state["images"]] == [0]
    errors = " | ".join(state["errors"])
    assert "oops" in errors and "boom" in errors and "ERR_FILE_NOT_FOUND" in errors
    assert "some text" in state["text"]
    with pytest.raises(AssertionError):
        assert_page_is_sound(state, images=1)
