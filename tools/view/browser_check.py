#!/usr/bin/env python3
"""Browser check: the sink's page (crates/sink/src/page.html) in a real headless Chromium against a
real `edgepool demo --keep`.

Steps: start the demo (its own process group; stderr to demo.log in a temp dir) and read the page
and broker URLs it prints; wait until GET /cameras lists every camera with a snapshot; load the
page and check each tile's image arrived resized to 240 px high with the snapshot's aspect ratio;
compare each worker's share in the fleet panel with `edgepool status --json`; watch the live feed
grow; open the first tile's large view and find its detection table filled; take screenshots at
1280x900 (page-desktop.png, page-detail.png) and 390x844 (page-phone.png, no horizontal scroll).
The demo is stopped on exit, also on failure or Ctrl-C: SIGINT to its group, 20 s, then SIGKILL.

Usage: browser_check.py --edgepool PATH [--cameras 2] [--screenshots DIR] [--keep-tmp]
           [--chromium /usr/bin/chromium]
Stdlib and selenium only (.ci/browser.sh installs it). Exit status 0 when every check passed.
"""

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from demo import ROOT, Demo, Failure  # noqa: E402 (tools/view/demo.py)

try:
    from selenium import webdriver
    from selenium.common.exceptions import TimeoutException, WebDriverException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:
    sys.exit("browser-check: selenium is missing; run .ci/browser.sh, or pip install selenium==4.27.1")

PAGE_LINE = re.compile(r"^page\s+(http://\S+?)/?\s*$")
NATS_LINE = re.compile(r"^nats-server\s+(nats://\S+)")
TILE_HEIGHT = 240  # the page asks for latest.jpg?h=240
SHARE_TOLERANCE = 0.15  # the page's and the CLI's shares are sampled at different moments
DESKTOP, PHONE = (1280, 900), (390, 844)
WORKER_SLOWDOWNS = "1,4"  # one fast worker, one emulating a 4x slower device (clap splits on commas)
N_WORKERS = len(WORKER_SLOWDOWNS.split(","))


def log(msg):
    print(f"browser-check: {msg}", flush=True)




def wait_for(what, check, timeout, demo, interval=0.5):
    """Polls `check` until it returns something truthy; fails after `timeout` seconds or when the
    demo exits. Exceptions from `check` count as not yet (the last one is reported)."""
    deadline, last_error = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        demo.check_alive(f"waiting for {what}")
        try:
            if result := check():
                return result
        except (OSError, ValueError, KeyError, TypeError) as e:
            last_error = e
        time.sleep(interval)
    raise Failure(f"timed out after {timeout:.0f} s waiting for {what}" + (f" (last error: {last_error})" if last_error else ""))


def get_json(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.load(r)


class SnapshotLog:
    """Polls /cameras five times a second and keeps every snapshot revision's frame size, so an image
    the page shows can be matched with its revision even after the camera has moved on."""

    def __init__(self, base):
        self.base, self.sizes, self.lock = base, {}, threading.Lock()
        self.stopping = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while not self.stopping.wait(0.2):
            try:
                cams = get_json(f"{self.base}/cameras", timeout=2)["cameras"]
            except (OSError, ValueError, KeyError):
                continue
            with self.lock:
                for c in cams:
                    s = c.get("snapshot")
                    revs = self.sizes.setdefault(c["id"], [])
                    if s and (not revs or revs[-1][0] != s["revision"]):
                        revs.append((s["revision"], s["width"], s["height"]))

    def following(self, camera, revision, n=4):
        """Sizes of `revision` and the next few of that camera. latest.jpg?v=REV may serve a newer
        frame than REV when one arrived between the page's poll and its image request."""
        with self.lock:
            revs = self.sizes.get(camera, [])
            idx = next((i for i, r in enumerate(revs) if r[0] == revision), None)
            return [] if idx is None else revs[idx:idx + n]


def start_browser(chromium, logdir):
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", f"--window-size={DESKTOP[0]},{DESKTOP[1]}"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver_path = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    service = Service(executable_path=driver_path, log_output=str(logdir / "chromedriver.log"))
    try:
        return webdriver.Chrome(options=opts, service=service)
    except WebDriverException as e:
        raise Failure(f"could not start Chromium ({chromium}) through {driver_path}: {e.msg}") from e


def browser_wait(driver, what, timeout, condition):
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.25).until(condition)
    except TimeoutException:
        raise Failure(f"timed out after {timeout} s waiting for {what}") from None


