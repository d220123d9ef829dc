"""Drives the web console in a real headless Chromium (Debian's, through Playwright from
PyPI) as a user would: sign in, create a service, an API and an app (its secret shown once),
authorize the app on the API, see an error of the API, sign out; then sign in as a viewer,
who sees the objects but no write control and no credential. Takes screenshots of the main
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

    # A narrow window still shows the list and the navigation.
    page.set_viewport_size({"width": 420, "height": 800})
    expect(page.locator("#nav").get_by_role("button", name="Services")).to_be_visible()

    # (The duplicate app's 409 is the one refusal asked for.)
    problems = [p for p in problems if "status of 409" not in p]
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
