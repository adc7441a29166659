"""The explorer page in a real browser: headless Chromium driven by selenium and Debian's
chromedriver, the page opened from a file:// URL with the network switched off.

Skipped only where no Chromium or chromedriver is found (CI installs both: .ci/run).
"""

from __future__ import annotations

import base64
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from advlab.experiments.explore import worst_case_error
from tests.report.conftest import page_payload

pytestmark = pytest.mark.browser

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
DRIVER = shutil.which("chromedriver")
if CHROMIUM is None or DRIVER is None:
    pytest.skip(
        "no Chromium/chromedriver found on PATH (Debian: apt-get install chromium chromium-driver)",
        allow_module_level=True,
    )
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -r requirements.lock)")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402

SCREENSHOTS: list[Path] = []


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1200,900", "--proxy-server=127.0.0.1:9", "--disable-extensions"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=DRIVER))
    # no network at all: offline emulation, and every proxied request goes to a closed port
    driver.set_network_conditions(offline=True, latency=0, download_throughput=0, upload_throughput=0)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def page(browser, explore_page):
    browser.get(explore_page.resolve().as_uri())
    assert browser.find_element(By.ID, "we-p").text, "the page's scripts did not run"
    return browser


def _slide(driver, slider_id: str, steps: int) -> str:
    """Move a range input by keyboard: Home, then `steps` presses of the right arrow."""
    slider = driver.find_element(By.ID, slider_id)
    slider.send_keys(Keys.HOME + Keys.ARROW_RIGHT * steps)
    return slider.get_attribute("value")


def test_loads_offline_from_a_file_url(page, explore_page):
    assert page.current_url.startswith("file://")
    assert page.execute_script("return navigator.onLine") is False
    assert page.find_element(By.ID, "f2-error").text  # the Fig. 2 panel computed its curve
    assert len(page.find_elements(By.CSS_SELECTOR, "#sz-cards .card")) == 4


@pytest.mark.parametrize(("steps", "value", "shown"), [(0, "0", "0.1192"), (30, "0.3", "0.7858"), (100, "1", "0.9998")])
def test_worked_example_shows_the_seed_numbers(page, steps, value, shown):
    assert _slide(page, "we-eps", steps) == value
    assert page.find_element(By.ID, "we-p").text == shown
    assert page.find_element(By.ID, "we-p0").text == "0.1192"
    assert page.find_element(By.ID, "we-flip").text.endswith("= 0.1818")


def test_random_signs_contrast(page):
    _slide(page, "we-eps", 30)
    page.find_element(By.ID, "we-random").click()
    assert "random signs" in page.find_element(By.ID, "we-mode").text
    assert page.find_element(By.ID, "we-p").text != "0.7858"
    page.find_element(By.ID, "we-sign").click()
    assert page.find_element(By.ID, "we-p").text == "0.7858"


def test_fig2_error_at_eps_025_equals_reproduce_goodfellow_fig2(page, explore_page, fig2_results):
    """The page computes the worst-case error itself (JavaScript); Python's FGSM error must agree."""
    assert _slide(page, "f2-eps", 25) == "0.25"
    n = page_payload(explore_page.read_text(encoding="utf-8"))["fig2"]["n"]
    error = page.find_element(By.ID, "f2-error")
    wrong = int(error.get_attribute("data-wrong"))
    assert wrong / n == fig2_results["fgsm_error"]
    assert error.text.startswith(f"{wrong} / {n} misclassified")
    assert "ok" in page.find_element(By.ID, "f2-check").get_attribute("class")
    page.find_element(By.ID, "f2-next").click()
    assert page.find_element(By.ID, "f2-which").text.startswith("test image 2 of")


def test_fig2_error_curve_is_exact(page, explore_page):
    """The page's whole curve (eps = 0, .01, ..., .5) equals the exact worst case computed in Python."""
    fig2 = page_payload(explore_page.read_text(encoding="utf-8"))["fig2"]
    pixels = np.frombuffer(base64.b64decode(fig2["images"]), dtype=np.uint8).reshape(fig2["n"], 784)
    x, y = torch.from_numpy(pixels / 255.0), torch.tensor(fig2["labels"])
    w = torch.from_numpy(np.frombuffer(base64.b64decode(fig2["weight"]), dtype="<f8").copy())
    expected = [round(worst_case_error(w, fig2["bias"], x, y, k / 100) * fig2["n"]) for k in range(51)]
    curve = page.find_element(By.ID, "f2-curve").get_attribute("data-worst")
    assert [int(v) for v in curve.split(",")] == expected
    assert expected[0] < expected[10] < expected[25]


