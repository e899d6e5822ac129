"""The app in a real browser: Debian's Chromium driven by Playwright (never a downloaded browser).

A person's path through the page: upload a rendered paragraph and read the same text the predictor
gives in-process; press Recognize with nothing, then with a file that is not an image, and see the
messages while the server keeps serving; draw with the mouse; flag a reading. The page may load
nothing from off this machine: every request to another host is aborted and fails the test.
Screenshots go to /tmp/text_recognizer_app_*.png for a person to look at.
"""

import time
from pathlib import Path

import pytest

SCREENSHOTS = Path("/tmp")
TIMEOUT_MS = 60_000

pytestmark = pytest.mark.browser


@pytest.fixture
def open_page(browser, served):
    "A fresh page on the app; afterwards, checks that nothing was requested from another host."
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    outside = []

    def only_this_machine(route):
        url = route.request.url
        if url.startswith((f"http://127.0.0.1:{served.port}/", "data:", "blob:")):
            return route.continue_()
        outside.append(url)
        return route.abort()

    tab.route("**/*", only_this_machine)
    tab.goto(served.url, timeout=TIMEOUT_MS)
    tab.wait_for_selector("#upload input[type=file]", state="attached", timeout=TIMEOUT_MS)
    yield tab
    context.close()
    assert outside == [], f"the page requested resources from other hosts: {outside}"


def details_text(tab) -> str:
    return tab.locator("#details").inner_text()


def recognize_upload(tab, path) -> str:
    "Upload `path`, press Recognize, wait for the details line; the recognized text."
    before = details_text(tab)
    tab.set_input_files("#upload input[type=file]", str(path))
    tab.locator("#upload img").first.wait_for(timeout=TIMEOUT_MS)  # the preview: the upload has landed
    tab.locator("#recognize-upload").click()
    tab.wait_for_function("([before]) => { const d = document.querySelector('#details');"
                          " return d && d.innerText.includes('latency') && d.innerText !== before; }",
                          arg=[before], timeout=TIMEOUT_MS)
    return tab.locator("#text textarea").input_value()


def error_toast(tab, words: str) -> str:
    "The text of the error message that contains `words`, once it shows."
    toast = tab.get_by_text(words).first
    toast.wait_for(timeout=TIMEOUT_MS)
    return toast.inner_text()


def test_upload_reads_what_the_predictor_reads(open_page, recognizer, page):
    text = recognize_upload(open_page, page)
    assert text == recognizer.predict(str(page))
    open_page.locator("#annotated img").first.wait_for(timeout=TIMEOUT_MS)  # the lines found, drawn on the page
    assert f"{recognizer.version}" in details_text(open_page)
    open_page.screenshot(path=str(SCREENSHOTS / "text_recognizer_app_upload.png"), full_page=True)


def test_errors_are_shown_and_the_server_keeps_serving(open_page, recognizer, page, tmp_path):
    open_page.locator("#recognize-upload").click()  # nothing uploaded yet
    assert "Upload a photo" in error_toast(open_page, "No image to read")
    open_page.screenshot(path=str(SCREENSHOTS / "text_recognizer_app_no_image.png"), full_page=True)
    notes = tmp_path / "notes.png"
    notes.write_bytes(b"%PDF-1.7 a document, not an image")
    open_page.set_input_files("#upload input[type=file]", str(notes))
    time.sleep(1)  # the upload lands (the preview stays broken: it is not an image)
    open_page.locator("#recognize-upload").click()
    assert "send an image file" in error_toast(open_page, "not an image")
    open_page.reload()
    open_page.wait_for_selector("#upload input[type=file]", state="attached", timeout=TIMEOUT_MS)
    assert recognize_upload(open_page, page) == recognizer.predict(str(page))


def test_draw_then_flag_the_reading(open_page, served, recognizer):
    from text_recognizer.monitoring import SQLiteStore

    tab = open_page
    tab.get_by_role("tab", name="Draw").click()
    tab.locator("#drawing button[aria-label=Brush]").click()
    canvas = tab.locator("#drawing canvas").last.bounding_box()
    x, y = canvas["x"] + canvas["width"] * 0.25, canvas["y"] + canvas["height"] * 0.45
    tab.mouse.move(x, y)
    tab.mouse.down()
    for step in range(12):  # a zigzag stroke (each move redraws the canvas: few moves keep it quick)
        tab.mouse.move(x + step * 20, y + (15 if step % 2 else -15))
    tab.mouse.up()
    tab.locator("#recognize-drawing").click()
    tab.wait_for_function("document.querySelector('#details').innerText.includes('latency')", timeout=TIMEOUT_MS)
    read = tab.locator("#text textarea").input_value()
    tab.get_by_text("Is the reading wrong? Flag it").click()
    tab.get_by_label("offensive").check()
    tab.locator("#flag-comment textarea").fill("drawn in the browser test")
    tab.locator("#flag-corrected textarea").fill("hello")
    tab.locator("#flag-send").click()
    tab.wait_for_function("document.querySelector('#flag-status').innerText.includes('Thank you')",
                          timeout=TIMEOUT_MS)
    tab.screenshot(path=str(SCREENSHOTS / "text_recognizer_app_draw_flag.png"), full_page=True)
    flagged = SQLiteStore(served.home / "monitoring" / "monitoring.db").flagged()
    row = flagged[flagged["comment"] == "drawn in the browser test"].iloc[-1]
    assert (row["flag"], row["corrected_text"], row["text"]) == ("offensive", "hello", read)
    assert row["width"] == 800 and row["height"] == 300  # the drawing pad's canvas
