"""Drives the web console in a real headless Chromium (Debian's, through Playwright from
PyPI) as a user would: sign in, create a service, an API and an app (its secret shown once),
authorize the app on the API, see an error of the API, call the API from the request tester
(signed in the browser; a streamed answer; a broken secret's canonical-request diff), see
those calls on the usage page, sign out; then sign in as a viewer, who sees the objects but
no write control and no credential. Takes screenshots of the main
pages into SHOTS. Prints one JSON line for the test that runs it: the app's key and secret as
the console showed them, the predict URL, and the token the sign-out revoked.

usage: console_e2e.py ADMIN_URL PASSWORD UPSTREAM_URL VIEWER VIEWER_PASSWORD SHOTS
"""

import json
import os
import re
import sys

from playwright.sync_api import expect, sync_playwright

admin, password, upstream, viewer, viewer_password, shots = sys.argv[1:7]
os.makedirs(shots, exist_ok=True)


def sign_in(page, user, secret):
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("User", exact=True).fill(user)
    page.get_by_label("Password", exact=True).fill(secret)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Services")).to_be_visible()


def nav(page, name):
    page.locator("#nav").get_by_role("button", name=name, exact=True).click()
    expect(page.get_by_role("heading", name=name)).to_be_visible()


def run(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=admin)
    page = context.new_page()
    problems = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    result = {}

    # The admin listener's root leads to the console.
    page.goto(admin + "/")
    assert page.url == admin + "/console/", page.url
    page.screenshot(path=f"{shots}/sign-in.png")
    sign_in(page, "admin", password)
    expect(page.locator("#who")).to_contain_text("admin")

    # A service, then an API of it.
    page.get_by_label("Name", exact=True).fill("demo")
    page.get_by_label("Upstream URLs, one per line").fill(upstream)
    page.get_by_role("button", name="Create service").click()
    service = page.get_by_role("button", name="demo", exact=True)
    expect(service).to_be_visible()
    page.screenshot(path=f"{shots}/services.png")
    service.click()
    expect(page.get_by_role("heading", name="APIs of demo")).to_be_visible()
    page.get_by_role("button", name="Create API").click()
    rows = page.get_by_role("table", name="APIs").locator("tbody tr")
    expect(rows).to_have_count(1)
    result["predict_url"] = rows.locator("code").inner_text()
    rows.get_by_role("button", name=re.compile("^Copy the predict URL")).click()
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == result["predict_url"], copied

    # An app: its key and secret shown once.
    nav(page, "Apps")
    page.get_by_label("Name", exact=True).fill("demo_app")
    page.get_by_role("button", name="Create app").click()
    expect(page.locator("#new-app-secret")).to_be_visible()
    expect(page.get_by_text("it is not shown again")).to_be_visible()
    result["app_key"] = page.locator("#new-app-key").inner_text()
    result["app_secret"] = page.locator("#new-app-secret").inner_text()
    page.screenshot(path=f"{shots}/apps.png")
    # The API's refusal, with its error code.
    page.get_by_label("Name", exact=True).fill("demo_app")
    page.get_by_role("button", name="Create app").click()
    expect(page.get_by_role("alert")).to_contain_text(re.compile(r"ModelArts\.\d{4}: "))
    # Another view, and the secret is gone from the page.
    nav(page, "Services")
    nav(page, "Apps")
    expect(page.locator("#new-app-secret")).to_have_count(0)

    # Authorized on the API, from the service's side.
    nav(page, "Services")
    page.get_by_role("button", name="demo", exact=True).click()
    page.get_by_label(re.compile("^App to authorize on")).select_option(label="demo_app")
    page.get_by_role("button", name=re.compile("^Authorize the chosen app")).click()
    expect(page.get_by_role("button", name=re.compile("^Unauthorize demo_app"))).to_be_visible()
    page.screenshot(path=f"{shots}/apis.png")

    # The service's settings, edited and read back from the page drawn after the save.
    def save_settings():
        page.evaluate("document.querySelector('details').dataset.before = 'save'")
        page.get_by_role("button", name="Save settings").click()
        expect(page.locator("details[data-before]")).to_have_count(0)
        expect(page.get_by_role("status")).to_have_text("Settings saved.")

    page.get_by_text("Settings", exact=True).click()
    page.get_by_label("Timeout (ms)").fill("5000")
    page.get_by_label("Balancing").select_option("round_robin")
    page.get_by_label("Health check path").fill("/healthz")
    save_settings()
    expect(page.get_by_label("Timeout (ms)")).to_have_value("5000")
    expect(page.get_by_label("Balancing")).to_have_value("round_robin")
    expect(page.get_by_label("Health check path")).to_have_value("/healthz")
    page.get_by_label("Health check path").fill("")
    save_settings()
    expect(page.get_by_label("Health check path")).to_have_value("")

    # The app's page: AppCodes added, reset and deleted; its APIs, from its side.
    nav(page, "Apps")
    page.get_by_role("button", name="demo_app", exact=True).click()
    expect(page.get_by_role("heading", name="App demo_app")).to_be_visible()
    apis_of_app = page.get_by_role("table", name="Authorized APIs").locator("tbody tr")
    expect(apis_of_app).to_have_count(1)
    page.get_by_role("button", name="Add AppCode").click()
    codes = page.get_by_role("table", name="AppCodes").locator("tbody tr code")
    expect(codes).to_have_count(1)
    first = codes.first.inner_text()
    assert re.fullmatch(r"[0-9a-f]{64}", first), first
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Reset AppCode 1").click()
    expect(codes.first).not_to_have_text(first)
    page.screenshot(path=f"{shots}/app.png", full_page=True)
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Delete AppCode 1").click()
    expect(page.get_by_text("No AppCode.")).to_be_visible()
    page.get_by_role("button", name="Unauthorize demo_app on").click()
    expect(page.get_by_text("Not authorized on any API.")).to_be_visible()
    page.get_by_role("button", name="Authorize demo_app on the chosen API").click()
    expect(apis_of_app).to_have_count(1)

    # The request tester signs as the official signers do (the spec's vector V1)...
    v1 = page.evaluate("""() => import('/console/console.js').then((m) => m.signRequest({
        method: 'GET',
        url: 'https://infer.example.test/v1/infers/6f1c2b3a-4d5e-4f60-8a9b-0c1d2e3f4a5b/health?limit=10&b=2&a=1&a=0&name=hello%20world&flag',
        headers: [], body: '', date: '20240102T030405Z',
        key: 'a1b2c3d4e5f60718293a4b5c6d7e8f90', secret: '0f1e2d3c4b5a69788796a5b4c3d2e1f0',
    })).then((r) => [r.canonical, r.headers.get('authorization'), r.query])""")
    assert v1[0] == (
        "GET\n/v1/infers/6f1c2b3a-4d5e-4f60-8a9b-0c1d2e3f4a5b/health/\n"
        "a=0&a=1&b=2&flag=&limit=10&name=hello%20world\n"
        "host:infer.example.test\nx-sdk-date:20240102T030405Z\n\nhost;x-sdk-date\n"
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    ), v1[0]
    assert v1[1].endswith(
        "Signature=c6236d0ed81a7fc36c8c5e36fa766dcdf22f8bbe10dbe4b9435c26dad2285db7"), v1[1]
    # ...and sends a call through the gateway, whose streamed answer comes in as it is sent.
    nav(page, "Request tester")
    page.get_by_label("App", exact=True).select_option(label="demo_app")
    expect(page.get_by_label("AppKey")).to_have_value(result["app_key"])
    page.get_by_label("Sub-path").fill("/sse")
    page.get_by_role("button", name="Send").click()
    output = page.locator("#tester-output")
    expect(output).to_contain_text("id: 0")
    assert "id: 19" not in output.inner_text(), "the answer came whole, not streamed"
    expect(page.locator("#tester-status")).to_contain_text("200")
    expect(output).to_contain_text("id: 19", timeout=10_000)
    expect(page.locator("#tester-status")).to_contain_text(re.compile(r"request id [0-9a-f]{32} · done"))
    # A broken secret: refused, with the gateway's canonical request beside the browser's.
    page.get_by_label("AppSecret").fill("not-the-apps-secret")
    page.get_by_label("Sub-path").fill("/hello")
    page.get_by_label("Query").fill("b=2&a=1")
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#tester-status")).to_contain_text("401")
    diff = page.get_by_role("region", name="Canonical requests")
    expect(diff).to_contain_text("The canonical requests are the same")
    ours = page.locator("#canonical-ours").inner_text()
    assert ours == page.locator("#canonical-gateway").inner_text(), ours
    assert "a=1&b=2" in ours and "/hello/" in ours, ours
    expect(page.locator("#canonical-diff .differs")).to_have_count(0)
    page.screenshot(path=f"{shots}/tester.png", full_page=True)

    # A throttling policy: bound to the API, with a special limit for the app.
    nav(page, "Throttling")
    page.get_by_label("Name", exact=True).fill("demo_policy")
    page.get_by_label("Limit per API").fill("100")
    page.get_by_role("button", name="Create policy").click()
    page.get_by_role("button", name="demo_policy", exact=True).click()
    expect(page.get_by_role("heading", name="Policy demo_policy")).to_be_visible()
    page.get_by_role("button", name="Bind", exact=True).click()
    bound = page.get_by_role("table", name="Bound APIs").locator("tbody tr")
    expect(bound).to_have_count(1)
    page.get_by_label("App of the special limit").select_option(label="demo_app")
    page.get_by_label("Limit", exact=True).fill("5")
    page.get_by_role("button", name="Add special limit").click()
    specials = page.get_by_role("table", name="Special limits").locator("tbody tr")
    expect(specials).to_have_count(1)
    expect(specials).to_contain_text("demo_app")
    page.screenshot(path=f"{shots}/throttling.png", full_page=True)
    page.get_by_role("button", name="Delete the special limit of demo_app").click()
    expect(page.get_by_text("No special limit.")).to_be_visible()
    page.get_by_role("button", name=re.compile("^Unbind ")).click()
    expect(page.get_by_text("No API bound.")).to_be_visible()
    nav(page, "Throttling")
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Delete policy demo_policy").click()
    expect(page.get_by_text("No policy yet.")).to_be_visible()

    # Usage: the tester's two calls by answer, under the app that made them (the refused
    # one under no app), as totals, charts of the period and a table per app and API.
    nav(page, "Usage")
    totals = page.get_by_role("table", name="Totals")
    cells = lambda: [c.inner_text() for c in totals.locator("tbody td").all()]
    for _ in range(50):
        if cells()[:4] == ["2", "1", "0", "0"]:
            break
        page.wait_for_timeout(200)
        page.get_by_role("button", name="Refresh").click()
    assert cells()[:4] == ["2", "1", "0", "0"], cells()
    pairs = page.get_by_role("table", name="By app and API").locator("tbody tr")
    expect(pairs).to_have_count(2)
    expect(pairs.filter(has_text="demo_app")).to_contain_text("demo · ")
    expect(pairs.filter(has_text="(not an app)")).to_have_count(1)
    expect(page.get_by_role("figure", name="Calls per hour").locator("canvas")).to_have_count(1)
    expect(page.get_by_role("figure", name="Model tokens per hour").locator("canvas")).to_have_count(1)
    page.get_by_label("Period").select_option(label="Last hour")
    expect(page.get_by_role("figure", name="Calls per minute")).to_be_visible()
    page.get_by_label("App", exact=True).select_option(label="demo_app")
    expect(page.get_by_role("table", name="By app and API").locator("tbody tr")).to_have_count(1)
    assert cells()[:4] == ["1", "0", "0", "0"], cells()
    page.get_by_label("App", exact=True).select_option(label="All apps")
    expect(pairs).to_have_count(2)
    assert not re.search(r"\b(false|undefined|null|NaN)\b", page.locator("#main").inner_text())
    page.screenshot(path=f"{shots}/usage.png", full_page=True)

    # Users and their roles in the project; the signed-in user's access keys.
    nav(page, "Users")
    users = page.get_by_role("table", name="Users")
    expect(users.get_by_role("button", name=viewer, exact=True)).to_be_visible()
    page.get_by_label(f"Role to grant {viewer}").select_option("member")
    page.get_by_role("button", name=f"Grant the chosen role to {viewer}").click()
    revoke = page.get_by_role("button", name=f"Revoke member from {viewer}")
    expect(revoke).to_be_visible()
    revoke.click()
    expect(revoke).to_have_count(0)
    expect(page.get_by_role("button", name=f"Revoke viewer from {viewer}")).to_be_visible()
    # A new project, and the viewer's role in it granted from the same table.
    page.get_by_label("Project name").fill("research")
    page.get_by_role("button", name="Create project").click()
    expect(page.get_by_role("table", name="Projects").get_by_text("research")).to_be_visible()
    expect(page.get_by_role("columnheader", name="Roles in research")).to_be_visible()
    expect(page.get_by_role("button", name=f"Revoke viewer from {viewer}")).to_have_count(0)
    page.get_by_label(f"Role to grant {viewer}").select_option("member")
    page.get_by_role("button", name=f"Grant the chosen role to {viewer}").click()
    expect(page.get_by_role("button", name=f"Revoke member from {viewer}")).to_be_visible()
    page.get_by_label("Project of the roles").select_option(label="default")
    expect(page.get_by_role("button", name=f"Revoke viewer from {viewer}")).to_be_visible()
    expect(page.get_by_role("button", name=f"Revoke member from {viewer}")).to_have_count(0)
    page.get_by_label("Description", exact=True).fill("console key")
    page.get_by_role("button", name="Create access key").click()
    expect(page.get_by_text("it is not shown again")).to_be_visible()
    access = page.locator("#new-access-key").inner_text()
    assert len(page.locator("#new-access-secret").inner_text()) >= 20
    keys = page.get_by_role("table", name="Access keys")
    expect(keys.get_by_text(access)).to_be_visible()
    page.screenshot(path=f"{shots}/users.png", full_page=True)
    page.get_by_role("button", name=f"Disable access key {access}").click()
    expect(keys.get_by_text("inactive")).to_be_visible()
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name=f"Delete access key {access}").click()
    expect(page.get_by_text("No access key.")).to_be_visible()

    # Sign-out revokes the token and forgets it.
    result["revoked_token"] = page.evaluate(
        "JSON.parse(sessionStorage.getItem('infergate.session')).token"
    )
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('infergate.session')") is None

    # A viewer sees the services and APIs, no control that writes, and no credential.
    sign_in(page, viewer, viewer_password)
    expect(page.get_by_role("button", name="demo", exact=True)).to_be_visible()
    writes = re.compile(r"^(Create|Delete|Authorize|Unauthorize|Reset)")
    expect(page.get_by_role("button", name=writes)).to_have_count(0)
    page.get_by_role("button", name="demo", exact=True).click()
    expect(page.get_by_role("heading", name="APIs of demo")).to_be_visible()
    # The API, but not the admin's app: apps are their creator's (and the project admins').
    expect(page.get_by_role("table", name="APIs").locator("tbody tr")).to_have_count(1)
    expect(page.get_by_role("table", name="APIs").get_by_text("demo_app")).to_have_count(0)
    expect(page.get_by_role("button", name=writes)).to_have_count(0)
    page.screenshot(path=f"{shots}/viewer.png")
    nav(page, "Apps")
    expect(page.get_by_text("No app yet.")).to_be_visible()
    expect(page.get_by_role("button", name=writes)).to_have_count(0)
    body = page.locator("body").inner_text()
    assert result["app_key"] not in body and result["app_secret"] not in body, body

    # The viewer manages no user and no project, only its own access keys; it sees the two
    # projects it holds a role in.
    nav(page, "Users")
    expect(page.get_by_text("Only domain administrators manage users")).to_be_visible()
    expect(page.get_by_role("table", name="Users")).to_have_count(0)
    expect(page.get_by_role("heading", name="Your projects")).to_be_visible()
    expect(page.get_by_role("table", name="Projects").locator("tbody tr")).to_have_count(2)
    expect(page.get_by_role("button", name="Create project")).to_have_count(0)

    # A narrow window still shows the list and the navigation.
    page.set_viewport_size({"width": 420, "height": 800})
    expect(page.locator("#nav").get_by_role("button", name="Services")).to_be_visible()

    # (The duplicate app's 409, the broken secret's 401 and the viewer's 403 on the list of
    # users are the refusals asked for.)
    problems = [p for p in problems
                if not any(f"status of {code}" in p for code in (401, 403, 409))]
    assert not problems, problems
    context.close()
    return result


with sync_playwright() as playwright:
    chromium = playwright.chromium.launch(
        executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
        args=["--no-sandbox", "--disable-gpu"],
    )
    try:
        print(json.dumps(run(chromium)), flush=True)
    finally:
        chromium.close()