def _console_errors(driver) -> list[dict]:
    """The browser log's errors since the last call (reading the log empties it)."""
    return [entry for entry in driver.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")]


def _enter(driver, input_id: str, text: str) -> None:
    """Type `text` into a number field at once, as a paste does: set the value, fire `input`."""
    driver.execute_script(
        "const el = document.getElementById(arguments[0]); el.value = arguments[1];"
        "el.dispatchEvent(new Event('input', { bubbles: true }));",
        input_id, text,
    )


def _overlapping_labels(driver, svg_id: str) -> list[list[str]]:
    """Pairs of text labels in an SVG whose boxes overlap (labels piled on one another)."""
    return driver.execute_script(
        """const texts = Array.from(document.querySelectorAll('#' + arguments[0] + ' text'));
        const boxes = texts.map((t) => t.getBBox()), out = [];
        for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
          const a = boxes[i], b = boxes[j];
          const w = Math.min(a.x + a.width, b.x + b.width) - Math.max(a.x, b.x);
          const h = Math.min(a.y + a.height, b.y + b.height) - Math.max(a.y, b.y);
          if (w > 1 && h > 1) out.push([texts[i].textContent, texts[j].textContent]);
        }
        return out;""",
        svg_id,
    )


def _page_text(driver) -> str:
    return driver.find_element(By.TAG_NAME, "body").text


@pytest.fixture
def worked(page):
    """The worked example at its seed values and eps = 0.3; reset again afterwards."""
    page.find_element(By.ID, "we-reset").click()
    _console_errors(page)
    yield page
    page.find_element(By.ID, "we-reset").click()


@pytest.mark.parametrize("weight", ["0", "0.001"])
def test_degenerate_weights_give_a_message_not_nan(worked, weight):
    for i in range(5):
        _enter(worked, f"we-w{i}", weight)
    message = worked.find_element(By.ID, "we-message")
    text = _page_text(worked)
    assert "NaN" not in text and "Infinity" not in text
    assert _overlapping_labels(worked, "we-sigmoid") == []
    assert _overlapping_labels(worked, "we-bars") == []
    if weight == "0":
        assert message.is_displayed() and "All weights are 0" in message.text
        assert worked.find_element(By.ID, "we-flip").text.startswith("none")
    else:  # |w.x + b| / ||w||_1 = 0.001 * |-2 + 2 + 1 - 3 + 1| / 0.005, its eps ticks packed into 0.0075 of z
        assert not message.is_displayed()
        assert worked.find_element(By.ID, "we-flip").text == "0.0010 / 0.0050 = 0.2000"
    assert _console_errors(worked) == []
    _enter(worked, "we-w0", "3")
    assert not message.is_displayed()


@pytest.mark.parametrize("field", ["we-x0", "we-w2", "we-b"])
@pytest.mark.parametrize("entry", ["1e308", "-1e308", "1001", "1e400", "", "abc"])
def test_out_of_range_entries_are_refused_with_a_message(worked, field, entry):
    """An entry that is not a finite number in [-1000, 1000] is refused: the field is marked, a
    message says why, the numbers shown stay those of the last accepted value, and the browser
    logs no error."""
    before = {name: worked.find_element(By.ID, name).text for name in ("we-p", "we-z", "we-flip")}
    _enter(worked, field, entry)
    message = worked.find_element(By.ID, "we-message")
    assert message.is_displayed()
    assert ("outside [\u22121000, 1000]" in message.text) or ("is empty or not a number" in message.text)
    assert "invalid" in worked.find_element(By.ID, field).get_attribute("class")
    assert {name: worked.find_element(By.ID, name).text for name in before} == before
    text = _page_text(worked)
    assert "NaN" not in text and "Infinity" not in text
    assert _console_errors(worked) == []
    _enter(worked, field, "1000")  # the bound itself is accepted, and clears the message
    assert not message.is_displayed()
    assert "invalid" not in worked.find_element(By.ID, field).get_attribute("class")
    assert _overlapping_labels(worked, "we-sigmoid") == [] and _console_errors(worked) == []


@pytest.mark.parametrize("width", [360, 420])
def test_fits_a_phone_screen_without_sideways_scrolling(page, width):
    page.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride", {"width": width, "height": 740, "deviceScaleFactor": 1, "mobile": True}
    )
    try:
        assert page.execute_script("return window.innerWidth") == width
        scroll, client = page.execute_script(
            "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
        )
        assert scroll <= client == width
        assert _console_errors(page) == []
    finally:
        page.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_no_console_errors_and_a_screenshot(page, tmp_path_factory):
    severe = [entry for entry in page.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")]
    assert severe == []
    _slide(page, "we-eps", 30)
    _slide(page, "f2-eps", 25)
    height = page.execute_script("return document.documentElement.scrollHeight")
    page.set_window_size(1200, height + 120)
    path = tmp_path_factory.mktemp("explore-screenshot") / "explore.png"
    assert page.save_screenshot(str(path)) and path.stat().st_size > 50_000
    SCREENSHOTS.append(path)
    print(f"explorer screenshot: {path}")
