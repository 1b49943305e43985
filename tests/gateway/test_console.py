"""The web console in a real browser: headless Chromium (Debian's ``chromium``) driven by
Playwright. Skipped, with one line, where either cannot be found."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest

from tests.browser import chromium, playwright_or_skip
from tests.flowbus.helpers import call, ok
from tests.support import ADMIN_PASSWORD, ROOT, Served, serving

playwright_api = playwright_or_skip()
expect = playwright_api.expect


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with chromium(playwright_api) as launched:
        yield launched


async def logged_in(browser: Any, bus: Served, user: str = "admin", password: str = ADMIN_PASSWORD) -> Any:
    page = await browser.new_page(viewport={"width": 420, "height": 900})  # a phone-sized window
    page.set_default_timeout(15_000)
    await page.goto(bus.http_url + "/")
    form = page.locator("#login")
    await form.get_by_label("User").fill(user)
    await form.get_by_label("Password").fill(password)
    await form.get_by_role("button", name="Log in").click()
    await page.locator("#endpoints button", has_text="inventory/device").wait_for(state="attached")
    return page


async def choose(page: Any, name: str) -> None:
    """Show endpoint ``name`` (or the flows page), through the menu on a narrow screen."""
    menu = page.locator("#menu")
    if await menu.is_visible() and await menu.get_attribute("aria-expanded") != "true":
        await menu.click()
    await page.locator("#endpoints").get_by_role("button", name=name, exact=True).click()


async def test_a_wrong_password_shows_its_error(browser: Any, bus: Served) -> None:
    page = await browser.new_page()
    await page.goto(bus.http_url + "/")
    form = page.locator("#login")
    await form.get_by_label("User").fill("admin")
    await form.get_by_label("Password").fill("not-the-password")
    await form.get_by_role("button", name="Log in").click()
    status = page.locator("#status")
    await status.filter(has_text="AUTH_FAILED").wait_for()
    assert "errorid" in await status.inner_text()


async def test_a_device_made_in_one_page_appears_in_another_and_a_dropped_page_catches_up(
    browser: Any, bus: Served
) -> None:
    first, second = await logged_in(browser, bus), await logged_in(browser, bus)
    for page in (first, second):
        await choose(page, "inventory/device")
        await page.get_by_role("button", name="New").wait_for()
    await first.get_by_role("button", name="New").click()
    await first.get_by_label("name").fill("from-the-console")
    await first.get_by_role("button", name="Create").click()
    await second.locator("tr", has_text="from-the-console").wait_for()

    await second.evaluate("window.flowbus._ws.close()")  # the second page's connection drops
    async with bus.connect() as ws:
        await ok(ws, "CREATE", "inventory/device", data={"name": "while-it-was-away"})
    await second.locator("tr", has_text="while-it-was-away").wait_for()


async def test_the_device_approval_flow_is_run_and_approved_from_the_console(browser: Any, bus: Served) -> None:
    flow = json.loads((ROOT / "examples" / "device_approval.json").read_text())
    flow["name"] = "console-approval"
    async with bus.connect() as ws:
        await ok(ws, "CREATE", "flows/flow", data=flow)
    page = await logged_in(browser, bus)
    await choose(page, "Flows and executions")
    await page.get_by_label("Input for console-approval").fill('{"name": "console-sw"}')
    await page.locator("tr", has_text="console-approval").get_by_role("button", name="Start").click()
    waiting = page.locator("#executions tr[data-status=WAITING]")
    await waiting.wait_for()
    execution = await waiting.get_attribute("data-id")
    await page.get_by_label("Event").fill("approve")
    await page.get_by_label("Input (JSON)").fill('{"ok": true}')
    await page.get_by_label("Execution id").fill(execution or "")
    await page.get_by_role("button", name="Send").click()
    await page.locator(f"#executions tr[data-id='{execution}'][data-status=SUCCESS]").wait_for()


def page_errors(page: Any) -> list[str]:
    """The uncaught errors of ``page`` from now on (filled as they happen)."""
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors


async def edit(page: Any, name: str) -> Any:
    """Open the edit form of the device named ``name`` (on the first page of inventory/device)."""
    await choose(page, "inventory/device")
    await page.locator("tr", has_text=name).get_by_role("button", name="Edit").click()
    form = page.locator("form", has=page.get_by_role("button", name="Save"))
    await form.wait_for()
    return form


async def test_an_array_of_strings_is_edited_as_a_list_and_a_failed_save_says_why(
    browser: Any, fresh_bus: Served
) -> None:
    async with fresh_bus.connect() as ws:
        device = await ok(ws, "CREATE", "inventory/device", data={"name": "tagged", "location": "rack 4"})
    page = await logged_in(browser, fresh_bus)
    errors = page_errors(page)
    form = await edit(page, "tagged")
    await form.get_by_label("tags").fill("core\nlab")
    await form.get_by_role("button", name="Save").click()
    await page.locator("#status", has_text="Saved").wait_for()
    async with fresh_bus.connect() as ws:
        assert (await ok(ws, "OPEN", "inventory/device", objectid=device["id"]))["tags"] == ["core", "lab"]

    form = await edit(page, "tagged")
    assert await form.get_by_label("tags").input_value() == "core\nlab"
    alert = form.get_by_role("alert")
    await form.get_by_label("name").fill("")  # the console refuses it: the form says so, and why
    await form.get_by_role("button", name="Save").click()
    await alert.filter(has_text="name is required").wait_for()
    await form.get_by_label("name").fill("x" * 300)  # the bus refuses it (too long): shown the same way
    await form.get_by_role("button", name="Save").click()
    await alert.filter(has_text="INVALID_DATA").wait_for()
    assert "name" in await alert.inner_text()
    await form.get_by_label("name").fill("tagged")
    await form.get_by_label("Other fields").fill("{not json")  # the console refuses it, visibly too
    await form.get_by_role("button", name="Save").click()
    await alert.filter(has_text="Other fields").wait_for()
    async with fresh_bus.connect() as ws:
        assert (await ok(ws, "OPEN", "inventory/device", objectid=device["id"]))["version"] == 2
    assert errors == []


@pytest.fixture
def lab_bus(tmp_path: Path) -> Iterator[Served]:
    """A bus of the test's own that also serves ``lab/asset`` (tests/gateway/console_app.py)."""
    with serving(tmp_path, "--app", "tests.gateway.console_app:create_app") as served:
        yield served


