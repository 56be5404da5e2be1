"""The web pages over plain HTTP (no browser): sessions and their cookie, CSRF, roles on every page,
search and export, the forms' audience rules, and the admin pages."""

from __future__ import annotations

import hashlib
import re
import ssl

import aiohttp
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from node.auth import set_disabled
from node.pages import charts, forms, session
from tests.federation.harness import Member, api, db_rows, free_port, make_seizure
from tests.web.helpers import add_user, day, settle

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def client(member: Member) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(base_url=member.url, cookie_jar=aiohttp.CookieJar(unsafe=True))


async def sign_in(s: aiohttp.ClientSession, token: str) -> str:
    """Sign in through the form; returns the page CSRF token of the new session."""
    async with s.get("/login") as r:
        login_csrf = CSRF.search(await r.text()).group(1)
    async with s.post("/login", data={"csrf": login_csrf, "token": token}, allow_redirects=False) as r:
        assert r.status == 303, await r.text()
    async with s.get("/") as r:
        assert r.status == 200
        return CSRF.search(await r.text()).group(1)


async def test_sign_in_cookie_and_session_storage(wca):
    _, _, ng, _ = wca
    token = await add_user(ng, "amina", "officer")
    async with client(ng) as s:
        async with s.get("/", allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == "/login"
        async with s.get("/search?q=x", allow_redirects=False) as r:
            assert r.headers["Location"] == "/login?next=%2Fsearch%3Fq%3Dx"
        async with s.get("/login") as r:
            login_csrf = CSRF.search(await r.text()).group(1)
            assert r.headers["Content-Security-Policy"].startswith("default-src 'none'")
        # The sign-in form itself needs its token.
        async with s.post("/login", data={"token": token}) as r:
            assert r.status == 403
        async with s.post("/login", data={"csrf": login_csrf, "token": "cm_wrong"}) as r:
            assert r.status == 401 and "not known on this node" in await r.text()
        async with s.post("/login", data={"csrf": login_csrf, "token": token, "next": "//evil.example/x"},
                          allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == "/"  # never off this node
            cookie = r.headers.getall("Set-Cookie")
    [line] = [c for c in cookie if c.startswith(session.SESSION_COOKIE + "=")]
    attrs = [a.strip().lower() for a in line.split(";")]
    assert "httponly" in attrs and "samesite=strict" in attrs and "path=/" in attrs and "max-age=43200" in attrs
    assert "secure" not in attrs  # served over plain HTTP here; see the TLS test below
    value = line.split(";")[0].split("=", 1)[1]
    assert len(value) >= 43  # 32 random bytes
    [(stored, created, expires, user)] = db_rows(ng, "SELECT id_hash, created, expires, user FROM sessions")
    assert stored == hashlib.sha256(value.encode()).hexdigest() and stored != value and user == "amina"
    assert expires - created == 12 * 3600 * 1000
    audit = db_rows(ng, "SELECT user, action, detail FROM audit WHERE action = 'login' ORDER BY seq")
    assert audit[0] == ("anonymous", "login", "refused: unknown token")
    assert audit[-1][:2] == ("amina", "login")


def test_session_cookie_is_secure_over_tls():
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    for tls, secure in ((ctx, True), (None, False)):
        request = make_mocked_request("POST", "/login", sslcontext=tls)
        resp = web.Response()
        session.set_cookie(request, resp, session.SESSION_COOKIE, "v", 60)
        morsel = resp.cookies[session.SESSION_COOKIE]
        assert bool(morsel["secure"]) is secure
        assert morsel["httponly"] and morsel["samesite"] == "Strict"


async def test_session_ends_when_expired_disabled_or_signed_out(wca):
    _, _, ng, _ = wca
    token = await add_user(ng, "amina", "officer")
    async with client(ng) as s:
        await sign_in(s, token)
        await ng.node.store.write(lambda c: c.execute("UPDATE sessions SET expires = 1"))
        async with s.get("/inbox", allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"].startswith("/login")
        csrf = await sign_in(s, token)
        await ng.node.store.write(set_disabled, "amina", True)
        async with s.get("/inbox", allow_redirects=False) as r:
            assert r.status == 303  # disabling a user ends their sessions at once
        async with s.get("/login") as r:
            login_csrf = CSRF.search(await r.text()).group(1)
        async with s.post("/login", data={"csrf": login_csrf, "token": token}) as r:
            assert r.status == 403 and "disabled" in await r.text()
        await ng.node.store.write(set_disabled, "amina", False)
        csrf = await sign_in(s, token)
        async with s.post("/logout", data={"csrf": csrf}, allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == "/login?bye=1"
        async with s.get("/", allow_redirects=False) as r:
            assert r.status == 303
    assert db_rows(ng, "SELECT count(*) FROM sessions") == [(0,)]
    assert ("amina", "logout") in db_rows(ng, "SELECT user, action FROM audit")


PAGES = ("/", "/search", "/records/new/seizure", "/records/new/alert", "/inbox", "/peers", "/export.csv",
         "/export.json", "/admin/users", "/admin/peers", "/admin/trust")
FORBIDDEN = {
    "officer": {"/export.csv", "/export.json", "/admin/users", "/admin/peers", "/admin/trust"},
    "analyst": {"/records/new/seizure", "/records/new/alert", "/admin/users", "/admin/peers", "/admin/trust"},
    "admin": set(),
}
POSTS = ("/records/new/seizure", "/records/new/alert", "/admin/users", "/admin/peers", "/logout",
         "/records/00000000-0000-4000-8000-000000000000/share",
         "/records/00000000-0000-4000-8000-000000000000/feedback")


async def test_every_page_asks_the_role_and_every_post_the_csrf_token(wca):
    _, _, ng, _ = wca
    for role, refused in FORBIDDEN.items():
        token = await add_user(ng, f"u-{role}", role)
        async with client(ng) as s:
            csrf = await sign_in(s, token)
            for path in PAGES:
                async with s.get(path) as r:
                    body = await r.text()
                    expected = 403 if path in refused else 200
                    assert r.status == expected, (role, path, body[-800:])
                    if expected == 403:
                        assert f"the role {role}, which may not" in body
            for path in POSTS:
                for data in ({}, {"csrf": csrf[:-2] + "xx"}):
                    async with s.post(path, data=data) as r:
                        assert r.status == 403, (role, path)
                        assert "did not come from a page of this node" in await r.text()
            async with s.get("/no/such/page") as r:
                assert r.status == 404 and "<h1>Not found" in await r.text()
    async with client(ng) as s, s.post("/records/new/seizure", data={}) as r:
        assert r.status == 403  # not signed in: no POST goes through either


async def test_search_page_filters_pages_counts_and_exports(wca):
    fed, _, ng, gh = wca
    async with aiohttp.ClientSession() as api_s:
        for i in range(30):
            cat = ("medicines", "tobacco", "drugs")[i % 3]
            status, rec = await api(gh, api_s, "POST", "/api/v1/records", {"kind": "seizure", "record": make_seizure(
                i, category=cat, date=day(-i), route={"departure": "CN" if i % 2 else "IN", "destination": "GH",
                                                       "transit": ["TG"] if i % 5 == 0 else []})})
            assert status == 201
            status, _ = await api(gh, api_s, "POST", f"/api/v1/records/{rec['id']}/share", {"audience": "region:WCA"})
            assert status == 201
    await settle(fed)
    token = await add_user(ng, "ama", "analyst")
    async with client(ng) as s:
        await sign_in(s, token)
        async with s.get("/search") as r:
            html = await r.text()
        assert "1–25 of 30 matches" in html and 'href="/search?offset=25"' in html
        assert html.index(day(-29)) < html.index(day(-28))  # newest (last shared) first
        assert "<svg" in html and 'aria-label="Matches by category"' in html
        async with s.get("/search?offset=25") as r:
            html = await r.text()
            assert "26–30 of 30" in html and "← Newer" in html
        async with s.get("/search?category=tobacco&departure=cn&transit=TG") as r:
            html = await r.text()
            assert r.status == 200
        expected = sum(1 for i in range(30) if i % 3 == 1 and i % 2 == 1 and i % 5 == 0)
        assert (f"of {expected} matches" if expected else "No record matches") in html
        async with s.get("/search?hs=1&since=2020-13-01") as r:
            html = await r.text()
            assert r.status == 400
            assert re.search(r'id="s-hs-error"><strong>Error:</strong> &#39;1&#39;: 2 to 10 digits', html)
        async with s.get("/search?kind=seizure&route=IN-GH") as r:
            html = await r.text()
            assert "of 15 matches" in html and 'href="/export.csv?kind=seizure&amp;route=IN-GH"' in html
        async with s.get("/export.csv?kind=seizure&route=IN-GH") as r:
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/csv")
            assert "attachment" in r.headers["Content-Disposition"]
            lines = (await r.text()).strip().split("\r\n")
        assert len(lines) == 16 and lines[0].startswith("id,kind,version,origin")
        async with s.get("/export.json?category=drugs") as r:
            data = await r.json(content_type=None)
            assert data["count"] == 10 and all(x["record"]["category"] == "drugs" for x in data["records"])
    actions = db_rows(ng, "SELECT action, detail FROM audit WHERE user = 'ama'")
    assert ("export", 'csv {"departure":"IN","destination":"GH","kind":"seizure"} (web)') in actions
    assert any(a == "search" and "tobacco" in d for a, d in actions)


async def test_forms_refuse_bad_audiences_and_personal_data_to_public_levels(wca):
    _, _, ng, _ = wca
    token = await add_user(ng, "amina", "officer")
    base = {"category": "tobacco", "commodity.description": "cigarettes", "quantity.amount": "50",
            "quantity.unit": "cartons", "date": day(-1), "office.name": "Seme", "office.locode": "NGSEM",
            "transport_mode": "road", "detection_method": "routine", "route.departure": "BJ",
            "route.destination": "NG", "tlp": "GREEN", "share_now": "on"}
    async with client(ng) as s:
        csrf = await sign_in(s, token)
        async with s.post("/records/new/seizure", data={**base, "csrf": csrf, "audience": "nodes"}) as r:
            html = await r.text()
            assert r.status == 400 and "tick at least one administration" in html
            assert 'value="cigarettes"' in html  # kept as typed
        person = {"parties[0].role": "consignee", "parties[0].name": "ACME Trading Ltd"}
        async with s.post("/records/new/seizure", data={**base, **person, "csrf": csrf, "audience": "region",
                                                        "audience_region": "WCA"}) as r:
            html = await r.text()
            assert r.status == 400
            assert re.search(r'id="fs-parties-error"><strong>Error:</strong> this seizure names persons or '
                             r"companies, so it must not be marked TLP GREEN", html)
        async with s.post("/records/new/seizure", data={**base, **person, "tlp": "AMBER", "csrf": csrf,
                                                        "audience": "federation"}) as r:
            assert r.status == 400 and "must not be sent to the whole federation" in await r.text()
        async with s.post("/records/new/seizure", data={**base, **person, "tlp": "AMBER", "csrf": csrf,
                                                        "audience": "group", "audience_group": "op:NONE"}) as r:
            assert r.status == 400 and "choose an operation group this node belongs to" in await r.text()
        assert db_rows(ng, "SELECT count(*) FROM drafts") == [(0,)]
        async with s.post("/records/new/seizure", data={**base, **person, "tlp": "AMBER", "csrf": csrf,
                                                        "audience": "region", "audience_region": "WCA"},
                          allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"].endswith("?done=shared")
        async with s.get(r.headers["Location"]) as page:
            html = await page.text()
            assert "Person 1" in html and "ACME Trading Ltd" in html and "RILO region WCA" in html


async def test_admin_pages_users_peers_and_trust(wca):
    _, hub, ng, gh = wca
    async with client(ng) as s:
        csrf = await sign_in(s, ng.token)
        async with s.post("/admin/users", data={"csrf": csrf, "name": "kwame", "role": "analyst"}) as r:
            html = await r.text()
            assert r.status == 201 and "shown <strong>this once</strong>" in html
            token = re.search(r'id="new-token" class="token" readonly value="(cm_[^"]+)"', html).group(1)
        async with s.get("/admin/users") as r:
            assert token not in await r.text()  # never again
        async with s.post("/admin/users", data={"csrf": csrf, "name": "kwame", "role": "analyst"}) as r:
            assert r.status == 400 and "exists already" in await r.text()
        async with s.post("/admin/users/admin/disable", data={"csrf": csrf}) as r:
            assert r.status == 400 and "your own account" in await r.text()
        async with client(ng) as other:
            await sign_in(other, token)
        async with s.post("/admin/users/kwame/disable", data={"csrf": csrf}, allow_redirects=False) as r:
            assert r.status == 303
        assert db_rows(ng, "SELECT disabled FROM tokens WHERE name = 'kwame'") == [(1,)]

        # Peers: Ghana directly, by its address (its descriptor is endorsed by the hub, our anchor).
        async with s.post("/admin/peers", data={"csrf": csrf, "url": "ftp://x"}) as r:
            assert r.status == 400 and "http(s)://host:port" in await r.text()
        async with s.post("/admin/peers", data={"csrf": csrf, "url": f"http://127.0.0.1:{free_port()}"}) as r:
            assert r.status == 502 and "Cannot read" in await r.text()
        async with s.post("/admin/peers", data={"csrf": csrf, "url": gh.url + "/"}, allow_redirects=False) as r:
            assert r.status == 303, await r.text()
        assert (gh.node_id, gh.url) in db_rows(ng, "SELECT node, url FROM peers")
        assert gh.node_id in ng.driver.peers
        async with s.get("/admin/peers") as r:
            assert "Ghana Revenue Authority" in await r.text()
        async with s.post(f"/admin/peers/{gh.node_id}/remove", data={"csrf": csrf}, allow_redirects=False) as r:
            assert r.status == 303
        assert gh.node_id not in ng.driver.peers
        async with s.get("/admin/trust") as r:
            html = await r.text()
            assert hub.node_id in html and "RILO West and Central Africa" in html and "endorsed by 1 anchor" in html
    admin_actions = [d for (d,) in db_rows(ng, "SELECT detail FROM audit WHERE action = 'admin'")]
    assert "user added with role analyst (web)" in admin_actions and "user disabled (web)" in admin_actions
    assert any(d.startswith("peer added: Ghana Revenue Authority") for d in admin_actions)


def test_form_paths_and_every_error_at_once():
    record, typed = forms.read_form("seizure", _Form({
        "office.locode": "ngap", "route.transit": "tg; bj", "commodity.hs_code": "6307.90",
        "parties[1].name": "X", "conveyance.awb": "020-1234567 5", "concealment": ""}))
    assert record["office"] == {"locode": "NGAP"} and record["route"]["transit"] == ["TG", "BJ"]
    assert record["commodity"] == {"hs_code": "630790"} and record["parties"] == [{"name": "X"}]
    assert record["conveyance"] == {"awb": "02012345675"} and record["concealment"] == ""
    assert typed["route.transit"] == "tg; bj"
    _, errors = forms.validate_all("seizure", record, now_ms=1_700_000_000_000)
    for path in ("category", "date", "office.name", "office.locode", "transport_mode", "detection_method",
                 "commodity.description", "quantity.amount", "quantity.unit", "route.departure",
                 "route.destination", "parties[0].role", "tlp"):
        assert path in errors, path
    assert forms.error_key("seizure", "route.transit[3]") == "route.transit"
    assert forms.error_key("alert", "consignment") == "consignment"
    assert forms.error_key("seizure", "nothing.here") == ""


def test_charts_escape_labels():
    svg = str(charts.hbar("t", [("<script>", 3), ("b", 0)], href=['/s?a=1&b="2"', None]))
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "&amp;b=&quot;2&quot;" in svg
    assert str(charts.hbar("Nothing", [])).startswith('<p class="empty">')
    cols = str(charts.columns("m", [("2025-12", 1), ("2026-01", 4)]))
    assert "Dec" in cols and "Jan" in cols and "2026" in cols


class _Form(dict):
    def getall(self, key, default=()):
        return [self[key]] if key in self else list(default)

