"""The playground and the API docs in a real browser: headless Chromium against a real server.

Playwright cannot download browsers here, so it drives the system's Chromium (Debian's
`chromium`; FRAMECAST_CHROMIUM names another). Without one these tests skip, saying so, unless
FRAMECAST_BROWSER_TESTS is set (CI sets it), which makes a missing browser a failure.

Screenshots (on failure, and the two the README shows) go to FRAMECAST_TEST_ARTIFACTS, by default
a folder under pytest's base temp directory; the path is printed. FRAMECAST_UPDATE_SCREENSHOTS=1
also copies the two README screenshots to docs/.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import pytest
from PIL import Image

from .conftest import KEY_A, SUBMIT_PATH, Server, wait_for

if TYPE_CHECKING:  # playwright is imported only once a browser is known to be there
    from playwright.sync_api import Browser, Page, Route

REPO = Path(__file__).parents[2]
# Debian's chromium as root needs --no-sandbox; the rest keep it off a network it cannot reach.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
STEP_SECONDS = 0.05  # the preview engine's delay per frame: a 49-frame run takes seconds


def _chromium() -> str | None:
    candidate = (
        os.environ.get("FRAMECAST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    )
    return candidate if Path(candidate).is_file() else None


@pytest.fixture(scope="module")
def server(make_server: Callable[..., Server]) -> Server:
    s = make_server(allow_private_urls="true", preview_step_seconds=STEP_SECONDS)
    s.start()
    return s


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get("FRAMECAST_TEST_ARTIFACTS")
    path = Path(configured) if configured else tmp_path_factory.getbasetemp() / "browser"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    required = bool(os.environ.get("FRAMECAST_BROWSER_TESTS"))
    executable = _chromium()
    if executable is None:
        why = (
            f"no Chromium at {os.environ.get('FRAMECAST_CHROMIUM') or '/usr/bin/chromium'}: "
            "install it (Debian: apt-get install -y chromium) or set FRAMECAST_CHROMIUM to one"
        )
        if required:
            pytest.fail(f"FRAMECAST_BROWSER_TESTS is set but there is {why}")
        pytest.skip(f"{why}; FRAMECAST_BROWSER_TESTS is unset")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if required:
            raise
        pytest.skip("playwright is not installed (pip install -e '.[test]')")
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@dataclass
class Tab:
    page: Page
    server: Server
    external: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def open(self, path: str = "/", key: str | None = KEY_A) -> None:
        self.page.goto(self.server.base_url + path)
        if key is not None:
            self.page.fill("input[name=api_key]", key)
            self.page.press("input[name=api_key]", "Tab")  # the change event loads the models
            self.page.wait_for_selector("#run-form [name=aspect_ratio]")

    def text(self, selector: str) -> str:
        return str(self.page.inner_text(selector)).strip()


def _tab(
    browser: Browser, server: Server, request: pytest.FixtureRequest, artifacts: Path, **ctx: Any
) -> Iterator[Tab]:
    context = browser.new_context(**ctx)
    tab = Tab(context.new_page(), server)

    # The page and the docs must work with no internet: anything that is not loopback is
    # refused and recorded.
    def only_loopback(route: Route) -> None:
        if urlsplit(route.request.url).hostname in {"127.0.0.1", "localhost"}:
            route.continue_()
        else:
            tab.external.append(route.request.url)
            route.abort()

    context.route("**/*", only_loopback)
    tab.page.on("pageerror", lambda exc: tab.errors.append(str(exc)))
    failed_before = request.session.testsfailed
    yield tab
    # The call phase has been reported by now, so a failure has already been counted.
    if request.session.testsfailed > failed_before:
        shot = artifacts / f"FAILED-{request.node.name}.png"
        tab.page.screenshot(path=str(shot), full_page=True)
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"\nscreenshot of the failure: {shot}")
    context.close()
    assert tab.errors == [], f"JavaScript errors on the page: {tab.errors}"
    assert tab.external == [], f"requests that left the machine: {tab.external}"


@pytest.fixture
def tab(
    browser: Browser, server: Server, request: pytest.FixtureRequest, artifacts: Path
) -> Iterator[Tab]:
    yield from _tab(browser, server, request, artifacts, viewport={"width": 1280, "height": 860})


@pytest.fixture
def phone(
    browser: Browser, server: Server, request: pytest.FixtureRequest, artifacts: Path
) -> Iterator[Tab]:
    yield from _tab(
        browser, server, request, artifacts, viewport={"width": 390, "height": 844}, is_mobile=True
    )


def _keep(shot: Path, name: str) -> None:
    """Copy a README screenshot to docs/ (FRAMECAST_UPDATE_SCREENSHOTS=1), palettised: small."""
    if os.environ.get("FRAMECAST_UPDATE_SCREENSHOTS"):
        Image.open(shot).convert("RGB").quantize(colors=256, dither=Image.Dither.NONE).save(
            REPO / "docs" / name, optimize=True
        )


def _submit(server: Server, image_base: str, **input: Any) -> str:
    """A request over HTTP (as curl or the CLI would make it), with KEY_A: its id."""
    body = {"prompt": "made elsewhere", "image_url": f"{image_base}/harbour.jpg", **input}
    with server.client() as c:
        r = c.post(SUBMIT_PATH, json={"resolution": "360p", **body})
    assert r.status_code == 200, r.text
    return str(r.json()["request_id"])


def _fill_form(page: Page, image_url: str, prompt: str, num_frames: int) -> None:
    page.fill("#run-form [name=image_url]", image_url)
    page.fill("#run-form [name=prompt]", prompt)
    page.select_option("#run-form [name=resolution]", "360p")
    page.fill("#run-form [name=num_frames]", str(num_frames))


def _model_fields(server: Server) -> list[str]:
    with server.client() as c:
        return list(c.get("/v1/models").json()["models"][0]["input_schema"]["properties"])


def test_submit_watch_progress_and_play_the_video(
    tab: Tab, server: Server, image_server: tuple[str, Path], artifacts: Path
) -> None:
    _, images = image_server
    page = tab.page
    asked: list[str] = []
    page.on("request", lambda r: asked.append(urlsplit(r.url).path))
    tab.open("/")

    # The form is the model's schema: every field the API takes has an input of that name.
    for name in _model_fields(server):
        assert page.locator(f'#run-form [name="{name}"]').count() == 1, name
    assert page.get_attribute("#run-form [name=num_frames]", "max") == "129"

    page.set_input_files("#image-file", str(images / "harbour.jpg"))
    page.wait_for_selector("#image-preview", state="visible")
    page.fill("#run-form [name=prompt]", "slow push in on the harbour at dusk")
    page.select_option("#run-form [name=resolution]", "360p")
    page.fill("#run-form [name=num_frames]", "49")
    page.fill("#run-form [name=seed]", "7")
    assert tab.text("#size-note") == "Output: 608\u00d7352"
    page.click("#submit")

    progress: list[float] = []
    statuses: list[str] = []
    running_shot = artifacts / "playground-running.png"
    running_shot.unlink(missing_ok=True)
    deadline = time.monotonic() + 60
    while tab.text("#run-state") != "Completed":
        assert time.monotonic() < deadline, f"no completion; last status {statuses[-1:]}"
        assert tab.text("#run-state") not in {"Failed", "Cancelled"}, tab.text("#run-error")
        value = page.evaluate("document.getElementById('run-progress').value")
        status = tab.text("#run-status")
        if tab.text("#run-state") == "Running":
            progress.append(value)
            statuses.append(status)
            if 0.3 <= value <= 0.8 and not running_shot.exists():
                page.evaluate("window.scrollTo(0, 0)")
                page.screenshot(path=str(running_shot))
        time.sleep(0.05)

    # Progress was shown live, step by step, and only went up.
    seen = sorted(set(progress))
    assert len(seen) >= 3 and seen[0] < 0.5 < seen[-1], seen
    assert progress == sorted(progress)
    assert any("step" in s and "of 49" in s for s in statuses), statuses
    assert running_shot.exists(), "no screenshot mid-run: progress was never between 30 and 80%"
    # ... from the status stream alone: the status route was never polled.
    rid = tab.text("#run-id")
    assert f"/v1/requests/{rid}/status/stream" in asked, asked
    assert f"/v1/requests/{rid}/status" not in asked, asked

    # The finished video loads and plays in the browser, with its poster.
    page.wait_for_function(
        "() => { const v = document.getElementById('video'); return v.readyState >= 3 && v.currentTime > 0 }",
        timeout=20_000,
    )
    video = page.evaluate(
        "(() => { const v = document.getElementById('video');"
        " return {w: v.videoWidth, h: v.videoHeight, d: v.duration, poster: v.poster, src: v.src, error: v.error} })()"
    )
    assert (video["w"], video["h"]) == (608, 352) and video["error"] is None, video
    assert abs(video["d"] - 49 / 24) < 0.1, video
    assert "/v1/files/outputs/" in video["poster"] and video["poster"].split("?")[0].endswith(
        ".jpg"
    )
    poster = httpx.get(video["poster"])
    assert poster.status_code == 200 and poster.headers["content-type"] == "image/jpeg"

    meta = dict(
        zip(
            page.locator("#meta dt").all_inner_texts(),
            page.locator("#meta dd").all_inner_texts(),
            strict=True,
        )
    )
    assert meta["Seed"] == "7" and meta["Size"] == "608\u00d7352", meta
    assert meta["Engine"].startswith("preview"), meta
    assert page.is_visible("#preview-note") and "preview engine" in tab.text("#preview-note")
    page.evaluate("window.scrollTo(0, 0)")
    page.wait_for_timeout(300)  # a frame or two past the poster, for the screenshot
    done_shot = artifacts / "playground-done.png"
    page.screenshot(path=str(done_shot))
    _keep(running_shot, "playground-running.png")
    _keep(done_shot, "playground-done.png")

    # The upload went as a data: URI.
    with server.client() as c:
        result = c.get(f"/v1/requests/{rid}/result").json()
    assert result["input"]["image_url"].startswith("data:image/jpeg;base64,")
    assert result["input"]["seed"] == 7 and result["input"]["resolution"] == "360p"

    # The key and the history survive a reload; the history says how the request ended, and
    # merging the server's list (read by now) kept the prompt typed here.
    page.reload(wait_until="networkidle")
    assert page.input_value("input[name=api_key]") == KEY_A
    entry = page.locator("#history li", has_text="slow push in on the harbour at dusk")
    assert entry.count() == 1 and "Completed" in entry.inner_text()
    assert page.locator("#history li", has_text=rid).count() == 0  # not listed twice
    assert "preview engine" in entry.inner_text()
    entry.locator("button").click()  # reopens it, with fresh links
    page.wait_for_function("document.getElementById('video').readyState >= 2", timeout=20_000)


def test_cancel_a_running_request(tab: Tab, server: Server, image_server: tuple[str, Path]) -> None:
    base, _ = image_server
    page = tab.page
    tab.open("/playground")
    _fill_form(page, f"{base}/harbour.jpg", "pan left across the harbour", 129)  # a URL this time
    page.click("#submit")
    page.wait_for_function("document.getElementById('run-progress').value > 0.05", timeout=30_000)
    page.click("#cancel")
    page.wait_for_function(
        "document.getElementById('run-state').textContent === 'Cancelled'", timeout=15_000
    )
    assert page.is_hidden("#cancel") and page.is_hidden("#result")
    with server.client() as c:
        assert c.get(f"/v1/requests/{tab.text('#run-id')}/status").json()["status"] == "cancelled"
    assert "Cancelled" in page.locator("#history li").first.inner_text()


def test_another_model_gets_its_own_form_and_runs(
    tab: Tab, server: Server, image_server: tuple[str, Path]
) -> None:
    _, images = image_server
    page = tab.page
    tab.open("/")
    page.select_option("#model", "tencent/hunyuan-video-v1.5/image-to-video")
    with server.client() as c:
        card = next(m for m in c.get("/v1/models").json()["models"] if "v1.5" in m["id"])
    for name in card["input_schema"]["properties"]:
        assert page.locator(f'#run-form [name="{name}"]').count() == 1, name
    assert page.locator("#run-form [name=image_url]").count() == 0  # 1.5 calls it "image"
    page.set_input_files("#image-file", str(images / "harbour.jpg"))
    page.fill("#run-form [name=prompt]", "a slow pan")
    page.select_option("#run-form [name=aspect_ratio]", "1:1")
    page.fill("#run-form [name=num_frames]", "9")
    assert tab.text("#size-note") == "Output: 640\u00d7640"
    page.click("#submit")
    page.wait_for_function(
        "document.getElementById('run-state').textContent === 'Completed'", timeout=30_000
    )
    with server.client() as c:
        result = c.get(f"/v1/requests/{tab.text('#run-id')}/result").json()
    assert result["metadata"]["model_id"] == "tencent/hunyuan-video-v1.5/image-to-video"
    assert (result["metadata"]["width"], result["metadata"]["height"]) == (640, 640)


def test_bad_input_and_a_wrong_key_show_the_apis_message(
    tab: Tab, server: Server, image_server: tuple[str, Path]
) -> None:
    base, _ = image_server
    page = tab.page
    tab.open("/")
    body: dict[str, Any] = {
        "prompt": "a harbour",
        "image_url": f"{base}/harbour.jpg",
        "num_frames": 64,
    }
    with server.client() as c:
        expected = c.post(SUBMIT_PATH, json=body).json()["error"]["message"]
    page.fill("#run-form [name=image_url]", body["image_url"])
    page.fill("#run-form [name=prompt]", body["prompt"])
    page.fill("#run-form [name=num_frames]", "64")
    page.click("#submit")
    page.wait_for_selector("#form-error", state="visible")
    assert tab.text("#form-error") == expected and "4n+1" in expected

    # An image that is not one: the server fetches it, and its message is shown.
    page.fill("#run-form [name=num_frames]", "49")
    page.fill("#run-form [name=image_url]", f"{base}/notes.txt")
    page.click("#submit")
    page.wait_for_function("document.getElementById('form-error').textContent.includes('image')")
    assert page.locator("#history li", has_text="a harbour").count() == 0

    page.fill("input[name=api_key]", "not-a-key")
    page.press("input[name=api_key]", "Tab")
    page.wait_for_selector("#page-error", state="visible")
    assert "invalid or revoked API key" in tab.text("#page-error")


def test_fits_a_phone_and_labels_every_control(phone: Tab) -> None:
    page = phone.page
    phone.open("/")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    unlabelled = page.evaluate(
        "[...document.querySelectorAll('input, select, textarea')]"
        ".filter(el => el.labels.length === 0).map(el => el.name || el.id)"
    )
    assert unlabelled == []
    # The keyboard reaches the form: Tab from the key goes on to the page's controls.
    page.focus("input[name=api_key]")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "show-key"


def test_docs_and_redoc_work_offline_and_authorize(tab: Tab, server: Server) -> None:
    page = tab.page
    page.goto(server.base_url + "/docs")
    page.wait_for_selector(".opblock")
    operations = page.locator(".opblock-summary-path").all_inner_texts()
    assert "/v1/models/tencent/hunyuan/image-to-video" in operations
    assert len(operations) >= 8, operations

    # Authorize with a key, then try GET /v1/models from the page.
    page.click("button.authorize")
    page.fill(".modal-ux input", KEY_A)
    page.click(".modal-ux button.authorize")
    page.click(".modal-ux button.btn-done")
    models = page.locator("#operations-models-models_v1_models_get")
    models.locator(".opblock-summary").click()
    models.locator("button.try-out__btn").click()
    models.locator("button.execute").click()
    status = models.locator(".live-responses-table tbody .response-col_status").first
    status.wait_for()
    assert status.inner_text().strip() == "200"

    page.goto(server.base_url + "/redoc")
    page.wait_for_selector("text=Queue a request for tencent/hunyuan/image-to-video")
    # ReDoc's "API docs by Redocly" badge, whose image would come from its CDN: the page's
    # policy keeps the browser from asking (the fixture fails on any request off loopback).
    page.wait_for_selector("text=API docs by Redocly")
    page.wait_for_load_state("networkidle")
    assert page.locator("img[src*='cdn.redoc.ly']").count() == 0


@pytest.mark.parametrize("stream", ["missing", "cut short"])
def test_without_the_status_stream_it_polls(
    tab: Tab, server: Server, image_server: tuple[str, Path], stream: str
) -> None:
    base, _ = image_server
    page = tab.page
    streams: list[str] = []

    # An older server has no stream (404); a proxy may cut one off before the request ends.
    def no_stream(route: Route) -> None:
        streams.append(route.request.url)
        if stream == "missing":
            route.fulfill(status=404, json={"error": {"code": "not_found", "message": "Not Found"}})
        else:
            event = '{"request_id":"x","status":"in_queue","queue_position":0}'
            route.fulfill(
                status=200,
                content_type="text/event-stream",
                body=f"event: status\ndata: {event}\n\n",
            )

    page.route("**/status/stream", no_stream)
    polls: list[str] = []
    page.on("request", lambda r: polls.append(r.url) if r.url.endswith("/status") else None)
    tab.open("/")
    _fill_form(page, f"{base}/harbour.jpg", "polled to the end", 9)
    page.click("#submit")
    page.wait_for_function(
        "document.getElementById('run-state').textContent === 'Completed'", timeout=30_000
    )
    page.wait_for_function("document.getElementById('video').readyState >= 2", timeout=20_000)
    rid = tab.text("#run-id")
    assert [urlsplit(u).path for u in streams] == [f"/v1/requests/{rid}/status/stream"]
    assert any(u.endswith(f"/v1/requests/{rid}/status") for u in polls), polls
    assert page.is_hidden("#run-error")


def test_history_lists_the_keys_requests_from_other_clients(
    tab: Tab, server: Server, image_server: tuple[str, Path]
) -> None:
    base, _ = image_server
    done = _submit(server, base, num_frames=9)
    with server.client() as c:
        wait_for(c, done, {"completed"}, timeout=30)
        stopped = _submit(server, base, num_frames=129)
        assert c.post(f"/v1/requests/{stopped}/cancel").status_code in {200, 202}
        wait_for(c, stopped, {"cancelled"}, timeout=30)
    page = tab.page
    tab.open("/")  # a fresh browser: nothing of this key's in its storage
    for rid, state in ((done, "Completed"), (stopped, "Cancelled")):
        entry = page.locator("#history li", has_text=rid)
        entry.wait_for()
        assert state in entry.inner_text(), entry.inner_text()
    page.locator("#history li", has_text=done).locator("button").click()
    page.wait_for_function("document.getElementById('video').readyState >= 2", timeout=20_000)
    assert tab.text("#run-id") == done


def test_queue_position_is_shown_while_the_worker_is_busy(
    tab: Tab, server: Server, image_server: tuple[str, Path]
) -> None:
    base, _ = image_server
    page = tab.page
    busy = _submit(server, base, num_frames=129)
    with server.client() as c:
        wait_for(c, busy, {"in_progress"}, timeout=30)  # the server's one worker runs it
        waiting = _submit(server, base, num_frames=129)
        try:
            tab.open("/")
            _fill_form(page, f"{base}/harbour.jpg", "waiting its turn", 9)
            page.click("#submit")
            page.wait_for_function(
                "document.getElementById('run-status').textContent === 'In queue: 1 ahead of it.'",
                timeout=10_000,
            )
            assert tab.text("#run-state") == "Queued"
            # The one ahead leaves the queue: the page says so as it happens.
            c.post(f"/v1/requests/{waiting}/cancel")
            page.wait_for_function(
                "document.getElementById('run-status').textContent === 'In queue: next to run.'",
                timeout=10_000,
            )
            page.click("#cancel")
            page.wait_for_function(
                "document.getElementById('run-state').textContent === 'Cancelled'", timeout=10_000
            )
        finally:
            for rid in (waiting, busy):
                c.post(f"/v1/requests/{rid}/cancel")


def test_the_page_is_served_at_the_root_with_its_files(server: Server) -> None:
    for path in ("/", "/playground"):
        r = httpx.get(server.base_url + path)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert 'name="api_key"' in r.text and "https://" not in r.text
    for name, kind in (("playground.js", "javascript"), ("playground.css", "text/css")):
        r = httpx.get(f"{server.base_url}/playground/static/{name}")
        assert r.status_code == 200 and kind in r.headers["content-type"]
