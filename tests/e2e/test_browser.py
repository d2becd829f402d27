"""Acceptance: Label Studio's own labeling page, in headless Chromium, segments an object on one click.

A person's steps (README, Label Studio checklist, step 4) in a real Label Studio connected to the
backend's web process and worker: log in, open a task, switch on Auto-Annotation, pick the label
and the smart keypoint tool, click the object. The page sends the click to Label Studio, which asks
the backend; the brush suggestion the page then holds must be the library's mask for the click the
page sent, and accepting it makes it a region of the annotation. The page is saved as
``docs/labelstudio_browser.png`` (shown in README). Skips where Chromium cannot be installed.
"""
from __future__ import annotations

import io
import json
import time
from typing import Any, Callable, Iterator

import numpy as np
import pytest
from PIL import Image

from backend.bench.harness import REPO_ROOT
from backend.bench.labelstudio_server import LS_PASSWORD, LS_USER
from backend.labelstudio.brush import decode_rle
from fcanet_core import Click
from fcanet_core.evaluation.robot import iou
from tests.e2e.test_interactive import SAME_MASK_IOU, reference  # noqa: F401  (fixture)
from tests.support.browser import ChromiumUnavailable, ensure_chromium, start_chrome

pytestmark = pytest.mark.e2e

IMAGE = "llama"
SCREENSHOT = REPO_ROOT / "docs" / "labelstudio_browser.png"
PAGE_TIMEOUT_S = 90.0
PREDICTION_TIMEOUT_S = 120.0
#: Where on the displayed image the click goes, as fractions of its width and height (the llama's head).
CLICK_AT = (0.5, 0.55)