def check_tiles(driver, snaps, camera_ids):
    browser_wait(driver, f"{len(camera_ids)} camera tiles", 30,
                 lambda d: len(d.find_elements(By.CSS_SELECTOR, "figure.tile")) >= len(camera_ids))
    for cam in camera_ids:
        mismatch = None
        for _ in range(30):  # up to ~15 s for the image's revision to show up in the snapshot log
            shown = browser_wait(driver, f"the image of tile {cam} to load", 30, lambda d: d.execute_script(
                "const img = document.querySelector(`figure.tile[data-camera=\"${CSS.escape(arguments[0])}\"] img.snap`);"
                "return img && img.complete && img.naturalWidth > 0"
                " ? [img.naturalWidth, img.naturalHeight, img.getAttribute('src')] : null;", cam))
            width, height, src = shown
            m = re.search(r"[?&]v=(\d+)", src)
            if not m:
                raise Failure(f"tile {cam}: image src {src!r} carries no v=REVISION")
            if height != TILE_HEIGHT:
                raise Failure(f"tile {cam}: image is {width}x{height}, expected {TILE_HEIGHT} px high ({src})")
            sizes = snaps.following(cam, int(m.group(1)))
            if not sizes:
                time.sleep(0.5)
                continue
            want = [round(TILE_HEIGHT * w / h) for _, w, h in sizes]
            if not any(abs(width - x) <= 1 for x in want):
                # A newer frame than REV was served and the snapshot log has not seen it yet.
                mismatch = (f"tile {cam}: image is {width}x{height}; snapshot revision {sizes[0][0]} and the "
                            f"next ones of that camera are {[(w, h) for _, w, h in sizes]}, so expected a width "
                            f"in {want} ({src})")
                time.sleep(0.5)
                continue
            log(f"tile {cam}: {width}x{height} image of revision {m.group(1)} (snapshot {sizes[0][1]}x{sizes[0][2]})")
            break
        else:
            raise Failure(mismatch if mismatch else f"tile {cam}: the image's revision never showed up in /cameras")


def check_fleet(driver, binary, nats_url, base, demo):
    def fleet_workers():
        ids = [w["id"] for w in (get_json(f"{base}/fleet").get("status") or {}).get("workers", [])]
        return ids if len(ids) >= N_WORKERS else None

    workers = wait_for(f"{N_WORKERS} workers in /fleet", fleet_workers, 60, demo)
    browser_wait(driver, f"the fleet panel to list workers {', '.join(workers)}", 30, lambda d: set(workers) <= set(
        d.execute_script("return [...document.querySelectorAll('#fleet tr.worker')].map(r => r.dataset.worker)")))
    argv = [binary, "status", "--json", "--nats-url", nats_url, "--sample", "1s"]
    problems = []
    for attempt in range(1, 6):  # both sides move: compare the page right after the CLI returns
        try:
            out = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
        except subprocess.TimeoutExpired:
            raise Failure(f"`{' '.join(argv)}` did not return within 60 s") from None
        page = driver.execute_script(
            "return Object.fromEntries([...document.querySelectorAll('#fleet tr.worker')]"
            ".map(r => [r.dataset.worker, parseFloat(r.dataset.share)]));")
        if out.returncode != 0:
            raise Failure(f"`{' '.join(argv)}` failed ({out.returncode}):\n{out.stderr.strip()}")
        try:
            status = json.loads(out.stdout)
        except ValueError as e:
            raise Failure(f"`edgepool status --json` printed no JSON ({e}): {out.stdout[:300]!r}") from None
        status = status.get("status", status) if "workers" not in status else status
        problems = []
        for w in status["workers"]:
            cli = status.get("share", {}).get(w["id"], 0.0)
            if w["id"] not in page:
                problems.append(f"{w['id']}: not on the page (CLI share {cli:.3f})")
            elif abs(page[w["id"]] - cli) > SHARE_TOLERANCE:
                problems.append(f"{w['id']}: page share {page[w['id']]:.3f}, CLI {cli:.3f}")
        if not problems:
            log("fleet shares (page vs CLI): " + ", ".join(
                f"{w['id']} {page[w['id']]:.2f}/{status.get('share', {}).get(w['id'], 0.0):.2f}" for w in status["workers"]))
            return len(status["workers"])
        log(f"fleet shares differ (attempt {attempt} of 5): {'; '.join(problems)}")
        time.sleep(2)
    raise Failure(f"fleet panel shares differ from `edgepool status` by more than {SHARE_TOLERANCE}: {'; '.join(problems)}")


