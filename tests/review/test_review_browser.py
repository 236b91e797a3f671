"""A keyboard cull in real headless Chromium (Debian's chromium + chromedriver through Selenium).

Nothing is downloaded: Selenium is pointed at /usr/bin/chromedriver and the Debian chromium
binary, so Selenium Manager never runs. The page talks to a real uvicorn server in this process;
the sidecars are checked with exiftool and the decisions in the database.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from review_lib import ALL, BURST, photo_ids

CHROMEDRIVER = next((p for p in ("/usr/bin/chromedriver", shutil.which("chromedriver")) if p and os.path.exists(p)), None)
CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMEDRIVER is None or CHROMIUM is None,
        reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
    ),
]


@pytest.fixture
def browser(tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-background-networking", "--disable-extensions", "--window-size=1280,900",
                f"--user-data-dir={tmp_path / 'chromium-profile'}"):  # fmt: skip
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def exiftool(path: Path) -> dict:
    tool = shutil.which("exiftool")
    if tool is None:
        pytest.skip("exiftool is not installed (apt-get install libimage-exiftool-perl)")
    out = subprocess.run([tool, "-j", "-XMP:Rating", "-XMP:Label", str(path)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)[0]


def wait_for(driver, script: str, timeout: float = 30):
    """Wait until the JavaScript expression is truthy (the page works asynchronously)."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(lambda d: d.execute_script("return " + script))


