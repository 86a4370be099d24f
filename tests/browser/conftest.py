"""The reference pages in a real browser: Debian's Chromium, headless, driven by Playwright against
the whole platform started as ``make run`` starts it (SQLite engine; speech with the Korean model
standing in for Mandarin, as in tests/e2e).

Chromium is the machine's own (``/usr/bin/chromium``, installed by
``deploy/local/ensure-system-packages.sh``); ``playwright install`` is never run. Its fake
microphone plays a WAV file, so a "spoken" report is real audio recorded by MediaRecorder.
Screenshots of every page, at phone and desktop sizes, are saved for review under
``var/screenshots/`` (or ``LIANHU_SCREENSHOT_DIR``); the folder is printed at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import sync_playwright

from tests.support.platform import ROOT, Platform, free_port, platform_env
from tests.support.vosk_model import KOREAN_MODEL

CHROMIUM = os.environ.get("LIANHU_CHROMIUM", "/usr/bin/chromium")
VOICE_WAV = ROOT / "tests" / "fixtures" / "audio" / "ko-words.wav"
PHONE = {"width": 360, "height": 740}
DESKTOP = {"width": 1366, "height": 900}
# Near Jiangqian township: where the liaison worker's phone says it is.
JIANGQIAN_GPS = {"latitude": 33.741, "longitude": 100.184}


@pytest.fixture(scope="session")
def chromium_path() -> str:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: deploy/local/ensure-system-packages.sh installs it")
    return CHROMIUM


@pytest.fixture(scope="module")
def platform(amqp_uri, tmp_path_factory):
    """Every service as a process on SQLite, seeded with the demo county, speech included."""
    var_dir = tmp_path_factory.mktemp("browser-platform")
    port = free_port()
    platform = Platform(platform_env(var_dir, amqp_uri, {}, port), var_dir, f"http://127.0.0.1:{port}")
    try:
        platform.prepare_demo_county()
        for name in ("registry", "routing", "notify"):
            platform.start(name)
        speech = {"LIANHU_SPEECH_MODELS": f"zh={KOREAN_MODEL}", "LIANHU_MAX_WORKERS": "1"}
        platform.start("speech", env=speech)
        platform.start("intake")
        platform.wait_ready(timeout=180)
        yield platform
    finally:
        platform.stop_all()


@pytest.fixture(scope="module")
def accounts(platform) -> dict[str, dict]:
    return {account["username"]: account for account in platform.accounts()}


@pytest.fixture(scope="module")
def playwright_instance():
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="module")
def browser(playwright_instance, chromium_path):
    browser = playwright_instance.chromium.launch(
        executable_path=chromium_path,
        args=[
            "--no-sandbox",
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-audio-capture={VOICE_WAV}",
        ],
    )
    yield browser
    browser.close()


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    folder = Path(os.environ.get("LIANHU_SCREENSHOT_DIR") or ROOT / "var" / "screenshots")
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    yield folder
    print(f"\nscreenshots of the reference pages: {folder} ({len(list(folder.glob('*.png')))} files)")


class Shots:
    """Saves a page at phone and desktop sizes, then puts its own size back."""

    def __init__(self, folder: Path):
        self.folder = folder

    def __call__(self, page, name: str) -> None:
        own = page.viewport_size
        for label, size in (("phone", PHONE), ("desktop", DESKTOP)):
            page.set_viewport_size(size)
            page.wait_for_timeout(150)  # a layout pass and the charts' resize, not a wait for data
            page.screenshot(path=str(self.folder / f"{name}-{label}.png"), full_page=True)
        page.set_viewport_size(own)


@pytest.fixture(scope="session")
def shots(screenshot_dir) -> Shots:
    return Shots(screenshot_dir)


class ConsoleWatch:
    """Every console error and uncaught exception of the pages it watches."""

    def __init__(self):
        self.problems: list[str] = []
        self.tolerated: tuple[str, ...] = ()

    def watch(self, page) -> None:
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.problems.append(f"pageerror: {error}"))

    def _console(self, message) -> None:
        if message.type == "error" and not any(text in message.text for text in self.tolerated):
            self.problems.append(f"{message.type}: {message.text} @ {message.location}")


@pytest.fixture
def console_watch() -> ConsoleWatch:
    return ConsoleWatch()


def api_token(platform: Platform, account: dict) -> str:
    response = httpx.post(
        f"{platform.base_url}/v1/auth/token",
        data={"username": account["username"], "password": account["password"]},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def poll(fetch, predicate, timeout: float = 60.0, what: str = "a condition"):
    """Call ``fetch`` until ``predicate`` holds on its result; the platform is asynchronous."""
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if predicate(value):
            return value
        if time.monotonic() > deadline:
            last = json.dumps(value, default=str)[:2000]
            raise AssertionError(f"timed out waiting for {what}; last: {last}")
        time.sleep(0.25)
