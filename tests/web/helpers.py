"""Helpers for the web page tests: a small West African federation, users, a headless Chromium, sample data.

The browser is Debian's ``chromium`` (``scripts/install-browser``) driven by
Playwright's async client; Playwright's own browser downloads are never used.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from node import auth
from tests.federation.harness import Federation, Member, api, make_seizure

CHROMIUM = os.environ.get("CENMESH_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
NATIONALS = (("Nigeria Customs Service", "NG"), ("Ghana Revenue Authority", "GH"))
HUB = "RILO West and Central Africa"


def have_chromium() -> bool:
    return os.access(CHROMIUM, os.X_OK)


def build_wca(fed: Federation) -> tuple[Member, Member, Member]:
    """A RILO hub and two national nodes of region WCA, both peered with the hub."""
    hub = fed.add(HUB, "CI", "hub", ["WCA"])
    ng = fed.add(NATIONALS[0][0], "NG", "national", ["WCA"])
    gh = fed.add(NATIONALS[1][0], "GH", "national", ["WCA"])
    fed.wire()
    fed.peer(ng.name, hub.name)
    fed.peer(gh.name, hub.name)
    return hub, ng, gh


async def add_user(member: Member, name: str, role: str) -> str:
    """A new user on a running member; returns its token."""
    assert member.node is not None
    return str(await member.node.store.write(auth.create_token, name, role, member.node.now_ms()))


async def settle(fed: Federation) -> None:
    """Finish pushes and run a sync round everywhere (twice, so relayed bundles arrive)."""
    await fed.drain()
    await fed.sync(rounds=2)
    await fed.drain()


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Any]:
    """A headless Chromium browser (Playwright's async API)."""
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


async def signed_in(browser: Any, member: Member, token: str, *, width: int = 1280, height: int = 900) -> Any:
    """A new browser context and page, signed in at ``member`` with ``token`` through the sign-in form."""
    context = await browser.new_context(viewport={"width": width, "height": height}, base_url=member.url)
    page = await context.new_page()
    await page.goto("/login")
    await page.get_by_label("Your access token").fill(token)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(re.compile(r".*/$"))
    return page


def day(offset: int) -> str:
    return (datetime.datetime.now(datetime.UTC).date() + datetime.timedelta(days=offset)).isoformat()


# --- sample data for the screenshots and docs ----------------------------------------------------

SAMPLES: list[dict[str, Any]] = [
    {"category": "medicines", "commodity": {"description": "falsified antimalarial tablets (artemether)",
                                            "hs_code": "300460"},
     "route": {"departure": "IN", "destination": "NG", "transit": ["AE"]}, "transport_mode": "sea",
     "office": {"name": "Lagos Apapa Port", "locode": "NGAPP"}},
    {"category": "tobacco", "commodity": {"description": "cigarettes without tax stamps", "hs_code": "240220"},
     "route": {"departure": "AE", "destination": "GH", "transit": ["TG"]}, "transport_mode": "road",
     "office": {"name": "Aflao border post", "locode": "GHAFL"}},
    {"category": "drugs", "commodity": {"description": "cocaine hydrochloride in fruit pulp", "hs_code": "293991"},
     "route": {"departure": "BR", "destination": "GH", "transit": []}, "transport_mode": "sea",
     "office": {"name": "Tema Port", "locode": "GHTEM"}},
    {"category": "ipr", "commodity": {"description": "counterfeit sports shoes", "hs_code": "640411",
                                      "brand": "Adidas", "rights_holder": "adidas AG"},
     "route": {"departure": "CN", "destination": "NG", "transit": []}, "transport_mode": "sea",
     "office": {"name": "Tin Can Island Port", "locode": "NGTIN"}},
    {"category": "environment", "commodity": {"description": "pangolin scales", "hs_code": "051000"},
     "route": {"departure": "NG", "destination": "VN", "transit": ["TR"]}, "transport_mode": "air",
     "office": {"name": "Lagos Murtala Muhammed Airport", "locode": "NGLOS"}},
    {"category": "medicines", "commodity": {"description": "unregistered tramadol 225 mg", "hs_code": "300490"},
     "route": {"departure": "IN", "destination": "GH", "transit": []}, "transport_mode": "sea",
     "office": {"name": "Tema Port", "locode": "GHTEM"}},
    {"category": "weapons", "commodity": {"description": "pump-action shotguns in used cars", "hs_code": "930320"},
     "route": {"departure": "TR", "destination": "NG", "transit": ["BJ"]}, "transport_mode": "road",
     "office": {"name": "Seme border post", "locode": "NGSEM"}},
    {"category": "medicines", "commodity": {"description": "surgical face masks, falsified CE marks",
                                            "hs_code": "630790"},
     "route": {"departure": "CN", "destination": "NG", "transit": []}, "transport_mode": "air",
     "office": {"name": "Lagos Murtala Muhammed Airport", "locode": "NGLOS"}},
]


async def seed(fed: Federation, ng: Member, gh: Member, *, per_month: int = 2) -> dict[str, Any]:
    """Seizures shared to region WCA from both nationals over the past year, and two alerts to Nigeria."""
    made: dict[str, Any] = {"seizures": [], "alerts": []}
    async with aiohttp.ClientSession() as s:
        n = 0
        for month in range(11, -1, -1):
            for k in range(per_month + (month % 3 == 0)):
                sample = SAMPLES[n % len(SAMPLES)]
                origin = ng if sample["route"]["destination"] == "NG" or sample["route"]["departure"] == "NG" else gh
                record = make_seizure(n, **sample, date=day(-30 * month - k * 3 - 1),
                                      narrative=f"Found during {sample['transport_mode']} control, case {n}.",
                                      quantity={"amount": str(120 * (n % 7 + 1)), "unit": "kg"
                                                if sample["category"] in ("drugs", "environment") else "pieces"},
                                      tlp=("GREEN", "AMBER", "AMBER", "RED")[n % 4])
                status, rec = await api(origin, s, "POST", "/api/v1/records", {"kind": "seizure", "record": record})
                assert status == 201, rec
                status, shared = await api(origin, s, "POST", f"/api/v1/records/{rec['id']}/share",
                                           {"audience": "region:WCA"})
                assert status == 201, shared
                made["seizures"].append(rec["id"])
                n += 1
        for title, respond_by, urgency in (
                ("Container of falsified antimalarials expected at Apapa", day(-2), "priority"),
                ("Courier parcels with tramadol from Accra", day(5), "immediate")):
            alert = {"title": title, "urgency": urgency, "requested_action": "examine", "respond_by": respond_by,
                     "consignment": {"container": "CSQU3054383", "eta": day(3), "destination_locode": "NGAPP"},
                     "suspected": {"category": "medicines",
                                   "commodity": {"description": "antimalarial tablets", "hs_code": "300460"}},
                     "tlp": "AMBER", "narrative": "Risk profile hit on consignee and route."}
            status, rec = await api(gh, s, "POST", "/api/v1/records", {"kind": "alert", "record": alert})
            assert status == 201, rec
            status, shared = await api(gh, s, "POST", f"/api/v1/records/{rec['id']}/share",
                                       {"audience": f"nodes:{ng.node_id}", "urgent": urgency == "immediate"})
            assert status == 201, shared
            made["alerts"].append(rec["id"])
    await settle(fed)
    return made


SHOTS = ("dashboard", "search", "record", "new-seizure-errors", "inbox", "peers", "admin-users")


async def take_screenshots(browser: Any, fed: Federation, ng: Member, gh: Member, out: Path) -> list[Path]:
    """Screenshots of the real pages at Nigeria's node, with sample data, into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    made = await seed(fed, ng, gh)
    officer = await add_user(ng, "adaeze.okafor", "officer")
    admin = await add_user(ng, "it.admin", "admin")
    paths = []

    async def shot(page: Any, name: str, full: bool = True) -> None:
        path = out / f"{name}.png"
        await page.screenshot(path=str(path), full_page=full)
        paths.append(path)

    page = await signed_in(browser, ng, officer)
    await shot(page, "dashboard")
    await page.goto("/search?q=antimalarial")
    await shot(page, "search")
    await page.goto(f"/records/{made['seizures'][0]}")
    await shot(page, "record")
    await page.goto("/records/new/seizure")
    await page.get_by_label("Goods", exact=False).first.fill("")
    await page.locator("#f-category").select_option("medicines")
    await page.locator("#f-office-name").fill("Lagos Apapa Port")
    await page.locator("#f-office-locode").fill("NGAP")
    await page.locator("#f-quantity-amount").fill("-5")
    await page.locator("#f-route-departure").fill("CN")
    await page.locator("#f-route-transit").fill("TG, XX")
    await page.locator("#f-date").fill(day(3))
    await page.get_by_role("button", name="Save seizure").click()
    await page.wait_for_selector(".error-summary")
    await shot(page, "new-seizure-errors")
    await page.goto("/inbox")
    await shot(page, "inbox")
    await page.goto("/peers")
    await shot(page, "peers")
    await page.context.close()
    page = await signed_in(browser, ng, admin)
    await page.goto("/admin/users")
    await page.get_by_label("Name").fill("kwame.mensah")
    await page.get_by_label("Role").select_option("analyst")
    await page.get_by_role("button", name="Add user").click()
    await page.wait_for_selector(".token-once")
    await shot(page, "admin-users")
    await page.context.close()
    return paths
