"""The officers' pages in a real browser (headless Chromium from Debian, driven by Playwright's async API),
against a real federation on 127.0.0.1: RILO hub WCA, Nigeria and Ghana."""

from __future__ import annotations

import re

from tests.federation.harness import db_rows
from tests.web.helpers import SHOTS, add_user, day, settle, signed_in, take_screenshots

WORD = "zanzibarite"  # a word no sample record has, to find exactly the one seizure


async def fill_seizure(page, **values):
    """Fill the new-seizure form by its inputs' ids (f-<dotted path>)."""
    for key, value in values.items():
        locator = page.locator(f"#f-{key}")
        if await locator.evaluate("e => e.tagName") == "SELECT":
            await locator.select_option(value)
        else:
            await locator.fill(value)


async def test_seizure_recorded_shared_and_found_at_the_other_node(wca, browser):
    fed, _, ng, gh = wca
    amina = await add_user(ng, "amina", "officer")
    kofi = await add_user(gh, "kofi", "officer")

    page = await signed_in(browser, ng, amina)
    problems: list[str] = []  # script errors, refused resources (the CSP), failed loads
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    await page.get_by_role("link", name="New seizure").click()
    assert await page.title() == "New seizure · Nigeria Customs Service · cenmesh"
    # Inputs are labelled: the label finds its input.
    await page.get_by_label("Goods (required)").fill(f"surgical masks, {WORD} lot 7")
    await fill_seizure(page, category="medicines", **{
        "commodity-hs-code": "6307.90", "quantity-amount": "5000", "office-name": "Lagos Apapa Port",
        "office-locode": "ngapp", "transport-mode": "sea", "detection-method": "x-ray",
        "route-departure": "cn", "concealment": "in cartons of T-shirts"})
    await page.get_by_label("Named administrations").check()
    await page.get_by_label("Ghana Revenue Authority (GH)").check()
    await page.get_by_role("button", name="Save seizure").click()
    await page.wait_for_url(re.compile(r"/records/[0-9a-f-]{36}\?done=shared$"))
    rid = page.url.split("/records/")[1].split("?")[0]
    assert "Shared." in await page.locator("[role=status]").inner_text()
    box = await page.locator(".handling-box").inner_text()
    assert "Shared with: Ghana Revenue Authority" in box and "TLP:AMBER" in box
    assert "Need to know" in box  # the TLP level's meaning, in words
    fields = await page.locator("dl.fields").all_inner_texts()
    assert any("630790" in f for f in fields)  # the HS code as typed (6307.90), cleaned up
    assert any("NGAPP" in f for f in fields)

    await settle(fed)
    page2 = await signed_in(browser, gh, kofi)
    page2.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    await page2.get_by_role("link", name="Search").click()
    await page2.get_by_label("Words").fill(WORD)
    await page2.get_by_role("button", name="Search", exact=True).click()
    await page2.wait_for_url(re.compile(r"/search\?q="))
    assert "1–1 of 1 matches" in await page2.locator(".count").inner_text()
    row = page2.locator("table.results tbody tr")
    assert await row.count() == 1
    text = await row.inner_text()
    assert "Nigeria Customs Service" in text and "CN → NG" in text and "TLP:AMBER" in text
    await row.get_by_role("link").click()
    await page2.wait_for_url(f"**/records/{rid}")
    assert "from Nigeria Customs Service" in await page2.locator(".record-head").inner_text()
    assert await page2.locator(".share-panel").count() == 0  # not Ghana's record to share
    assert problems == []

    audit = db_rows(ng, "SELECT user, action FROM audit WHERE user = 'amina' ORDER BY seq")
    assert [a for _, a in audit][:1] == ["login"] and ("amina", "record") in audit and ("amina", "share") in audit
    assert ("kofi", "search") in db_rows(gh, "SELECT user, action FROM audit")


async def test_invalid_form_shows_each_error_beside_its_field_and_keeps_the_values(wca, browser):
    _, _, ng, _ = wca
    page = await signed_in(browser, ng, await add_user(ng, "amina", "officer"))
    await page.goto("/records/new/seizure")
    await fill_seizure(page, category="drugs", date=day(5), **{
        "quantity-amount": "-5", "office-name": "Kano airport", "office-locode": "NGAP",
        "route-departure": "BR", "route-transit": "tg, XX", "conveyance-container": "CSQU3054384"})
    async with page.expect_response(lambda r: r.request.method == "POST") as answer:
        await page.get_by_role("button", name="Save seizure").click()
    assert (await answer.value).status == 400
    expected = {
        "commodity.description": "it is required", "quantity.amount": "not a decimal string",
        "date": "is in the future", "office.locode": "is not a UN/LOCODE", "transport_mode": "required",
        "detection_method": "required", "route.transit": "'XX' is not an ISO 3166 country code",
        "conveyance.container": "wrong check digit",
    }
    for path, words in expected.items():
        field = page.locator(f'[data-field="{path}"]')
        error = field.locator(".error")
        assert words in await error.inner_text(), path
        control = field.locator("input, select, textarea")
        assert await control.get_attribute("aria-invalid") == "true", path
        assert f"{await control.get_attribute('id')}-error" in await control.get_attribute("aria-describedby")
    assert await page.locator(".field.has-error").count() == len(expected)
    summary = await page.locator(".error-summary").inner_text()
    assert "8 fields to correct" in summary and "Office UN/LOCODE" in summary
    # What was typed is still there, as typed.
    assert await page.locator("#f-office-locode").input_value() == "NGAP"
    assert await page.locator("#f-route-transit").input_value() == "tg, XX"
    assert await page.locator("#f-office-name").input_value() == "Kano airport"
    assert await page.locator("#f-category").input_value() == "drugs"
    assert db_rows(ng, "SELECT count(*) FROM drafts") == [(0,)]

    # Corrected, and kept on this node only; then shared from its page.
    await fill_seizure(page, date=day(-1), **{
        "quantity-amount": "12.5", "office-locode": "NGKAN", "route-transit": "tg", "transport-mode": "air",
        "detection-method": "dog", "commodity-description": "cocaine in shoe soles",
        "conveyance-container": "CSQU3054383"})
    await page.get_by_label("Share it now").uncheck()
    await page.get_by_role("button", name="Save seizure").click()
    await page.wait_for_url(re.compile(r"\?done=kept$"))
    assert "Not shared" in await page.locator(".handling-box").inner_text()
    assert db_rows(ng, "SELECT count(*) FROM drafts WHERE shared_bundle IS NULL") == [(1,)]
    await page.get_by_label("The whole federation").check()
    await page.get_by_role("button", name="Share", exact=True).click()
    await page.wait_for_url(re.compile(r"\?done=shared$"))
    assert "Shared with: the whole federation" in await page.locator(".handling-box").inner_text()


