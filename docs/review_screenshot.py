"""Make docs/review.png: a screenshot of a running ``charm review`` desk in headless Chromium.

    charm review PATH --no-browser          # prints http://127.0.0.1:N/?token=...
    python docs/review_screenshot.py URL docs/review.png [--keys "→→3→x"]

Uses Debian's chromium and chromedriver (nothing downloaded). ``--keys`` are typed into the
page before the shot (→ ← ↑ ↓ are arrows, ⏎ is Enter); keys that rate or reject write
sidecars like any other use of the desk, so point it at a copy of the photos.
"""

from __future__ import annotations

import argparse
import io
import time

from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

ARROWS = {"→": Keys.ARROW_RIGHT, "←": Keys.ARROW_LEFT, "↑": Keys.ARROW_UP, "↓": Keys.ARROW_DOWN, "⏎": Keys.ENTER}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("out")
    parser.add_argument("--keys", default="", help="keys to type first")
    parser.add_argument("--size", default="1280,820", help="window size W,H")
    parser.add_argument("--width", type=int, default=960, help="width of the saved PNG")
    args = parser.parse_args()
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={args.size}", "--hide-scrollbars"):  # fmt: skip
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=options)
    try:
        driver.get(args.url)
        wait = WebDriverWait(driver, 60)
        wait.until(lambda d: d.execute_script("return document.body.dataset.ready === 'yes'"))
        wait.until(lambda d: d.execute_script(
            "return [...document.querySelectorAll('.card img')].every(i => i.complete && i.naturalWidth > 0)"))
        for key in args.keys:
            ActionChains(driver).send_keys(ARROWS.get(key, key)).perform()
            wait.until(lambda d: d.execute_script("return (document.body.dataset.pending || '0') === '0'"))
        wait.until(lambda d: d.execute_script(
            "const b = document.querySelector('#big'); return b.closest('[hidden]') !== null || "
            "(b.complete && b.naturalWidth > 0 && b.src.includes(b.dataset.kind))"))
        time.sleep(0.5)  # let the last image paint
        shot = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    finally:
        driver.quit()
    height = round(shot.height * args.width / shot.width)
    shot.resize((args.width, height), Image.Resampling.LANCZOS).quantize(colors=192).save(args.out, optimize=True)
    print(args.out)


if __name__ == "__main__":
    main()
