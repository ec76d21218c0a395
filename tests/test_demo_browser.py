"""The demo page in a real browser: Debian's Chromium, driven by Playwright, against `demo/app.py` on localhost.

It types a history and candidates, submits, reads the ranked list from the page and checks it against the
news-recommendation pipeline on the same input; bad input gets a message, not a traceback; a screenshot is saved.

    python -m pytest -m browser tests/test_demo_browser.py                      # a tiny random model
    MTREC_DEMO_MODEL=outputs/mtrec MTREC_DEMO_SCREENSHOT=docs/images/demo.png \\
        python -m pytest -m browser tests/test_demo_browser.py                  # the README's screenshot

The browser is the system's (``/usr/bin/chromium``, `apt-get install chromium`); Playwright never downloads one.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.testing_utils import REPO_ROOT

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]
HISTORY = ["champion defends title in final", "chef opens coffee festival", "coach charged after dunk contest"]
CANDIDATES = ["earnings beat as diesel engine sales climb", "cruise flights cancelled", "clinic doctors warn on diet",
              "concert in court", "dessert and cocktail dinner"]


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory) -> Path:
    """`MTREC_DEMO_MODEL`, else a tiny random MTRec with the synthetic (offline) tokenizer, saved as the recipe does."""
    if os.environ.get("MTREC_DEMO_MODEL"):
        return Path(os.environ["MTREC_DEMO_MODEL"])
    from modeling_mtrec.data import synthetic_tokenizer
    from modeling_mtrec.serving.pipeline import save_pipeline_code
    from tests.testing_utils import synthetic_model

    folder = tmp_path_factory.mktemp("demo_model")
    tokenizer = synthetic_tokenizer()
    synthetic_model(tokenizer, {"news": 0, "sports": 1}).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    save_pipeline_code(folder)
    return folder


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(model_folder, tmp_path_factory):
    port = _free_port()
    log = tmp_path_factory.mktemp("demo_log") / "app.log"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "GRADIO_ANALYTICS_ENABLED": "False",
           "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, str(REPO_ROOT / "demo" / "app.py"), "--model", str(model_folder), "--port", str(port)],
            cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 240
        while True:
            if process.poll() is not None:
                pytest.fail(f"the demo exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                urllib.request.urlopen(url, timeout=5)
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"the demo did not answer on {url} within 240 s:\n{log.read_text()[-3000:]}")
                time.sleep(1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="module")
def page(app_url):
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no {CHROMIUM} (apt-get install chromium; .ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(120_000)
        page.goto(app_url)
        yield page
        browser.close()


def _rank(page, history: str, candidates: str) -> None:
    page.locator("#history textarea").fill(history)
    page.locator("#candidates textarea").fill(candidates)
    page.locator("#rank").click()


def test_the_page_ranks_as_the_pipeline_does(page, model_folder, tmp_path):
    from transformers import AutoTokenizer

    from modeling_mtrec import MTRecModel, NewsRecommendationPipeline

    _rank(page, "\n".join(HISTORY), "\n".join(CANDIDATES))
    page.locator("#ranking-list li").first.wait_for()
    items = page.locator("#ranking-list li")
    shown = [(items.nth(i).locator(".title").inner_text(), float(items.nth(i).get_attribute("data-score")))
             for i in range(items.count())]
    pipe = NewsRecommendationPipeline(
        model=MTRecModel.from_pretrained(model_folder), tokenizer=AutoTokenizer.from_pretrained(model_folder),
        device="cpu",
    )
    expected = pipe({"history": HISTORY, "candidates": CANDIDATES})
    assert shown == [(r["candidate"], r["score"]) for r in expected["ranking"]]
    weights = page.locator("#weights-list li")
    assert weights.count() == len(HISTORY)
    top = max(expected["history"], key=lambda h: h["weight"])
    assert top["item"] in weights.first.inner_text()
    assert "Ranked 5 candidates" in page.locator("#message").inner_text()

    screenshot = tmp_path / "demo.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("MTREC_DEMO_SCREENSHOT"):
        target = Path(os.environ["MTREC_DEMO_SCREENSHOT"])
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(screenshot, target)


@pytest.mark.parametrize(
    ("history", "candidates", "message"),
    [
        ("", "\n".join(CANDIDATES), "enter at least one title the user clicked"),
        ("\n".join(HISTORY), "  \n ", "enter at least one title to rank"),
        ("x" * 10_000, "\n".join(CANDIDATES), "10,000 characters"),
    ],
)
def test_bad_input_gets_a_message_not_a_traceback(page, history, candidates, message):
    _rank(page, history, candidates)
    shown = page.locator("#message")
    shown.filter(has_text=message).wait_for()
    assert "Cannot rank" in shown.inner_text()
    assert page.locator("#ranking-list li").count() == 0
    assert "Traceback" not in page.content()
