"""The web page (stylization/app.py) in a real browser: headless Chromium (Debian's, installed by
the Makefile with its ChromeDriver) driven by Selenium against ``python -m stylization.app`` on
tiny random checkpoints.

The browser uploads a photo, a wav and an art picture, types an emotion, presses Generate, waits
for the video, checks that it plays (its duration, read by the browser, is > 0) and that the
contact sheet shows; then a photo without a face shows infer.py's reason. The page's screenshot
goes to ``$APP_SCREENSHOT`` when set (README's docs/app.png: ``APP_SCREENSHOT=docs/app.png
pytest tests/test_app.py``). Skipped, with the reason, only where no Chromium is installed.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile
from conftest import REPO
from test_pipeline import demo_inputs  # noqa: F401  (the tiny Style-E and Style-A runs and the inputs)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHROMEDRIVER = shutil.which("chromedriver")

needs_chromium = pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                                    reason="no Chromium and ChromeDriver (`make system-packages` installs Debian's "
                                           "chromium and chromium-driver)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def inputs(request):
    """The checkpoints and the tuple: ``$APP_CHECKPOINTS`` with the demo's inputs beside it (``make demo``:
    outputs/demo/checkpoints and outputs/demo/inputs) when set, else the tiny runs of tests/test_pipeline.py."""
    given = os.environ.get("APP_CHECKPOINTS")
    if not given:
        return request.getfixturevalue("demo_inputs")
    folder = (REPO / given).parent / "inputs"
    return {"checkpoints": REPO / given, "image": folder / "identity.png", "audio": folder / "speech.wav",
            "art": folder / "art.png"}


@pytest.fixture(scope="module")
def server(inputs, tmp_path_factory):
    """The page on ``inputs``' checkpoints, on localhost; yields (url, workdir, process)."""
    workdir = tmp_path_factory.mktemp("app") / "work"
    port = free_port()
    log = open(workdir.parent / "app.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "stylization.app", f"checkpoints={inputs['checkpoints']}", f"port={port}",
         f"workdir={workdir}", "batch_size=4", "max_upload_mb=1"],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "2"})
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail("the app exited: " + (workdir.parent / "app.log").read_text()[-3000:])
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            time.sleep(0.5)
    else:
        process.kill()
        pytest.fail("the app did not listen within 180 s: " + (workdir.parent / "app.log").read_text()[-3000:])
    yield url, workdir, process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    log.close()


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--window-size=1400,1420", "--autoplay-policy=no-user-gesture-required"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def upload(driver, elem_id: str, path: Path) -> None:
    """Hand ``path`` to the file input inside the component ``elem_id`` (what choosing a file does)."""
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, f"#{elem_id} input[type=file]").send_keys(str(path))


def wait_for(driver, condition, seconds: float, what: str):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, seconds, poll_frequency=0.5).until(condition)
    except TimeoutException:
        raise AssertionError(f"{what} did not happen within {seconds:.0f} s; the page says: "
                             + driver.find_element("tag name", "body").text[-2000:]) from None


def uploaded(driver, elem_id: str, seconds: float = 30) -> None:
    """Wait until the component shows what was uploaded (an image, or an audio player)."""
    wait_for(driver, lambda d: d.execute_script(
        f"const e = document.querySelector('#{elem_id}'); return !!e && !!e.querySelector('img, audio, video');"),
        seconds, f"the upload to #{elem_id}")


def video_duration(driver) -> float | None:
    return driver.execute_script(
        "const v = document.querySelector('#video video');"
        "if (!v || !v.src) return null;"
        "if (v.readyState < 1) { v.load(); return null; }"
        "return v.duration;")