def press(driver, *keys: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    for key in keys:
        ActionChains(driver).send_keys(key).perform()


def current(driver) -> int:
    return int(driver.execute_script("return document.body.dataset.current"))


def card(driver, photo_id: int) -> dict:
    return driver.execute_script(
        "const c = document.querySelector(`.card[data-id='${arguments[0]}']`);"
        "return c && {rating: c.dataset.rating, label: c.dataset.label, rejected: c.classList.contains('rejected'),"
        " stars: c.querySelector('.stars').textContent, current: c.classList.contains('current')};",
        photo_id,
    )


def settled(driver, photo_id: int, rating: str, label: str = "") -> None:
    """Wait until every decision asked for has been answered, then check this card shows them."""
    wait_for(driver, "(document.body.dataset.pending || '0') === '0'")
    assert card(driver, photo_id)["rating"] == rating and card(driver, photo_id)["label"] == label


def test_keyboard_cull_open_move_rate_reject_undo_reload(browser, serve, library):
    from selenium.webdriver.common.keys import Keys

    s = serve([library])
    ids = photo_ids(s.store, library)
    names = {v: k for k, v in ids.items()}
    ranked = [p["id"] for p in s.desk.photos()]
    originals = {n: ((library / n).read_bytes(), (library / n).stat().st_mtime_ns) for n in ALL}

    # open: the grid lists every photo best first, thumbnails load, the first is selected
    browser.get(s.url)
    wait_for(browser, "document.body.dataset.ready === 'yes'")
    order = browser.execute_script("return [...document.querySelectorAll('.card')].map(c => Number(c.dataset.id))")
    assert order == ranked and len(order) == len(ALL)
    wait_for(browser, "[...document.querySelectorAll('.card img')].every(i => i.complete && i.naturalWidth > 0)")
    assert current(browser) == ranked[0]
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []  # no CSP, JS or HTTP errors

    # move, rate, move, reject, pick, undo the pick
    press(browser, Keys.ARROW_RIGHT)
    assert current(browser) == ranked[1]
    press(browser, "3")
    settled(browser, ranked[1], "3")
    press(browser, Keys.ARROW_RIGHT, "x")
    settled(browser, ranked[2], "-1")
    assert card(browser, ranked[2])["rejected"]
    press(browser, "p")
    settled(browser, ranked[2], "-1", "Green")
    press(browser, "u")
    settled(browser, ranked[2], "-1", "")
    press(browser, Keys.ARROW_LEFT, "5", "u")  # a second rating, undone: back to 3 stars
    settled(browser, ranked[1], "3")
    assert current(browser) == ranked[1]

    second, third = library / names[ranked[1]], library / names[ranked[2]]
    assert exiftool(Path(f"{second}.xmp")).get("Rating") == 3
    tags = exiftool(Path(f"{third}.xmp"))
    assert tags.get("Rating") == -1 and "Label" not in tags
    decided = s.store.decisions_for()
    assert decided[str(second)]["rating"] == 3 and decided[str(third)]["rating"] == -1
    assert decided[str(third)]["label"] is None and len(decided) == 2

    # reload: the decisions come back from the database, the selection stays where it was
    browser.refresh()
    wait_for(browser, "document.body.dataset.ready === 'yes'")
    assert card(browser, ranked[1])["rating"] == "3" and card(browser, ranked[1])["stars"].startswith("★★★")
    assert card(browser, ranked[2])["rejected"] and card(browser, ranked[2])["stars"] == "✕ rejected"
    assert current(browser) == ranked[1]
    press(browser, "u")  # the undo history survives a reload: the reject goes (XMP 0 = no rating)
    settled(browser, ranked[2], "0")
    assert exiftool(Path(f"{third}.xmp"))["Rating"] == 0
    assert s.store.decisions_for()[str(third)]["rating"] == 0
    # the photos themselves: not a byte, not a timestamp changed
    assert {n: ((library / n).read_bytes(), (library / n).stat().st_mtime_ns) for n in ALL} == originals


def test_large_view_zoom_explain_and_bursts(browser, serve, library):
    from selenium.webdriver.common.keys import Keys

    s = serve([library])
    ids = photo_ids(s.store, library)
    browser.get(s.url)
    wait_for(browser, "document.body.dataset.ready === 'yes'")

    # groups view: the burst is one section, its best frame marked; G walks through it
    press(browser, "v")
    wait_for(browser, "document.querySelectorAll('section.group').length > 0")
    sections = browser.execute_script(
        "return [...document.querySelectorAll('section.group')].map(s => [...s.querySelectorAll('.card')]"
        ".map(c => Number(c.dataset.id)))"
    )
    burst = {ids[n] for n in BURST}
    assert [set(x) for x in sections if len(x) > 1] == [burst] and len(sections) == len(ALL) - 1
    assert len(browser.find_elements("css selector", ".card.best")) == 1
    browser.execute_script(f"document.querySelector(`.card[data-id='{ids[BURST[0]]}']`).click()")
    press(browser, "g")
    assert current(browser) == ids[BURST[1]]
    press(browser, "g")
    assert current(browser) == ids[BURST[0]]

    # large view of the 8 MP photo: preview, then 100 %, then the kept cells
    browser.execute_script(f"document.querySelector(`.card[data-id='{ids['jolla.jpg']}']`).click()")
    press(browser, Keys.ENTER)
    big = "document.querySelector('#big')"
    wait_for(browser, f"{big}.dataset.kind === 'preview' && {big}.complete && {big}.naturalWidth === 2048")
    press(browser, "z")
    wait_for(browser, f"{big}.dataset.kind === 'full' && {big}.complete && {big}.naturalWidth === 3264")
    assert browser.execute_script("return document.querySelector('#stage').classList.contains('zoom')")
    press(browser, "e")
    wait_for(browser, f"{big}.dataset.kind === 'explain' && {big}.complete && {big}.naturalWidth === 2048")
    press(browser, Keys.ARROW_RIGHT)  # moving on shows the next photo's plain preview
    wait_for(browser, f"{big}.dataset.kind === 'preview' && document.body.dataset.current !== '{ids['jolla.jpg']}'")
    press(browser, "4", Keys.ESCAPE)
    moved = current(browser)
    settled(browser, moved, "4")
    assert browser.execute_script("return document.querySelector('#loupe').hidden")
    assert s.store.decisions_for()[s.desk.entry(moved)["path"]]["rating"] == 4


def test_filters_in_the_page_and_a_photo_changed_since_scoring(browser, serve, library):
    s = serve([library])
    with open(library / "jolla.jpg", "ab") as photo:  # edited elsewhere after scoring: not what the desk knows
        photo.write(b"\0" * 16)
    browser.get(s.url)
    wait_for(browser, "document.body.dataset.ready === 'yes'")
    jolla = photo_ids(s.store, library)["jolla.jpg"]
    wait_for(browser, f"document.querySelector(`.card[data-id='{jolla}'] .noimg`) !== null")
    wait_for(browser, "[...document.querySelectorAll('.card img')].every(i => i.complete && i.naturalWidth > 0)")
    assert len(browser.find_elements("css selector", ".card img")) == len(ALL) - 1
    browser.find_element("css selector", "input[name=folder]").send_keys("burst")
    browser.find_element("css selector", "#filters button[type=submit]").click()
    wait_for(browser, "document.querySelectorAll('.card').length === 2")
    shown = browser.execute_script("return [...document.querySelectorAll('.card')].map(c => Number(c.dataset.id))")
    assert sorted(shown) == sorted(photo_ids(s.store, library)[n] for n in BURST)
    browser.find_element("css selector", "#filters button[type=reset]").click()
    wait_for(browser, f"document.querySelectorAll('.card').length === {len(ALL)}")


def test_the_taste_view_ranks_by_the_learned_taste(browser, serve, library, db):
    """With `charm review --taste`, a Taste view lists the photos as the taste ranks them (here a
    stored taste that dislikes whatever the score likes: the order must come out reversed)."""
    import numpy as np

    from charmcli.store import Store, TasteRow
    from charmcli.taste.model import TasteModel

    with Store(db) as store:
        (checkpoint,) = {r["checkpoint_id"] for r in store.all("SELECT checkpoint_id FROM latest_scores")}
        contrary = TasteModel(method="ridge", strength=1.0, layout=[(f"score:aadb:{checkpoint}", 1)],
                              weights=np.array([-1.0], dtype=np.float32), bias=3.0, n_ratings=20)  # fmt: skip
        store.write([TasteRow("mine", contrary.to_bytes(), 20, "ridge")])
    s = serve([library], taste="mine")
    browser.get(s.url)
    wait_for(browser, "document.body.dataset.ready === 'yes'")
    order = "[...document.querySelectorAll('.card')].map(c => Number(c.dataset.id))"
    ranked = browser.execute_script("return " + order)
    assert browser.execute_script("return !document.querySelector('#view-taste').hidden")
    browser.execute_script("document.querySelector('#view-taste').click()")
    wait_for(browser, "document.querySelector('#view-taste').getAttribute('aria-pressed') === 'true'")
    assert browser.execute_script("return " + order) == ranked[::-1]
    hearts = browser.execute_script("return [...document.querySelectorAll('.card .taste')].map(t => t.textContent)")
    assert len(hearts) == len(ranked) and all(h.startswith("♥ ") for h in hearts)
    press(browser, "v")  # V cycles ranked → groups → taste → ranked
    wait_for(browser, "document.querySelector('#view-ranked').getAttribute('aria-pressed') === 'true'")
