"""The demo in a real browser (Playwright driving Debian's chromium, headless): upload, Restore with a live
preview, Stop, the Compare and Degradation lab tabs. Saves screenshots in the test's temporary folder, or
docs/demo.md's in docs/screenshots/ when LATENTINDIGO_SCREENSHOTS=docs/screenshots is set.

The server is configured through environment variables only (test_app.py covers the flags).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from test_app import ROOT, app_env, free_port, serve

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = os.environ.get("LATENTINDIGO_SCREENSHOTS")
EXAMPLES = ROOT / "assets" / "examples"

# skipped without chromium, and said so (the README's test command lists skips with -rs); CI, which installs
# chromium, sets LATENTINDIGO_REQUIRE_BROWSER=1 so that a missing browser fails instead of skipping
if os.environ.get("LATENTINDIGO_REQUIRE_BROWSER") == "1" and not Path(CHROMIUM).exists():
    raise RuntimeError(f"LATENTINDIGO_REQUIRE_BROWSER=1 but {CHROMIUM} is missing: the browser tests cannot run")
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"the browser test needs {CHROMIUM} "
                                "(Debian: apt-get install chromium)")

# records in window.previews every image the live preview shows (the first: what it showed already): its caption, and
# when (performance.now(), ms) its source changed and when the browser had it loaded and decoded
WATCH_PREVIEW = """() => {
    window.previews = [];
    const box = document.querySelector('#preview');
    const note = () => {
        const img = box.querySelector('img');
        const label = box.querySelector('[data-testid="block-label"]');
        const src = img && img.getAttribute('src');
        const last = window.previews[window.previews.length - 1];
        if (!src || (last && last.src === src)) return;
        const entry = {src, label: label ? label.textContent : '', changed: performance.now(), shown: null};
        window.previews.push(entry);
        img.decode().then(() => { entry.shown = performance.now(); }, () => {});
    };
    note();  // what it shows now: the entries after this one are new
    new MutationObserver(note).observe(box, {subtree: true, childList: true, attributes: true, characterData: true});
}"""


# records every text the restore tab's status line shows, in window.statuses
WATCH_STATUS = """() => {
    window.statuses = [];
    const box = document.querySelector('#status');
    new MutationObserver(() => window.statuses.push(box.textContent)).observe(
        box, {subtree: true, childList: true, characterData: true});
}"""


@pytest.fixture(scope="module")
def server(tmp_path_factory, realistic_package):
    """The app as a user starts it, with the realistic stage installed (the fixture: a missing package fails the
    tests; test_app.py has the compare and lab tabs without it)."""
    tmp = tmp_path_factory.mktemp("browser")
    port = free_port()
    env = app_env(tmp, GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port),
                  LATENTINDIGO_PRIORS="mini", LATENTINDIGO_THREADS="1")  # the bundled default prior
    with serve([], env, port, tmp / "app.log") as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=["--no-sandbox", "--disable-background-networking", "--disable-gpu"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser, server):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(server)
    page.wait_for_selector("#restore-button", timeout=60_000)
    yield page
    page.close()
    assert not errors, errors


def set_number(page, selector: str, value: int) -> None:
    box = page.locator(f"{selector} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


def every_step(page) -> None:
    """Early stop off (mini's diffusion stops at its first step, having changed nothing): for tests of the steps."""
    box = page.locator("#early-stop input[type=number]")
    if not box.is_visible():
        page.get_by_text("Advanced").click()
        box.wait_for(state="visible")
    # the accordion mounts its controls when first opened, and a value typed as they mount can be reset to the
    # initial one (seen on a quiet machine): type it until it holds
    for _ in range(20):
        set_number(page, "#early-stop", 0)
        page.wait_for_timeout(250)
        if box.input_value() == "0":
            return
    raise AssertionError("the Early stop control did not keep 0")


def upload(page, box: str, path: Path) -> None:
    page.set_input_files(f"{box} input[type=file]", str(path))
    page.wait_for_selector(f"{box} img", timeout=30_000)


def status_contains(page, selector: str, text: str, timeout: float = 180_000) -> None:
    page.wait_for_function("([s, t]) => document.querySelector(s)?.textContent.includes(t)", arg=[selector, text],
                           timeout=timeout)


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = ROOT / SCREENSHOTS if SCREENSHOTS else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_restore_shows_a_live_preview_then_the_slider(page, shots):
    # before a run, the result's numbers are not shown (as 0)
    assert page.locator("#seed-used input").count() == 0 or not page.locator("#seed-used input").is_visible()
    upload(page, "#input-image", EXAMPLES / "chelsea.png")
    status_contains(page, "#size-hint", "64x64 → 256x256", timeout=60_000)
    for attempt in range(30):  # the server times a few short runs at start-up; then the hint has an estimate
        set_number(page, "#steps", 9 + attempt % 2)
        page.wait_for_timeout(3000)
        if "on this server" in page.locator("#size-hint").text_content():
            break
    assert "s on this server" in page.locator("#size-hint").text_content()
    set_number(page, "#steps", 8)
    every_step(page)
    page.evaluate(WATCH_PREVIEW)
    page.click("#restore-button")
    page.wait_for_selector("#result-slider img", timeout=180_000)
    status_contains(page, "#status", "Done")
    status_contains(page, "#status", "Diffusion: 8 steps, changed the start by")
    previews = page.evaluate("window.previews")
    steps = [p for p in previews if "Step" in p["label"]]
    assert len({p["src"] for p in steps}) >= 2, previews  # the preview changed at least twice while sampling
    assert len({p["src"] for p in previews}) >= 3, previews  # and once more for the result
    assert all(" · " in p["label"] and "/8" in p["label"] for p in steps)
    assert page.locator("#download a").count() >= 1  # the PNG download
    assert page.locator("#maps img").count() == 2  # the consistency and invented-detail maps
    page.wait_for_selector("#seed-used input", state="visible", timeout=10_000)
    assert int(page.locator("#seed-used input").input_value()) >= 0
    assert float(page.locator("#seconds input").input_value()) > 0
    page.wait_for_timeout(500)  # let the plot finish drawing
    page.screenshot(path=str(shots / "restore.png"), full_page=True)

    # a map laid over the result, and back
    sources = "() => [...document.querySelectorAll('#result-slider img')].map(i => i.getAttribute('src')).join(' ')"
    result = page.evaluate(sources)
    page.locator("#show").get_by_text("consistency map", exact=True).click()
    page.wait_for_function(f"() => ({sources})() !== {result!r}", timeout=30_000)
    assert "consistency" in page.evaluate(sources)
    page.locator("#show").get_by_text("result", exact=True).click()
    page.wait_for_function(f"() => !({sources})().includes('consistency')", timeout=30_000)
    assert "seed" in page.evaluate(sources).split(" ")[-1]  # the result PNG again


def test_a_file_that_cannot_be_decoded_is_refused_on_upload_and_the_photo_stays(page, tmp_path):
    from test_app import write_bad_file

    upload(page, "#input-image", EXAMPLES / "chelsea.png")
    status_contains(page, "#size-hint", "64x64", timeout=60_000)
    bad = tmp_path / "truncated.png"
    write_bad_file(bad)
    page.set_input_files("#input-image input[type=file]", str(bad))
    page.wait_for_function("() => [...document.querySelectorAll('.toast-body')].some(t => "
                           "t.textContent.includes('corrupt or truncated'))", timeout=30_000)
    page.wait_for_timeout(1000)
    source = page.locator("#input-image img").first.get_attribute("src")
    assert "chelsea" in source, source  # the previous photo is back
    assert "64x64" in page.locator("#size-hint").text_content()


def test_a_result_png_dropped_on_the_recipe_input_sets_the_controls(page, tmp_path):
    import json

    from latentindigo.imageio import save_png
    from PIL import Image

    recipe = {"version": "0.1.0", "method": "pixel", "prior": {"spec": "mini", "weights": {}, "prompt": ["", ""]},
              "settings": {"method": "pixel", "steps": 7, "guidance": 0.8, "seed": 1234, "scale": 2.5, "size": None},
              "seed": 1234}
    path = save_png(Image.new("RGB", (40, 30)), tmp_path / "result.png", text={"latentindigo": json.dumps(recipe)})
    page.set_input_files("#recipe input[type=file]", str(path))
    status_contains(page, "#status", "Controls set from the recipe of result.png", timeout=30_000)
    assert page.locator("#steps input[type=number]").input_value() == "7"
    assert page.get_by_label("PixelINN").is_checked()
    values = page.evaluate("() => [...document.querySelectorAll('input[type=number]')].map(i => i.value)")
    assert "1234" in values and "2.5" in values and "0.8" in values


def test_a_diffusion_that_changes_nothing_says_so(page):
    upload(page, "#input-image", EXAMPLES / "coffee.png")
    page.click("#restore-button")
    page.wait_for_selector("#result-slider img", timeout=180_000)
    status_contains(page, "#status", "converged at step 1 of 10")
    assert "below the early-stop threshold, the result is its start" in page.locator("#status").text_content()


def test_advanced_settings_and_prompt(page):
    page.get_by_text("Advanced").click()
    page.wait_for_selector("#prompt textarea, #prompt input", timeout=10_000)
    # mini is unconditional: no prompt
    assert page.locator("#prompt textarea, #prompt input").first.is_disabled()
    assert "no text encoder" in page.locator("#prompt textarea, #prompt input").first.get_attribute("placeholder")


def test_stop_ends_the_run_and_a_run_clicked_at_once_is_not_lost(page):
    upload(page, "#input-image", EXAMPLES / "rocket.png")
    every_step(page)
    set_number(page, "#steps", 200)
    page.click("#restore-button")
    status_contains(page, "#status", "Step ")
    page.evaluate(WATCH_STATUS)
    set_number(page, "#steps", 2)  # for the next run: the running one keeps its 200
    page.click("#stop-button")
    # at once, while the stopped run is still ending: the click is kept and runs next (with gradio's `cancels` on
    # the Stop button, such a click was lost now and then)
    page.click("#restore-button")
    page.wait_for_selector("#result-slider img", timeout=120_000)
    status_contains(page, "#status", "Done")
    statuses = page.evaluate("window.statuses")
    assert any("Stopped at step" in s and "of 200" in s for s in statuses), statuses


def test_compare_and_lab_tabs(page, shots):
    from latentindigo.demo.controls import COMPARE_METHODS

    page.get_by_role("tab", name="Compare").click()
    upload(page, "#compare-image", EXAMPLES / "coffee.png")
    set_number(page, "#compare-steps", 4)
    page.click("#compare-button")
    status_contains(page, "#compare-status", "Done")
    assert page.locator("#compare-gallery img").count() == len(COMPARE_METHODS)  # all ticked, realistic too
    page.wait_for_timeout(500)
    page.screenshot(path=str(shots / "compare.png"), full_page=True)

    page.get_by_role("tab", name="Degradation lab").click()
    upload(page, "#lab-image", EXAMPLES / "clean" / "astronaut.png")
    set_number(page, "#lab-steps", 4)
    page.click("#lab-button")
    status_contains(page, "#lab-status", "best PSNR")
    assert page.locator("#lab-gallery img").count() == 4  # all ticked: LatentINN, faithful, realistic, bicubic
    page.wait_for_timeout(500)
    page.screenshot(path=str(shots / "lab.png"), full_page=True)


def test_stop_ends_the_callers_own_run_waiting_in_the_queue_and_no_one_elses(browser, server):
    """Alice's run holds the device; Bob's waits in the queue. Bob's Stop ends his waiting run before its first
    step and leaves Alice's alone; the Restore Bob clicks after his Stop runs."""
    alice, bob = (browser.new_page(viewport={"width": 1400, "height": 1000}) for _ in range(2))
    try:
        for page in (alice, bob):
            page.goto(server)
            page.wait_for_selector("#restore-button", timeout=60_000)
            upload(page, "#input-image", EXAMPLES / "rocket.png")
        every_step(alice)
        set_number(alice, "#steps", 200)
        alice.click("#restore-button")
        status_contains(alice, "#status", "Step ")
        set_number(bob, "#steps", 2)
        bob.evaluate(WATCH_STATUS)
        bob.click("#restore-button")  # waits in the queue behind Alice's run
        bob.wait_for_timeout(1500)
        bob.click("#stop-button")
        status_contains(bob, "#status", "will not start", timeout=30_000)
        bob.wait_for_timeout(500)
        bob.click("#restore-button")  # after the Stop: must run
        alice.wait_for_timeout(1500)
        assert "Stopped" not in alice.locator("#status").text_content()  # Alice's run goes on
        alice.click("#stop-button")
        status_contains(alice, "#status", "Stopped at step")
        status_contains(bob, "#status", "Done", timeout=120_000)
        statuses = bob.evaluate("window.statuses")
        assert any("Stopped before the first step" in s for s in statuses), statuses
    finally:
        alice.close()
        bob.close()