async def test_a_cleared_field_is_cleared_and_an_unchanged_form_is_not_saved(browser: Any, lab_bus: Served) -> None:
    async with lab_bus.connect() as ws:
        device = await ok(ws, "CREATE", "inventory/device", data={"name": "racked", "location": "rack 4"})
        asset = await ok(ws, "CREATE", "lab/asset", data={"name": "crate", "owner": "ops", "weight": 2.5})
    page = await logged_in(browser, lab_bus)
    form = await edit(page, "racked")
    await form.get_by_label("location").fill("")
    await form.get_by_role("button", name="Save").click()
    await page.locator("#status", has_text="Saved").wait_for()
    async with lab_bus.connect() as ws:
        saved = await ok(ws, "OPEN", "inventory/device", objectid=device["id"])
    # inventory/device's schema allows only a string there: the empty one, never "rack 4" again
    assert (saved["location"], saved["version"]) == ("", 2)

    form = await edit(page, "racked")  # saved as it is: nothing is written
    await form.get_by_role("button", name="Save").click()
    await form.get_by_role("alert").filter(has_text="Nothing to save").wait_for()
    async with lab_bus.connect() as ws:
        assert (await ok(ws, "OPEN", "inventory/device", objectid=device["id"]))["version"] == 2

    await choose(page, "lab/asset")
    await page.locator("tr", has_text="crate").get_by_role("button", name="Edit").click()
    form = page.locator("form", has=page.get_by_role("button", name="Save"))
    await form.get_by_label("weight").fill("")  # a number may not be emptied here: the form says so
    await form.get_by_role("button", name="Save").click()
    await form.get_by_role("alert").filter(has_text="weight cannot be emptied").wait_for()
    await form.get_by_label("weight").fill("2.5")
    await form.get_by_label("owner").fill("")  # a field whose schema allows null
    await form.get_by_role("button", name="Save").click()
    await page.locator("#status", has_text="Saved").wait_for()
    async with lab_bus.connect() as ws:
        saved = await ok(ws, "OPEN", "lab/asset", objectid=asset["id"])
    assert (saved["owner"], saved["weight"], saved["version"]) == (None, 2.5, 2)


def token_id(token: str) -> str:
    """The id of a token of the bus (its ``jti``), to revoke it by."""
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return str(claims["jti"])


