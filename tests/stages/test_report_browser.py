"""`report` in a real browser: Debian's Chromium, headless, driven by selenium.

Nothing here downloads a browser or a driver: selenium is given Debian's chromedriver.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PIL import Image
from test_report import SCRIPT, rendered, sdmorph  # noqa: F401 - `rendered` is a fixture

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is absent (Debian: apt-get install chromium chromium-driver; "
                ".ci/run installs it)", allow_module_level=True)

from selenium import webdriver  # noqa: E402 - only where a browser can be driven
from selenium.common.exceptions import NoAlertPresentException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402

# Starts Chromium.
pytestmark = pytest.mark.slow

WAIT_S = 30


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1000", "--mute-audio", "--no-first-run",
                "--disable-extensions", "--disable-background-networking"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def page(rendered: Path) -> Path:  # noqa: F811 - the imported fixture
    result = sdmorph(rendered.parent.parent, "report", "song")
    assert result.returncode == 0, result.stderr
    return rendered / "report" / "index.html"


def wait_for(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def errors(driver: WebDriver) -> list[dict[str, object]]:
    return [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def no_alert(driver: WebDriver) -> bool:
    try:
        _ = driver.switch_to.alert
    except NoAlertPresentException:
        return True
    return False


def test_the_page_loads_every_picture_and_movie(browser: WebDriver, page: Path) -> None:
    browser.get(page.as_uri())
    assert browser.title == "song: sdmorph report"
    images = browser.find_elements(By.TAG_NAME, "img")
    videos = browser.find_elements(By.TAG_NAME, "video")
    assert len(images) >= 20 and len(videos) >= 2
    for img in images:  # lazy: each loads as it comes into view
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", img)
        wait_for(lambda img=img: browser.execute_script(
            "return arguments[0].complete && arguments[0].naturalWidth > 0", img),
            f"image {img.get_attribute('src')}")
    for video in videos:
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", video)
        wait_for(lambda video=video: browser.execute_script(
            "return arguments[0].readyState >= 2", video),
            f"video {video.get_attribute('src')} (readyState {video.get_attribute('readyState')})")
    assert errors(browser) == []
    browser.execute_script("window.scrollTo(0, 0)")
    shot = Image.open(io.BytesIO(browser.get_screenshot_as_png())).convert("RGB")
    colours = shot.getcolors(maxcolors=1 << 24) or []
    assert len(colours) > 500, f"a blank-looking screenshot ({len(colours)} colours)"


def test_a_prompt_named_like_a_script_shows_as_text_and_runs_nothing(browser: WebDriver,
                                                                      page: Path) -> None:
    browser.get(page.as_uri())
    def shown(selector: str) -> list[str]:
        return [e.get_attribute("textContent")
                for e in browser.find_elements(By.CSS_SELECTOR, selector)]

    assert f"{SCRIPT} 4001" in shown(".scene .name")  # a keyframe's caption
    assert "a red cube, <b>bold</b> & 'quoted'" in shown(".scene .text")
    assert f"sdmorph explore song -p '{SCRIPT}' --keep 7" in shown("code.copy")
    assert SCRIPT in browser.find_element(By.ID, "scenes").text  # the scene's heading
    assert browser.execute_script("return document.scripts.length") == 1
    assert browser.execute_script("return document.querySelectorAll('b').length") == 0
    assert no_alert(browser)
    assert errors(browser) == []


def test_the_state_filter_shows_one_state(browser: WebDriver, page: Path) -> None:
    browser.get(page.as_uri())
    cards = browser.find_elements(By.CSS_SELECTOR, "#transition-grid > figure")
    states = {c.get_attribute("data-state") for c in cards}
    assert "complete" in states
    browser.find_element(By.CSS_SELECTOR, '.filters button[data-state="complete"]').click()
    shown = [c for c in cards if c.is_displayed()]
    assert shown and all(c.get_attribute("data-state") == "complete" for c in shown)
    browser.find_element(By.CSS_SELECTOR, '.filters button[data-state=""]').click()
    assert all(c.is_displayed() for c in cards)