def check_feed(driver):
    # The feed keeps its last 50 items, so its length stops growing; count insertions instead.
    before = driver.execute_script("""
        const list = document.querySelector('#feed ol');
        window.__feedAdded = 0;
        new MutationObserver((ms) => ms.forEach((m) => m.addedNodes.forEach((n) => {
          if (n.matches && n.matches('li.det')) window.__feedAdded++;
        }))).observe(list, { childList: true });
        const first = list.querySelector('li.det');
        return [list.querySelectorAll('li.det').length, first ? first.textContent : null];""")
    count, first = before
    browser_wait(driver, "2 new items in the live feed and a new first item", 20, lambda d: d.execute_script(
        "const f = document.querySelector('#feed li.det');"
        "return window.__feedAdded >= 2 && f && f.textContent !== arguments[0];", first))
    added = driver.execute_script("return window.__feedAdded")
    log(f"feed: {count} items at first, {added} added since")
    return added


def check_detail(driver, shots):
    tile = driver.find_element(By.CSS_SELECTOR, "figure.tile")
    cam = tile.get_attribute("data-camera")
    tile.click()
    browser_wait(driver, "the large view to open", 10, lambda d: d.execute_script("return document.querySelector('#detail').open"))
    focused = driver.execute_script("return document.activeElement && document.activeElement.id")
    if focused != "detail-close":
        raise Failure(f"the large view opened but its close button has no focus (focus on {focused!r})")
    rows = browser_wait(driver, f"detections in the large view of {cam} (it follows new frames while open)", 30,
                        lambda d: len(d.find_elements(By.CSS_SELECTOR, "#detail table tbody tr")))
    browser_wait(driver, "the large view's image", 15, lambda d: d.execute_script(
        "const i = document.querySelector('#detail-frame img'); return i && i.complete && i.naturalWidth > 0"))
    time.sleep(0.3)  # let the image paint
    driver.save_screenshot(str(shots / "page-detail.png"))
    ActionChains(driver).send_keys(Keys.ESCAPE).perform()
    browser_wait(driver, "Escape to close the large view", 5, lambda d: not d.execute_script("return document.querySelector('#detail').open"))
    log(f"large view of {cam}: {rows} detection rows; Escape closed it")
    return cam, rows