async def revoke(bus: Served, token: str) -> None:
    """Revoke ``token`` as the admin, as a token that expired is refused: AUTH_FAILED."""
    async with bus.connect(token=bus.login()["data"]["token"]) as ws:
        await ok(ws, "DELETE", "auth/token", objectid=token_id(token))


async def test_the_console_refreshes_its_token_before_it_expires(browser: Any, tmp_path: Path) -> None:
    with serving(tmp_path, env={"FLOWBUS_TOKEN_LIFETIME": "3"}) as bus:
        page = await logged_in(browser, bus)
        await choose(page, "inventory/device")
        await page.get_by_role("button", name="New").wait_for()
        first = await page.evaluate("window.flowbus.token")
        await page.wait_for_function("(first) => window.flowbus.token !== first", arg=first)
        await revoke(bus, first)  # the first token is refused from now on, as when it expires
        async with bus.connect(token=bus.login()["data"]["token"]) as ws:
            await ok(ws, "CREATE", "inventory/device", data={"name": "after-the-first-token"})
        await page.locator("tr", has_text="after-the-first-token").wait_for()
        await expect(page.locator("#connection")).to_have_text(re.compile("^connected"))


async def test_a_session_that_can_no_longer_be_refreshed_asks_to_log_in_and_keeps_the_page(
    browser: Any, fresh_bus: Served
) -> None:
    page = await logged_in(browser, fresh_bus)
    await expect(page.locator("#connection")).to_have_text(re.compile("^connected"))
    await choose(page, "inventory/device")
    await page.get_by_role("button", name="New").click()
    await page.get_by_label("name").fill("typed-before")  # unsaved work, which must survive
    await revoke(fresh_bus, await page.evaluate("window.flowbus.token"))
    async with fresh_bus.connect() as ws:
        await ok(ws, "CREATE", "inventory/device", data={"name": "made-meanwhile"})

    prompt = page.get_by_role("dialog", name="Log in again")
    await prompt.wait_for()
    await expect(page.locator("#connection")).not_to_have_text(re.compile("connected"))
    await prompt.get_by_label("Password").fill(ADMIN_PASSWORD)
    await prompt.get_by_role("button", name="Log in").click()
    await prompt.wait_for(state="hidden")
    await expect(page.locator("#connection")).to_have_text(re.compile("^connected"))
    await page.locator("tr", has_text="made-meanwhile").wait_for()  # missed while logged out
    assert await page.get_by_label("name").input_value() == "typed-before"
    await page.get_by_role("button", name="Create").click()
    await page.locator("tr", has_text="typed-before").wait_for()

    await page.reload()  # the tab goes on with its session, with a token of its own
    await expect(page.locator("#connection")).to_have_text(re.compile("^connected"))
    await page.locator("#endpoints button", has_text="inventory/device").wait_for(state="attached")


async def shown_executions(page: Any) -> list[str]:
    ids: list[str] = await page.locator("#executions tr").evaluate_all("(rows) => rows.map((r) => r.dataset.id)")
    return ids


async def test_executions_are_shown_newest_first_whether_loaded_or_live(browser: Any, fresh_bus: Served) -> None:
    flow = json.loads((ROOT / "examples" / "device_approval.json").read_text())
    async with fresh_bus.connect() as ws:
        await ok(ws, "CREATE", "flows/flow", data=flow)
        older = await ok(ws, "RUN", "flows/flow", objectid=flow["name"], data={"name": "sw-1"})
        newer = await ok(ws, "RUN", "flows/flow", objectid=flow["name"], data={"name": "sw-2"})
    page = await logged_in(browser, fresh_bus)
    await choose(page, "Flows and executions")
    await page.locator(f"#executions tr[data-id='{older['id']}']").wait_for()
    assert await shown_executions(page) == [newer["id"], older["id"]]  # as LIST answers them

    await page.get_by_label(f"Input for {flow['name']}").fill('{"name": "sw-3"}')
    await page.locator("tr", has_text=flow["name"]).get_by_role("button", name="Start").click()
    started = page.locator("#status", has_text="Started")
    await started.wait_for()
    newest = (await started.inner_text()).rsplit(" ", 1)[-1]
    await page.locator(f"#executions tr[data-id='{newest}']").wait_for()
    assert await shown_executions(page) == [newest, newer["id"], older["id"]]


async def endpoints_shown(page: Any) -> list[str]:
    names: list[str] = await page.locator("#endpoints button").all_text_contents()
    return names


