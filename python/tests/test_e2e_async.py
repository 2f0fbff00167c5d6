"""The async forms of the spec's settings (spec/003, spec/004): async
callables for the user's cap and grant, credits_available_projects as an
async callable, credits_user_project, async billing callables and an async
post-round hook without arguments."""

from __future__ import annotations

import pytest
from conftest import wait_for

CONFIG = """
import asyncio


async def user_cap(user_name, user_groups, is_admin):
    await asyncio.sleep(0.01)
    if user_name == "max":
        return 150
    if is_admin:
        return 500
    return 100


async def user_grant_value(user_name, user_groups, is_admin):
    return 20 if is_admin else 10


def user_grant_interval(user_name, user_groups, is_admin):
    if user_name == "max":
        return 300
    return 600


c.MixinAuthenticator.credits_user_cap = user_cap
c.MixinAuthenticator.credits_user_grant_value = user_grant_value
c.MixinAuthenticator.credits_user_grant_interval = user_grant_interval


async def available_projects():
    await asyncio.sleep(0.01)
    return [
        {"name": "community1", "cap": 8, "grant_value": 20, "grant_interval": 600},
        {"name": "community2", "cap": 500, "grant_value": 10, "grant_interval": 600},
    ]


c.MixinAuthenticator.credits_available_projects = available_projects


async def credits_user_project(user_name, user_groups, is_admin):
    if user_name.startswith("c1-"):
        return "community1"
    return None


c.MixinAuthenticator.credits_user_project = credits_user_project


async def hook():
    with open(os.path.join(TEST_DIR, "hook.log"), "a") as f:
        f.write("round\\n")


c.MixinAuthenticator.credits_task_post_hook = hook


async def get_billing_value(spawner):
    values = {"normal": 5, "expensive": 10}
    return values.get(spawner.user_options.get("mode", "normal"), 5)


def get_billing_interval(spawner):
    if spawner.user_options.get("slowinterval"):
        return 1200
    return 3


c.Spawner.billing_value = get_billing_value
c.Spawner.billing_interval = get_billing_interval
"""


@pytest.fixture(scope="module")
def hub(hub_factory):
    return hub_factory(CONFIG, name="async")


def test_async_callables_give_each_user_their_settings(hub):
    expected = {"max": (150, 10, 300), "admin": (500, 20, 600), "alice": (100, 10, 600)}
    for name, (cap, grant_value, grant_interval) in expected.items():
        session = hub.login(name)
        body = hub.api("GET", "credits", session=session).json()
        assert (body["balance"], body["cap"], body["grant_value"], body["grant_interval"]) == (
            cap,
            cap,
            grant_value,
            grant_interval,
        ), body
        assert body["project"] is None

    session = hub.login("c1-carla")
    token = hub.new_token(session, "c1-carla")
    me = hub.service("GET", "api/v1/me", token=token).json()
    project = me["pools"][0]["project"]
    assert project["name"] == "community1"
    assert (project["balance"], project["cap"], project["grant_value"], project["grant_interval"]) == (
        8,
        8,
        20,
        600,
    )
    # Both projects of the async callable are known to the service.
    r = hub.service("GET", "api/v1/projects")
    assert r.status_code == 200, r.text
    names = {p["name"] for p in r.json()["items"]}
    assert {"community1", "community2"} <= names


def test_project_from_async_callables_pays_first(hub):
    name = "c1-carla"
    session = hub.login(name)
    r = hub.spawn(session, name, {"mode": "expensive"})  # 10 credits every 3 seconds
    assert r.status_code in (201, 202), r.text
    hub.wait_ready(name)

    def two_charges():
        return len([e for e in hub.journal(name) if e["kind"] == "charge"]) >= 2

    wait_for(two_charges, 20, 0.5, "two charges")
    hub.stop(name)
    project = [e for e in hub.project_journal("community1") if e["kind"] == "charge"]
    user = [e for e in hub.journal(name) if e["kind"] == "charge"]
    # Period 0: the project's 8, then 2 from the user; period 1: all 10 from the user.
    assert [(e["period"], e["delta"]) for e in project] == [(0, -8)], project
    assert [(e["period"], e["delta"]) for e in user[:2]] == [(0, -2), (1, -10)], user
    view = hub.credits(name)
    assert view["pools"][0]["project"]["balance"] == 0


def test_async_billing_callable_sets_the_servers_cost(hub):
    name = "alice"
    session = hub.login(name)
    r = hub.spawn(session, name, {"slowinterval": True})
    assert r.status_code in (201, 202), r.text
    hub.wait_ready(name)
    server = wait_for(lambda: hub.credits(name)["servers"], 10, 0.3, "server known to the service")[0]
    assert server["billing_value"] == 5 and server["billing_interval"] == 1200
    wait_for(lambda: hub.balance(name) == 95, 10, 0.3, "first charge")
    hub.stop(name)


def test_async_post_hook_without_arguments_runs(hub):
    log = hub.dir / "hook.log"

    def count():
        return log.exists() and len(log.read_text().splitlines())

    first = count() or 0
    wait_for(lambda: (count() or 0) >= first + 2, 15, 0.5, "hook lines")