def check_mjpeg_img(driver, cam):
    """The large view's stream link, played the way a dashboard embeds it: a plain <img>."""
    driver.execute_script(
        "const i = document.createElement('img'); i.id = 'mjpeg-probe'; i.alt = 'probe';"
        "i.src = `/cameras/${encodeURIComponent(arguments[0])}/stream.mjpeg?h=120`; document.body.append(i);", cam)
    width, height = browser_wait(driver, f"an <img> of {cam}'s stream.mjpeg to show a frame", 20, lambda d: d.execute_script(
        "const i = document.querySelector('#mjpeg-probe'); return i && i.naturalWidth > 0 ? [i.naturalWidth, i.naturalHeight] : null"))
    if height != 120:
        raise Failure(f"stream.mjpeg?h=120 in an <img> is {width}x{height}, not 120 px high")
    driver.execute_script("document.querySelector('#mjpeg-probe').remove()")  # ends the stream
    log(f"stream.mjpeg of {cam} plays in an <img>: {width}x{height}")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def check_restart(driver, binary, nats_url, camera_ids, tmp):
    """A sink of its own (`edgepool sink`, durable `browser-check`) on a fixed port beside the
    demo's: its page is loaded, the sink stops (SIGINT) and starts again on the same port, and the
    page must say `reconnecting`, then come back to `live` by itself, with new frames and results,
    without a reload."""
    port = free_port()
    argv = [binary, "sink", "--nats-url", nats_url, "--listen", f"127.0.0.1:{port}", "--durable", "browser-check"]
    base = f"http://127.0.0.1:{port}"

    def start(n):
        sink = Demo(argv, tmp / f"sink-{n}.log", say=log)
        wait_for(f"the sink's /readyz (start {n})", lambda: urllib.request.urlopen(f"{base}/readyz", timeout=2).status == 200,
                 60, sink)
        return sink

    def state(d):
        return d.execute_script("return document.querySelector('#conn').dataset.state")

    def tiles_loaded(d):
        return d.execute_script(
            "const imgs = [...document.querySelectorAll('figure.tile img.snap')];"
            "return imgs.length === arguments[0] && imgs.every((i) => i.complete && i.naturalWidth > 0)"
            " ? imgs.map((i) => i.getAttribute('src')) : null;", len(camera_ids))

    sink = start(1)
    try:
        driver.get(f"{base}/")
        browser_wait(driver, "the restarting sink's page to be live", 30, lambda d: state(d) == "live")
        srcs = browser_wait(driver, "its tiles' images", 30, tiles_loaded)
        sink.stop()
        browser_wait(driver, "the page to say `reconnecting` once the sink is gone", 20, lambda d: state(d) == "reconnecting")
        if tiles_loaded(driver) is None:
            raise Failure("the page lost its camera images while the sink was down")
        added_before = driver.execute_script(
            "window.__restartAdded = 0; new MutationObserver((ms) => ms.forEach((m) => m.addedNodes.forEach((n) => {"
            "  if (n.matches && n.matches('li.det')) window.__restartAdded++; }))).observe("
            "document.querySelector('#feed ol'), { childList: true }); return 0;")
        sink = start(2)
        browser_wait(driver, "the page to be `live` again after the sink restarted (no reload)", 30,
                     lambda d: state(d) == "live")
        browser_wait(driver, "new results in the feed after the restart", 30,
                     lambda d: d.execute_script("return window.__restartAdded") >= 2)
        browser_wait(driver, "a tile to show a newer frame after the restart", 30,
                     lambda d: (now := tiles_loaded(d)) is not None and now != srcs)
        added = driver.execute_script("return window.__restartAdded") - added_before
        log(f"sink restart: the page said `reconnecting`, kept its images, came back `live` with {added} new results")
    finally:
        sink.stop()


def check_screens(driver, shots):
    driver.execute_script("document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0)")
    time.sleep(0.3)
    driver.save_screenshot(str(shots / "page-desktop.png"))
    driver.set_window_size(*PHONE)
    browser_wait(driver, f"the window to become {PHONE[0]} px wide", 10, lambda d: d.execute_script("return innerWidth") <= PHONE[0])
    time.sleep(1)  # relayout and a poll
    width = driver.execute_script("return document.documentElement.scrollWidth")
    if width > PHONE[0] + 1:
        wide = driver.execute_script(
            "return [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > innerWidth + 1)"
            ".slice(0, 5).map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + (e.className ? '.' + e.className : ''))")
        raise Failure(f"the page scrolls sideways at {PHONE[0]} px: scrollWidth {width}; too wide: {', '.join(wide)}")
    driver.save_screenshot(str(shots / "page-phone.png"))
    driver.set_window_size(*DESKTOP)
    log(f"phone width: scrollWidth {width} <= {PHONE[0] + 1}")