async def test_a_viewer_is_shown_only_what_it_may_do(browser: Any, fresh_bus: Served) -> None:
    async with fresh_bus.connect() as ws:
        await ok(ws, "CREATE", "inventory/device", data={"name": "seen-not-touched"})
        await ok(ws, "CREATE", "auth/user", data={"username": "vera", "password": "vera-password", "roles": ["viewer"]})
    page = await logged_in(browser, fresh_bus, "vera", "vera-password")
    shown = await endpoints_shown(page)
    assert {"inventory/device", "flows/flow", "auth/token", "system/endpoint"} <= set(shown)
    assert not {"auth/user", "auth/role", "auth/apikey", "flows/command", "flows/event"} & set(shown)
    await choose(page, "inventory/device")
    await page.locator("tr", has_text="seen-not-touched").wait_for()
    view = page.locator("#view")
    for action in ("New", "Edit", "Delete"):
        assert await view.get_by_role("button", name=action).count() == 0


async def test_a_run_only_endpoint_gets_a_call_form_and_no_stale_table(browser: Any, fresh_bus: Served) -> None:
    async with fresh_bus.connect() as ws:
        await ok(ws, "CREATE", "inventory/device", data={"name": "listed-before"})
    page = await logged_in(browser, fresh_bus)
    await choose(page, "inventory/device")
    await page.locator("tr", has_text="listed-before").wait_for()
    await choose(page, "flows/event")
    form = page.locator("form", has=page.get_by_role("button", name="Run"))
    await form.wait_for()
    assert await page.locator("#view table").count() == 0  # not the previous endpoint's
    await form.get_by_label("objectid").fill("nothing-waits-for-this")
    await form.get_by_label("data").fill('{"input": {"ok": true}}')
    await form.get_by_role("button", name="Run").click()
    answer = page.locator("#view output")
    await answer.filter(has_text="transitions").wait_for()
    assert json.loads(await answer.inner_text())["executions"] == []

    await form.get_by_label("data").fill("{oops")  # refused by the form, which says so
    await form.get_by_role("button", name="Run").click()
    await form.get_by_role("alert").filter(has_text="data: not JSON").wait_for()


async def test_delete_asks_first_forms_can_be_cancelled_and_logging_out_revokes_the_token(
    browser: Any, fresh_bus: Served
) -> None:
    async with fresh_bus.connect() as ws:
        device = await ok(ws, "CREATE", "inventory/device", data={"name": "doomed"})
    page = await logged_in(browser, fresh_bus)
    await choose(page, "inventory/device")
    row = page.locator("tr", has_text="doomed")
    await row.get_by_role("button", name="Delete").click()
    confirm = page.get_by_role("dialog", name="Delete")
    await expect(confirm).to_contain_text("doomed")
    await confirm.get_by_role("button", name="Cancel").click()  # kept
    await confirm.wait_for(state="hidden")
    async with fresh_bus.connect() as ws:
        await ok(ws, "OPEN", "inventory/device", objectid=device["id"])
    await row.get_by_role("button", name="Delete").click()
    await confirm.get_by_role("button", name="Delete").click()  # gone
    await row.wait_for(state="detached")
    async with fresh_bus.connect() as ws:
        assert (await call(ws, "OPEN", "inventory/device", objectid=device["id"]))["errorcode"] == "DO_NOT_EXIST"

    await page.get_by_role("button", name="New").click()
    await page.get_by_label("name").fill("never-made")
    await page.get_by_role("button", name="Cancel").click()
    await page.locator("#object-form").wait_for(state="detached")
    async with fresh_bus.connect() as ws:
        assert await ok(ws, "LIST", "inventory/device") == []

    token = await page.evaluate("window.flowbus.token")
    await page.get_by_role("button", name="Log out").click()
    await page.locator("#login").wait_for()
    await expect(page.locator("#connection")).to_have_text("")
    async with fresh_bus.connect(token=None) as ws:
        answer = await call(ws, "LIST", "inventory/device", token=token)
    assert answer["errorcode"] == "AUTH_FAILED"  # the bus no longer takes it
    await page.reload()  # and the tab has forgotten it
    await page.locator("#login").get_by_label("User").wait_for()
    await expect(page.locator("#connection")).to_have_text("")
    assert await page.locator("#endpoints button").count() == 0


def overflow(page: Any) -> Any:
    """How many pixels the page is wider than its window (0: nothing to scroll sideways)."""
    return page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")


@pytest.mark.parametrize("size", [(390, 844), (360, 740)], ids=["390", "360"])
async def test_a_phone_sized_window_fits_its_width_keeps_the_endpoints_in_a_menu_and_shows_forms(
    browser: Any, fresh_bus: Served, size: tuple[int, int]
) -> None:
    flow = json.loads((ROOT / "examples" / "device_approval.json").read_text())
    async with fresh_bus.connect() as ws:
        devices = [{"name": f"core-sw-{n}", "location": "rack 4", "tags": ["core", "lab"]} for n in range(20)]
        await ok(ws, "CREATE", "inventory/device", data=devices)
        await ok(ws, "CREATE", "flows/flow", data=flow)
        await ok(ws, "RUN", "flows/flow", objectid=flow["name"], data={"name": "sw-1"})
    width, height = size
    page = await browser.new_page(viewport={"width": width, "height": height})
    page.set_default_timeout(15_000)
    await page.goto(fresh_bus.http_url + "/")
    assert await overflow(page) == 0
    form = page.locator("#login")
    await form.get_by_label("User").fill("admin")
    await form.get_by_label("Password").fill(ADMIN_PASSWORD)
    await form.get_by_role("button", name="Log in").click()

    menu = page.get_by_role("button", name="Endpoints")
    await menu.wait_for()  # the endpoints are behind it, not above the page
    device_button = page.locator("#endpoints").get_by_role("button", name="inventory/device")
    assert await device_button.is_hidden()
    await menu.click()
    await device_button.click()
    await page.locator("tr", has_text="core-sw-19").wait_for()
    assert await device_button.is_hidden()  # the menu closed
    await expect(page.locator("#view h2")).to_be_in_viewport()
    await expect(page.locator("#view tbody tr").first).to_be_in_viewport()
    assert await overflow(page) == 0

    await page.locator("tr", has_text="core-sw-0").get_by_role("button", name="Edit").click()
    editor = page.locator("#object-form")
    await expect(editor).to_be_in_viewport()  # drawn below the table, and scrolled to
    assert await overflow(page) == 0
    await editor.get_by_role("button", name="Cancel").click()
    await page.get_by_role("button", name="New").click()
    await expect(page.locator("#object-form")).to_be_in_viewport()

    await choose(page, "Flows and executions")
    await page.locator("#executions tr").first.wait_for()
    assert await overflow(page) == 0
    await choose(page, "flows/event")  # the call form and its answer
    await page.get_by_label("objectid").fill("nothing-waits-for-this")
    await page.get_by_role("button", name="Run").click()
    await page.locator("#view output").filter(has_text="transitions").wait_for()
    assert await overflow(page) == 0


async def test_before_logging_in_only_the_login_shows_and_nothing_is_missing(browser: Any, fresh_bus: Served) -> None:
    page = await browser.new_page(viewport={"width": 1100, "height": 700})
    page.set_default_timeout(15_000)
    missing: list[str] = []

    def seen(response: Any) -> None:
        if response.status >= 400:
            missing.append(response.url)

    page.on("response", seen)
    await page.goto(fresh_bus.http_url + "/", wait_until="networkidle")
    await expect(page.locator("#login")).to_be_visible()
    await expect(page.get_by_role("heading", name="Endpoints")).to_be_hidden()
    await expect(page.locator("#app")).to_be_hidden()
    await expect(page.locator("#connection")).to_have_text("")
    form = page.locator("#login")
    await form.get_by_label("User").fill("admin")
    await form.get_by_label("Password").fill(ADMIN_PASSWORD)
    await form.get_by_role("button", name="Log in").click()
    await expect(page.get_by_role("heading", name="Endpoints")).to_be_visible()
    await page.reload(wait_until="networkidle")
    await expect(page.locator("#connection")).to_have_text(re.compile("^connected"))
    assert missing == []
    # Its icon is declared and served, so browsers do not ask for /favicon.ico (a 404) on every
    # load (headless Chromium asks for no icon at all, so the test fetches it itself).
    icon = await page.locator("link[rel=icon]").get_attribute("href")
    response = await page.request.get(fresh_bus.http_url + icon)
    assert (response.status, response.headers["content-type"]) == (200, "image/svg+xml")