@pytest.mark.slow
@needs_chromium
def test_the_page_renders_a_video_and_reports_a_bad_photo(server, browser, inputs, tmp_path):
    from selenium.webdriver.common.by import By

    url, workdir, process = server
    browser.get(url)
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#generate"), 60, "the page loading")
    upload(browser, "photo", inputs["image"])
    uploaded(browser, "photo")
    upload(browser, "speech", inputs["audio"])
    uploaded(browser, "speech")
    upload(browser, "art", inputs["art"])
    uploaded(browser, "art")
    browser.find_element(By.CSS_SELECTOR, "#emotion textarea").send_keys("A person speaks with a broad smile.")
    browser.find_element(By.CSS_SELECTOR, "#generate").click()

    duration = wait_for(browser, lambda d: (video_duration(d) or 0) > 0 and video_duration(d), 300,
                        "the video playing")
    speech_seconds = float(subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0",
                                           str(inputs["audio"])], capture_output=True, text=True).stdout)
    assert abs(duration - speech_seconds) < 0.2, (duration, speech_seconds)  # the video is as long as the speech
    playing = browser.execute_script(
        "const v = document.querySelector('#video video'); v.muted = true;"
        "return v.play().then(() => new Promise(r => setTimeout(() => r(v.currentTime), 500)));")
    assert playing > 0, "the video did not advance when played"
    sheet = wait_for(browser, lambda d: d.execute_script(
        "const i = document.querySelector('#sheet img'); return i && i.complete && i.naturalWidth > 0 "
        "? [i.naturalWidth, i.naturalHeight] : null;"), 30, "the contact sheet showing")
    assert sheet[0] > sheet[1] > 0  # 4 columns x 3 rows of square cells: wider than tall
    assert "Timings" in browser.find_element(By.CSS_SELECTOR, "#status").text
    assert browser.find_elements(By.CSS_SELECTOR, "#coeffs a")  # the coefficients to download

    shot = tmp_path / "app.png"
    browser.execute_script("window.scrollTo(0, 0);")
    time.sleep(0.5)
    browser.save_screenshot(str(shot))
    picture = cv2.imread(str(shot))
    assert picture is not None and picture.shape[0] > 500 and picture.std() > 10
    if os.environ.get("APP_SCREENSHOT"):
        shutil.copy(shot, REPO / os.environ["APP_SCREENSHOT"])

    jobs = sorted((workdir / "jobs").iterdir())
    assert len(jobs) == 1 and sorted(p.name for p in jobs[0].iterdir()) == [
        "stylized.mp4", "stylized.npy", "stylized_sheet.png"]

    # a photo without a face: infer.py's reason, the upload named as the user named it
    blank = tmp_path / "no_face.png"
    cv2.imwrite(str(blank), np.full((256, 256, 3), 128, np.uint8))
    browser.find_element(By.CSS_SELECTOR, "#photo button[aria-label='Remove Image']").click()
    upload(browser, "photo", blank)
    uploaded(browser, "photo")
    browser.find_element(By.CSS_SELECTOR, "#generate").click()
    message = wait_for(browser, lambda d: next((t.text for t in d.find_elements(By.CSS_SELECTOR, ".toast-body")
                                                 if "face" in t.text), None), 120, "the error message")
    assert "photo (no_face.png)" in message and "no face" in message, message
    assert len(list((workdir / "jobs").iterdir())) == 1  # the failed job left nothing

    # a file that is no picture at all: the pipeline's words too, not the upload library's
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a picture" * 50)
    browser.find_element(By.CSS_SELECTOR, "#photo button[aria-label='Remove Image']").click()
    upload(browser, "photo", broken)
    time.sleep(2)
    browser.find_element(By.CSS_SELECTOR, "#generate").click()
    message = wait_for(browser, lambda d: next((t.text for t in d.find_elements(By.CSS_SELECTOR, ".toast-body")
                                                 if "broken.png" in t.text), None), 60, "the error message")
    assert "photo (broken.png): not a readable photo" in message, message

    # an upload over max_upload_mb (1 MB here) is refused, with the limit named
    big = tmp_path / "long.wav"
    soundfile.write(big, np.zeros(16000 * 40, np.float32), 16000)  # 1.3 MB
    browser.find_element(By.CSS_SELECTOR, "#speech button[aria-label='Clear']").click()
    upload(browser, "speech", big)
    message = wait_for(browser, lambda d: next((t.text for t in d.find_elements(By.CSS_SELECTOR, ".toast-body")
                                                 if "maximum allowed size" in t.text), None), 30, "the size error")
    assert "long.wav" in message and "1.0 Mb" in message, message

    assert not (REPO / "stylization" / "app.pyi").exists()  # the page writes nothing into the source tree

    # stopped like Ctrl-C: everything the page wrote is gone
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)
    assert not (workdir / "jobs").exists() and not (workdir / "gradio").exists()


# -- the page's own checks, without a browser --

def test_uploads_are_checked_by_kind():
    from stylization.app import check_upload
    from stylization.errors import UserError

    assert check_upload("/tmp/x/me.JPG", "photo") == "/tmp/x/me.JPG"
    assert check_upload("/tmp/x/talk.mp4", "speech") == "/tmp/x/talk.mp4"  # a video's sound is speech too
    assert check_upload(None, "photo") is None
    for path, what in (("/tmp/x/notes.txt", "speech"), ("/tmp/x/speech.wav", "photo"), ("/tmp/x/me.png", "pose video"),
                       ("/tmp/x/run.sh", "art picture")):
        with pytest.raises(UserError, match=re.escape(f"the {what} ({Path(path).name}) must be a")):
            check_upload(path, what)


def test_messages_name_the_uploads_not_their_temporary_paths():
    from stylization.app import readable_message
    from stylization.errors import DataError

    exc = DataError("no face found", "/tmp/gradio/ab12/me.png")
    labels = {"/tmp/gradio/ab12/me.png": "photo (me.png)", "/tmp/gradio/ab12/me.png.wav": "speech (x)"}
    assert readable_message(exc, labels) == "photo (me.png): no face found"


def test_checkpoints_fall_back_to_the_demo_and_say_how_to_get_them(tmp_path, monkeypatch):
    import stylization.app as app
    from stylization.errors import ConfigError

    assert app.find_checkpoints(str(tmp_path)) == str(tmp_path)
    with pytest.raises(ConfigError, match="not a folder"):
        app.find_checkpoints(str(tmp_path / "missing"))
    monkeypatch.setattr(app, "REPO", tmp_path)
    with pytest.raises(ConfigError, match="make demo"):
        app.find_checkpoints(None)
    (tmp_path / app.DEMO_CHECKPOINTS / "style_a").mkdir(parents=True)
    assert app.find_checkpoints(None) == str(tmp_path / app.DEMO_CHECKPOINTS)
    (tmp_path / "checkpoints" / "style_e").mkdir(parents=True)
    assert app.find_checkpoints(None) == str(tmp_path / "checkpoints")


def test_job_folders_keep_the_last_ones(tmp_path):
    from stylization.app import Jobs

    jobs = Jobs(tmp_path / "jobs", keep=2)
    first, second = jobs.new(), jobs.new()
    (first / "stylized.mp4").write_bytes(b"x")
    third = jobs.new()
    assert not first.exists() and second.exists() and third.exists()
    jobs.drop(third)
    assert not third.exists() and jobs.folders == [second]


def test_the_app_starts_only_with_checkpoints(tmp_path):
    """A missing checkpoint stops the page at start with one line, as infer.py would."""
    out = subprocess.run([sys.executable, "-m", "stylization.app", f"checkpoints={tmp_path}", "port=1"], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("error: ") and "style_e" in out.stderr, out.stderr[-2000:]
