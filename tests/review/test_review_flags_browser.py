"""The desk's flag badges and flag filter in real headless Chromium (see test_review_browser.py)."""

from __future__ import annotations

from review_lib import ALL, photo_ids
from test_review_browser import browser, pytestmark, wait_for  # noqa: F401  (fixture and marks)
from test_review_flags import _mark


def _shown(driver) -> list[int]:
    return driver.execute_script("return [...document.querySelectorAll('.card')].map(c => Number(c.dataset.id))")


def _badges(driver, photo_id: int) -> list[tuple[str, str]]:
    return driver.execute_script(
        "return [...document.querySelectorAll(`.card[data-id='${arguments[0]}'] .badge`)]"
        ".map(b => [b.dataset.flag, b.title])",
        photo_id,
    )


def _choose(driver, value: str) -> None:
    driver.execute_script(
        "const m = document.querySelector('#flag-filter'); m.value = arguments[0];"
        "m.dispatchEvent(new Event('change'));",
        value,
    )


def test_badges_reasons_and_the_flag_filter(browser, serve, library, _private_db):  # noqa: F811
    from selenium.webdriver.common.keys import Keys

    _mark(_private_db, library, {"jolla.jpg": {"focus_width": 3.0}, "DSCN0010.jpg": {"eyes_closed": 1, "faces": 3}})
    s = serve([library])
    ids = photo_ids(s.store, library)
    soft, eyes = ids["jolla.jpg"], ids["DSCN0010.jpg"]
    browser.get(s.url)
    wait_for(browser, "document.body.dataset.ready === 'yes'")
    assert sorted(_shown(browser)) == sorted(ids[n] for n in ALL)
    assert _badges(browser, soft) == [["soft", "soft: sharpest region blurred 3.0 px (limit 1.2)"]]
    assert _badges(browser, eyes) == [["eyes-closed", "eyes closed: 1 of 3 faces"]]
    assert all(_badges(browser, ids[n]) == [] for n in ALL if ids[n] not in (soft, eyes))
    options = browser.execute_script("return [...document.querySelectorAll('#flag-filter option')].map(o => o.value)")
    assert options == ["", "hide:all", "only:soft", "only:eyes-closed"]  # only the flags present are offered

    _choose(browser, "hide:all")
    wait_for(browser, f"!document.querySelector(`.card[data-id='{soft}']`)")
    assert sorted(_shown(browser)) == sorted(ids[n] for n in ALL if ids[n] not in (soft, eyes))
    _choose(browser, "only:soft")
    wait_for(browser, "document.querySelectorAll('.card').length === 1")
    assert _shown(browser) == [soft]

    browser.refresh()  # the filter is kept across a reload, like the others
    wait_for(browser, "document.body.dataset.ready === 'yes'")
    assert _shown(browser) == [soft]
    browser.execute_script(f"document.querySelector(`.card[data-id='{soft}']`).click()")
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(browser).send_keys(Keys.ENTER).perform()
    wait_for(browser, "!document.querySelector('#loupe').hidden")
    reasons = browser.execute_script("return [...document.querySelectorAll('#info .reasons li')].map(l => l.textContent)")
    assert reasons == ["soft: sharpest region blurred 3.0 px (limit 1.2)"]
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []
