"""A real headless Chromium (Debian's `chromium` and `chromium-driver`) against a real `soulprint serve`.

Used by tests/test_browser.py and bench/screenshots.py. Selenium is handed
the driver's and the browser's paths, and Selenium Manager is told to stay
offline, so nothing is ever downloaded: a machine without the packages gets
``missing()``'s reason and the browser tests skip with it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "samples" / "sample-export.zip"
URL_LINE = re.compile(r"^soulprint serving on (http://127\.0\.0\.1:\d+)$")
STARTUP_GUARD_S = 240  # against a hang only: the embedded stack starts in seconds
DESKTOP = (1280, 800)
PHONE = (390, 844)


def chromium_paths() -> tuple[str | None, str | None]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    debian = Path("/usr/bin/chromedriver")
    driver = shutil.which("chromedriver") or (str(debian) if debian.exists() else None)
    return browser, driver


def missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    browser, driver = chromium_paths()
    if browser is None or driver is None:
        return ("Chromium or its driver is not installed (apt-get install chromium chromium-driver): "
                f"chromium={browser}, chromedriver={driver}")
    return None


def chromium(size: tuple[int, int] = DESKTOP, downloads: Path | None = None):
    """A headless Chromium at ``size`` (CSS pixels), downloads saved to ``downloads`` without asking."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager, were it ever consulted, may not fetch anything
    browser, driver = chromium_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--no-first-run", "--disable-extensions", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--metrics-recording-only",
                "--hide-scrollbars", "--force-device-scale-factor=1", f"--window-size={size[0]},{size[1]}"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {
        "download.default_directory": str(downloads or tempfile.gettempdir()),
        "download.prompt_for_download": False, "safebrowsing.enabled": False})
    service = Service(executable_path=driver, log_output=subprocess.DEVNULL)
    web = webdriver.Chrome(service=service, options=options)
    web.set_window_size(*size)
    web.set_script_timeout(60)
    return web


def resize(web, size: tuple[int, int]) -> None:
    """The viewport (not the window) at ``size``: what a phone of that width shows."""
    web.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                        {"width": size[0], "height": size[1], "deviceScaleFactor": 1, "mobile": size[0] < 700})


def axe_serious(web) -> list[dict]:
    """axe-core's serious and critical violations on the current page (its script ships with
    axe-selenium-python: a local file, injected into the page)."""
    from axe_selenium_python import Axe

    axe = Axe(web)
    axe.inject()
    results = axe.run()
    return [{"id": v["id"], "impact": v["impact"], "help": v["help"], "nodes": [n["target"] for n in v["nodes"]][:5]}
            for v in results["violations"] if v.get("impact") in ("serious", "critical")]


def serve_env(data_dir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOULPRINT_", "ANTHROPIC_"))}
    env.update(SOULPRINT_DATA_DIR=str(data_dir), SOULPRINT_EMBEDDING_PROVIDER="hash")
    return env


class Served:
    """`soulprint serve` on its own embedded stack in a temporary data directory, on a free port."""

    def __init__(self) -> None:
        self.data_dir = Path(tempfile.mkdtemp(prefix="soulprint-web-"))
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self.stderr: list[str] = []

    def start(self) -> "Served":
        self.proc = subprocess.Popen([sys.executable, "-m", "soulprint.cli", "serve", "--port", "0"],
                                     env=serve_env(self.data_dir), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        threading.Thread(target=lambda: self.stderr.extend(self.proc.stderr), daemon=True).start()
        line = _readline(self.proc, STARTUP_GUARD_S)
        match = URL_LINE.match(line)
        if not match:
            self.stop()
            raise RuntimeError(f"soulprint serve did not start: {line!r} {''.join(self.stderr)[-2000:]}")
        self.url = match.group(1)
        return self

    def token(self, user: str) -> str:
        """A new token for ``user``, made as a person's operator makes one (`soulprint token create`)."""
        done = subprocess.run([sys.executable, "-m", "soulprint.cli", "token", "create", "--user", user],
                              env=serve_env(self.data_dir), capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(done.stderr)
        return done.stdout.strip()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.data_dir, ignore_errors=True)


def _readline(proc: subprocess.Popen, limit_s: float) -> str:
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(limit_s)
    return got[0].strip() if got else ""


@contextlib.contextmanager
def served() -> Iterator[Served]:
    server = Served().start()
    try:
        yield server
    finally:
        server.stop()
