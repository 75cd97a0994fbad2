"""Screenshots of every page of the web app, at desktop (1280x800) and phone (390x844) width.

    .venv/bin/python bench/screenshots.py [--out docs/screenshots]

Starts `soulprint serve` on its own embedded stack in a temporary data
directory, makes a token, uploads the shipped sample through the upload page
in Debian's headless Chromium (tests/support/browser.py: explicit paths,
nothing downloaded), waits for the job to finish, asks one question, and
writes ``<page>-<width>.png`` for: signin, upload, job, soulprint, memory,
conversation, chat, about, settings.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from support.browser import DESKTOP, PHONE, SAMPLE, chromium, missing, resize, served  # noqa: E402

PIPELINE_S = 300


def wait(web, condition, what: str, limit_s: float = 60):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(web, limit_s, poll_frequency=0.1).until(lambda w: condition(w), message=what)


def shoot(web, out: Path, name: str, prepare=None) -> None:
    """The page as it is now, at both widths (``prepare`` re-run after each resize, e.g. to scroll)."""
    for size in (DESKTOP, PHONE):
        resize(web, size)
        if prepare:
            prepare(web)
        path = out / f"{name}-{size[0]}.png"
        path.write_bytes(web.get_screenshot_as_png())
        print(path.relative_to(REPO) if path.is_relative_to(REPO) else path)
    web.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots")
    args = parser.parse_args()
    reason = missing()
    if reason:
        print(f"screenshots: {reason}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    with served() as server:
        token = server.token("maya")
        web = chromium(DESKTOP)
        try:
            url = server.url
            web.get(url + "/")
            shoot(web, args.out, "signin")
            web.find_element("id", "token").send_keys(token)
            web.find_element("css selector", "form[action='/session'] button[type=submit]").click()
            wait(web, lambda w: w.current_url.endswith("/app/upload"), "the upload page")
            shoot(web, args.out, "upload")
            web.find_element("id", "file").send_keys(str(SAMPLE))
            wait(web, lambda w: "/app/jobs/" in w.current_url, "the job's page")
            wait(web, lambda w: w.find_element("id", "job").get_attribute("data-done") == "true", "the job to end",
                 PIPELINE_S)
            shoot(web, args.out, "job")
            web.get(url + "/app/soulprint")
            shoot(web, args.out, "soulprint")
            shoot(web, args.out, "memory", lambda w: w.execute_script(
                "document.getElementById('memory').scrollIntoView()"))
            web.find_element("css selector", "#memory .source-link").click()
            wait(web, lambda w: "/app/conversations/" in w.current_url, "a fact's conversation")
            shoot(web, args.out, "conversation")
            web.get(url + "/app/chat")
            web.find_element("id", "message").send_keys("What did I decide about the pipeline?")
            web.find_element("id", "send").click()
            toggle = wait(web, lambda w: (w.find_elements("css selector", ".sources-toggle") or [None])[0],
                          "the answer")
            toggle.click()
            shoot(web, args.out, "chat", lambda w: w.execute_script(
                "document.querySelector('.turn.assistant .sources-toggle').scrollIntoView({block: 'center'})"))
            web.get(url + "/app/about")
            shoot(web, args.out, "about")
            web.get(url + "/app/settings")
            shoot(web, args.out, "settings")
        finally:
            web.quit()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