async def test_rows_show_their_fields_pages_end_and_live_rows_keep_to_the_page_and_search(
    browser: Any, fresh_bus: Served
) -> None:
    devices = [{"name": f"dev-{n:02}", "location": f"rack {n}", "tags": ["core"]} for n in range(21)]
    async with fresh_bus.connect() as ws:
        await ok(ws, "CREATE", "inventory/device", data=devices)
    page = await logged_in(browser, fresh_bus)

    await choose(page, "auth/user")  # a user's name is its username
    await expect(page.locator("tr", has_text="admin").locator("td[data-label=username]")).to_have_text("admin")
    await choose(page, "inventory/device")
    first = page.locator("tr", has_text="dev-00")
    await expect(first.locator("td[data-label=location]")).to_have_text("rack 0")
    await expect(first.locator("td[data-label=tags]")).to_have_text("core")

    following, previous = page.get_by_role("button", name="Next"), page.get_by_role("button", name="Previous")
    await expect(previous).to_be_disabled()
    await following.click()
    await page.locator("tr", has_text="dev-20").wait_for()
    await expect(following).to_be_disabled()  # the last page: nothing after it
    async with fresh_bus.connect() as ws:  # a new device belongs at the end of the last page
        await ok(ws, "CREATE", "inventory/device", data={"name": "dev-21"})
    await page.locator("tr", has_text="dev-21").wait_for()

    await previous.click()
    await page.locator("tr", has_text="dev-00").wait_for()
    async with fresh_bus.connect() as ws:  # not on the first page; the change after it is shown
        await ok(ws, "CREATE", "inventory/device", data={"name": "dev-22"})
        await ok(ws, "UPDATE", "inventory/device", objectid=(await ok(ws, "LIST"))[0]["id"], data={"location": "moved"})
    await expect(first.locator("td[data-label=location]")).to_have_text("moved")
    assert await page.locator("tr", has_text="dev-22").count() == 0

    await page.get_by_label("Search").fill("dev-05")
    await page.get_by_role("button", name="Search").click()
    found = page.locator("tr", has_text="dev-05")
    await found.wait_for()
    async with fresh_bus.connect() as ws:  # a new device is not one of the search's results
        await ok(ws, "CREATE", "inventory/device", data={"name": "unrelated"})
        dev05 = (await ok(ws, "LIST", parameters={"name": "dev-05"}))[0]
        await ok(ws, "UPDATE", "inventory/device", objectid=dev05["id"], data={"location": "found"})
    await expect(found.locator("td[data-label=location]")).to_have_text("found")
    assert await page.locator("tr", has_text="unrelated").count() == 0
    await expect(following).to_be_disabled()


async def test_a_user_input_form_offers_its_choices_and_marks_what_is_required(browser: Any, fresh_bus: Served) -> None:
    schema = {
        "type": "object",
        "required": ["decision"],
        "properties": {"decision": {"enum": ["approve", "reject"]}, "note": {"type": "string"}},
    }
    flow = {
        "name": "ask",
        "startState": "ask",
        "states": {
            "ask": {
                "action": "input",
                "schema": schema,
                "result": "form",
                "transitions": [{"on": "success", "to": "done"}],
            },
            "done": {"action": "end", "output": "=vars.form"},
        },
    }
    async with fresh_bus.connect() as ws:
        await ok(ws, "CREATE", "flows/flow", data=flow)
        execution = await ok(ws, "RUN", "flows/flow", objectid="ask", parameters={"wait": True})
    page = await logged_in(browser, fresh_bus)
    await choose(page, "Flows and executions")
    await page.locator(f"#executions tr[data-id='{execution['id']}']").get_by_role("button", name="Answer").click()
    form = page.locator("form", has=page.get_by_role("button", name="Answer"))
    decision = form.get_by_role("combobox", name="decision")
    assert await decision.get_attribute("aria-required") == "true"
    await expect(form.locator("label", has_text="decision")).to_contain_text("*")
    assert await form.get_by_label("note").get_attribute("aria-required") is None
    await form.get_by_role("button", name="Answer").click()  # nothing chosen: the form says so
    await form.get_by_role("alert").filter(has_text="decision is required").wait_for()
    await decision.select_option("reject")
    await form.get_by_role("button", name="Answer").click()
    await page.locator(f"#executions tr[data-id='{execution['id']}'][data-status=SUCCESS]").wait_for()
    async with fresh_bus.connect() as ws:
        assert (await ok(ws, "OPEN", "flows/execution", objectid=execution["id"]))["output"] == {"decision": "reject"}