async def test_alert_answered_from_the_inbox(wca, browser):
    fed, _, ng, gh = wca
    page = await signed_in(browser, ng, await add_user(ng, "amina", "officer"))
    await page.goto("/records/new/alert")
    await page.get_by_label("Title (required)").fill("Tramadol in courier parcels to Tema")
    await page.locator("#f-urgency").select_option("immediate")
    await page.locator("#f-respond-by").fill(day(-1))
    await page.get_by_label("Container number").fill("CSQU3054383")
    await page.locator("#f-suspected-category").select_option("medicines")
    await page.locator("#f-suspected-commodity-description").fill("tramadol 225 mg")
    await page.get_by_label("Named administrations").check()
    await page.get_by_label("Ghana Revenue Authority (GH)").check()
    await page.get_by_label("Urgent").check()
    await page.get_by_role("button", name="Save alert").click()
    await page.wait_for_url(re.compile(r"\?done=shared$"))
    rid = page.url.split("/records/")[1].split("?")[0]

    await settle(fed)
    page2 = await signed_in(browser, gh, await add_user(gh, "kofi", "officer"))
    await page2.get_by_role("link", name="Inbox", exact=True).click()
    item = page2.locator(f"#alert-{rid}")
    head = await item.inner_text()
    assert "awaiting your answer" in head and "overdue" in head and "immediate" in head
    assert "Nigeria Customs Service" in head and "container CSQU3054383" in head
    await item.get_by_label("Outcome").select_option("examined-seized")
    await item.get_by_label("Note (optional)").fill("12 kg found in 3 parcels")
    await item.get_by_role("button", name="Send answer to Nigeria Customs Service").click()
    await page2.wait_for_url(re.compile(r"/inbox\?answered="))
    assert "answered: Examined: goods seized" in await page2.locator(f"#alert-{rid}").inner_text()

    await settle(fed)
    await page.goto(f"/records/{rid}")
    thread = await page.locator("#feedback").inner_text()
    assert "Ghana Revenue Authority: Examined: goods seized" in thread and "12 kg found" in thread


async def test_roles_csrf_and_sign_out(wca, browser):
    _, _, ng, _ = wca
    page = await signed_in(browser, ng, await add_user(ng, "amina", "officer"))
    assert await page.get_by_role("link", name="Admin").count() == 0
    for path in ("/admin/users", "/admin/peers", "/admin/trust", "/export.csv"):
        response = await page.goto(path)
        assert response.status == 403, path
        assert "role officer, which may not" in await page.locator("main").inner_text()

    # The browser's own cookies, but a POST without the page's CSRF token (or with a wrong one): refused.
    assert (await page.request.get("/inbox")).status == 200
    for form in ({"category": "drugs"}, {"category": "drugs", "csrf": "x" * 43}):
        refused = await page.request.post("/records/new/seizure", form=form)
        assert refused.status == 403
        assert "did not come from a page of this node" in await refused.text()
    assert db_rows(ng, "SELECT count(*) FROM drafts") == [(0,)]

    assert db_rows(ng, "SELECT count(*) FROM sessions WHERE user = 'amina'") == [(1,)]
    await page.get_by_role("button", name="Sign out").click()
    await page.wait_for_url("**/login?bye=1")
    assert "You are signed out." in await page.locator("main").inner_text()
    assert db_rows(ng, "SELECT count(*) FROM sessions WHERE user = 'amina'") == [(0,)]
    await page.goto("/inbox")
    assert "/login?next=%2Finbox" in page.url
    assert await page.get_by_label("Your access token").count() == 1


async def test_screenshots_of_every_page(wca, browser, tmp_path):
    """The code of scripts/screenshots (docs/img) works; here it writes to a temporary folder."""
    fed, _, ng, gh = wca
    paths = await take_screenshots(browser, fed, ng, gh, tmp_path / "img")
    assert sorted(p.stem for p in paths) == sorted(SHOTS)
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000