def run(args, tmp):
    shots = Path(args.screenshots).resolve()
    shots.mkdir(parents=True, exist_ok=True)
    (shots / "page-failure.png").unlink(missing_ok=True)  # from an earlier run
    argv = [args.edgepool, "demo", "--keep", "--cameras", str(args.cameras), "--fps", "2", "--settle", "5s",
            "--workers", WORKER_SLOWDOWNS]
    log("starting " + " ".join([Path(args.edgepool).name, *argv[1:]]))
    demo = Demo(argv, tmp / "demo.log", say=log)
    driver = snaps = None
    try:
        def urls():
            page, nats = (m.group(1) if (m := demo.find(r)) else None for r in (PAGE_LINE, NATS_LINE))
            return (page, nats) if page and nats else None

        base, nats_url = wait_for("the `page` and `nats-server` lines on its stderr", urls, 180, demo)
        log(f"page {base}/, broker {nats_url}")
        snaps = SnapshotLog(base)

        # The demo's photo cameras, and its video camera (cam-video, an H.264 clip through ffmpeg).
        expected = args.cameras + 1

        def cameras_ready():
            cams = get_json(f"{base}/cameras")["cameras"]
            return cams if len(cams) == expected and all(c.get("snapshot") for c in cams) else None
        cams = wait_for(f"/cameras to list {expected} cameras, each with a snapshot", cameras_ready, 120, demo)
        if "cam-video" not in [c["id"] for c in cams]:
            raise Failure(f"the demo's video camera is not on the page: {[c['id'] for c in cams]}")
        camera_ids = [c["id"] for c in cams]

        driver = start_browser(args.chromium, tmp)
        driver.get(f"{base}/")
        check_tiles(driver, snaps, camera_ids)
        n_workers = check_fleet(driver, args.edgepool, nats_url, base, demo)
        added = check_feed(driver)
        cam, rows = check_detail(driver, shots)
        check_mjpeg_img(driver, cam)
        check_screens(driver, shots)
        check_restart(driver, args.edgepool, nats_url, camera_ids, tmp)
        errors = [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
        if errors:
            log("browser console errors (not fatal: the restart check cuts /events mid-stream, and the page may race the demo's start):\n  " + "\n  ".join(errors[:10]))
        print("PASS: the sink's page in headless Chromium\n"
              f"  tiles      {len(camera_ids)}, each image {TILE_HEIGHT} px high in its snapshot's aspect ratio\n"
              f"  fleet      {n_workers} workers' shares within {SHARE_TOLERANCE} of `edgepool status --json`\n"
              f"  feed       {added} results arrived over /events\n"
              f"  detail     {cam}: dialog with {rows} detection rows, focus on Close, Escape closes\n"
              f"  mjpeg      {cam}'s stream.mjpeg shows frames in a plain <img>\n"
              f"  phone      no sideways scroll at {PHONE[0]}x{PHONE[1]}\n"
              f"  restart    a sink stopped and started again: `reconnecting`, then `live` without a reload\n"
              f"  screenshots page-desktop.png, page-detail.png, page-phone.png in {shots}", flush=True)
    except (Failure, WebDriverException) as e:
        if driver is not None:
            try:
                driver.save_screenshot(str(shots / "page-failure.png"))
                log(f"screenshot of the failure: {shots / 'page-failure.png'}")
                for e in driver.get_log("browser"):
                    log(f"console {e.get('level')}: {e.get('message')}")
            except WebDriverException:
                pass
        log(f"demo log tail ({tmp / 'demo.log'}{'' if args.keep_tmp else ', removed on exit; --keep-tmp keeps it'}):\n{demo.tail()}")
        if isinstance(e, WebDriverException):
            raise Failure(f"the browser failed: {e.msg}") from e
        raise
    finally:
        if snaps:
            snaps.stopping.set()
        if driver is not None:
            driver.quit()
        demo.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--edgepool", required=True, help="path to the edgepool binary")
    ap.add_argument("--cameras", type=int, default=2, help="demo cameras replaying photos (default 2; the "
                    "demo's video camera comes on top)")
    ap.add_argument("--screenshots", default="docs/img", help="directory for the PNG screenshots (default docs/img)")
    ap.add_argument("--chromium", default="/usr/bin/chromium", help="Chromium binary (default /usr/bin/chromium)")
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temp dir with demo.log and chromedriver.log")
    args = ap.parse_args()
    args.edgepool = str(Path(args.edgepool).resolve())
    if not os.access(args.edgepool, os.X_OK):
        sys.exit(f"browser-check: {args.edgepool} is not an executable")
    if not Path(args.chromium).exists():
        sys.exit(f"browser-check: no Chromium at {args.chromium} (--chromium PATH)")
    tmp = Path(tempfile.mkdtemp(prefix="edgepool-browser-"))
    try:
        run(args, tmp)
    except Failure as e:
        print(f"FAIL: {e}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if args.keep_tmp:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