@pytest.fixture(scope="module")
def chrome(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A headless Chromium session (skips the module where Chromium cannot be had)."""
    try:
        browser, driver = ensure_chromium()
    except ChromiumUnavailable as exc:
        pytest.skip(f"skipped: no headless Chromium ({exc})")
    session = start_chrome(browser, driver, tmp_path_factory.mktemp("chrome") / "chromedriver.log")
    try:
        yield session
    finally:
        session.quit()


def _wait(condition: Callable[[], Any], what: str, timeout: float) -> Any:
    """Poll ``condition`` until it returns something truthy; AssertionError naming ``what`` after ``timeout``."""
    from selenium.common.exceptions import StaleElementReferenceException

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition()
        except StaleElementReferenceException:  # the page re-rendered under the lookup: look again
            value = None
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _log_in(chrome, url: str) -> None:
    from selenium.webdriver.common.by import By

    chrome.get(f"{url}/user/login/")
    chrome.find_element(By.NAME, "email").send_keys(LS_USER)
    chrome.find_element(By.NAME, "password").send_keys(LS_PASSWORD)
    chrome.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    _wait(lambda: "/user/login" not in chrome.current_url, "the login to finish", PAGE_TIMEOUT_S)


def _pick_smart_keypoint(chrome) -> None:
    """Auto-Annotation on, the KeyPointLabels control's label, then the smart keypoint tool."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    chrome.find_element(By.XPATH, "//span[text()='Auto-Annotation']").click()
    keypoint_label = chrome.find_elements(By.CSS_SELECTOR, "span.lsf-label")[1]  # config order: brush, keypoint
    keypoint_label.click()
    group = _wait(lambda: chrome.find_elements(By.CSS_SELECTOR, "button.lsf-tool_smart:not([aria-label])"),
                  "the smart tools (is the backend connected as interactive?)", PAGE_TIMEOUT_S)[0]
    ActionChains(chrome).move_to_element(group).perform()  # the smart tools open on hover
    tool = chrome.find_element(By.CSS_SELECTOR, "button.lsf-tool_smart[aria-label=key-point-tool]")
    _wait(tool.is_displayed, "the smart keypoint tool to show", 10)
    ActionChains(chrome).move_to_element(tool).click().perform()
    assert "lsf-tool_active" in tool.get_attribute("class"), "the smart keypoint tool did not become active"
    assert "lsf-label_selected" in keypoint_label.get_attribute("class"), "the keypoint label is not selected"


def _sent_clicks(chrome) -> list[dict]:
    """The bodies of the page's ``interactive-annotating`` requests so far (Chromium's network log)."""
    bodies = []
    for entry in chrome.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        request = message.get("params", {}).get("request", {})
        if message["method"] == "Network.requestWillBeSent" and request.get("url", "").endswith("/interactive-annotating"):
            bodies.append(json.loads(request["postData"]))
    return bodies


#: The task's image as the page shows it (Label Studio loads it as a blob).
SHOWN_IMAGE = "return Array.from(document.images).find(i => i.src.startsWith('blob:') && i.width > 100) || null;"
SUGGESTED_BRUSHES = """
const annotation = Htx.annotationStore.selected;
return Array.from(annotation.suggestions.values()).filter(r => r.type === 'brushregion').map(r => Array.from(r.rle));
"""
ANNOTATION_RESULT = "return Htx.annotationStore.selected.serializeAnnotation();"


def test_smart_keypoint_click_in_the_labeling_page_gives_the_librarys_mask(
        chrome, label_studio, make_project, grabcut, reference) -> None:  # noqa: F811
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    predictor, _ = reference
    project = make_project([IMAGE])
    image, gt = grabcut[IMAGE].load()
    height, width = gt.shape

    _log_in(chrome, label_studio.url)
    chrome.get(f"{label_studio.url}/projects/{project.id}/data?task={project.tasks[IMAGE]}")
    _wait(lambda: chrome.execute_script(SHOWN_IMAGE) and len(chrome.find_elements(By.TAG_NAME, "canvas")) >= 5,
          "the task's image and its canvas layers on the labeling page", PAGE_TIMEOUT_S)
    _pick_smart_keypoint(chrome)
    shown = chrome.execute_script(SHOWN_IMAGE)
    box = shown.rect
    ActionChains(chrome).move_to_element_with_offset(
        shown, int(box["width"] * (CLICK_AT[0] - 0.5)), int(box["height"] * (CLICK_AT[1] - 0.5))).click().perform()

    suggested = _wait(lambda: chrome.execute_script(SUGGESTED_BRUSHES),
                      "a brush suggestion from the backend", PREDICTION_TIMEOUT_S)
    (sent,) = _sent_clicks(chrome)
    (keypoint,) = sent["context"]["result"]
    assert (keypoint["type"], keypoint["is_positive"]) == ("keypointlabels", True)
    click = Click(keypoint["value"]["x"] * width / 100.0, keypoint["value"]["y"] * height / 100.0, True)
    assert gt[int(click.y), int(click.x)] == 1, f"the page's click {click} is not on the object"

    (rle,) = suggested
    page_mask = (decode_rle(rle).reshape(height, width, 4)[..., 3] >= 128).astype(np.uint8)
    agreement = iou(page_mask, predictor.predict(image, [click]).mask)
    assert agreement >= SAME_MASK_IOU, f"the page's mask differs from the library's (IoU {agreement:.4f})"

    chrome.find_elements(By.CSS_SELECTOR, ".lsf-auto-accept button")[-1].click()  # ✓ accept the suggestion
    result = _wait(lambda: [r for r in chrome.execute_script(ANNOTATION_RESULT) if r["type"] == "brushlabels"],
                   "the accepted brush region in the annotation", 20)
    assert result[0]["value"]["brushlabels"] == ["Object"]
    _save_screenshot(chrome, chrome.find_element(By.CSS_SELECTOR, ".lsf-main-view"))


def _save_screenshot(chrome, area) -> None:
    """The labeling area of the page, at most 800 px wide, as a 256-colour PNG (small enough for git)."""
    page = Image.open(io.BytesIO(chrome.get_screenshot_as_png())).convert("RGB")
    box = area.rect
    scale = page.width / chrome.execute_script("return window.innerWidth")
    crop = page.crop(tuple(int(v * scale) for v in (box["x"], box["y"], box["x"] + box["width"],
                                                     box["y"] + box["height"])))
    crop.thumbnail((800, 800))
    SCREENSHOT.parent.mkdir(exist_ok=True)
    crop.quantize(256).save(SCREENSHOT, optimize=True)
