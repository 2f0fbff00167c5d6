"""One hub with the spec's single-pool config (sync callables, projects as a
list), shared by the tests of this module: credits at login, billing, the
project paying first, stops, refusals, the spawn progress message, grants,
admin changes and the post-round hook. Each test uses users of its own."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime

import pytest
import requests
from conftest import run_in_thread, sse_events, wait_for

CONFIG = """
import json


def user_cap(username, user_groups=[], is_admin=False):
    if username.endswith("mycompany.org"):
        return 1000
    if username.startswith("poor"):
        return 15
    if username.startswith("tiny"):
        return 12
    if username.startswith("badcap"):
        return "lots"
    return 100


def user_grant_value(user_name, user_groups, is_admin):
    return 5 if user_name.startswith("grant") else 1


def user_grant_interval(user_name, user_groups, is_admin):
    return 2 if user_name.startswith("grant") else 3600


c.MixinAuthenticator.credits_user_cap = user_cap
c.MixinAuthenticator.credits_user_grant_value = user_grant_value
c.MixinAuthenticator.credits_user_grant_interval = user_grant_interval
c.MixinAuthenticator.credits_available_projects = [
    {"name": "teamproj", "cap": 10, "grant_value": 0, "grant_interval": 3600},
    {"name": "adjproj", "cap": 50, "grant_value": 5, "grant_interval": 600},
]


def user_project(user_name, user_groups, is_admin):
    if user_name.startswith("team"):
        return "teamproj"
    if user_name.startswith("ghost"):
        return "ghostproj"  # not in credits_available_projects
    return None


c.MixinAuthenticator.credits_user_project = user_project


def post_hook(summary):
    with open(os.path.join(TEST_DIR, "rounds.log"), "a") as f:
        f.write(json.dumps(summary) + "\\n")


c.MixinAuthenticator.credits_task_post_hook = post_hook


def get_billing_value(spawner):
    billing_value = 5
    if "gpus" in spawner.user_options.keys():
        billing_value += int(spawner.user_options["gpus"]) * 10
    return billing_value


c.Spawner.billing_value = get_billing_value
c.Spawner.billing_interval = 4
"""

INTERVAL = 4
ROUND = 2


@pytest.fixture(scope="module")
def hub(hub_factory):
    return hub_factory(CONFIG, name="main")


def iso(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def charge_entries(journal):
    return [e for e in journal if e["kind"] == "charge"]


def assert_periods_once(entries, server=""):
    """Each period of the server appears once, consecutively from 0."""
    periods = [e["period"] for e in entries if e.get("server") == server]
    assert periods == list(range(len(periods))), f"periods not consecutive or repeated: {periods}"


# ---- 1. login creates credits --------------------------------------------


def test_login_creates_credits_with_cap_from_sync_callable(hub):
    expected = {"alice": 100, "carl@mycompany.org": 1000, "poor-paula": 15}
    for name, cap in expected.items():
        session = hub.login(name)
        r = hub.api("GET", "credits", session=session)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["name"] == name
        assert body["balance"] == cap, body
        assert body["cap"] == cap, body
        assert body["grant_value"] == 1
        assert body["grant_interval"] == 3600
        assert body["project"] is None

    # The service's own API, with a user's token.
    session = hub.login("alice")
    token = hub.new_token(session, "alice")
    r = hub.service("GET", "api/v1/me", token=token)
    assert r.status_code == 200, r.text
    me = r.json()
    assert me["name"] == "alice"
    assert me["servers"] == []
    [pool] = me["pools"]
    assert pool["name"] == "default"
    assert (pool["balance"], pool["cap"], pool["grant_value"], pool["grant_interval"]) == (100, 100, 1, 3600)
    assert pool["next_grant_at"] is None  # full: no grant pending
    assert pool["project"] is None and pool["user_options"] is None

    # A user can't read someone else's credits; no token is a 401, not a redirect.
    r = hub.service("GET", "api/v1/users/poor-paula", token=token)
    assert r.status_code == 403, r.text
    assert "message" in r.json()
    r = hub.service("GET", "api/v1/me", token="", allow_redirects=False)
    assert r.status_code == 401, r.text
    assert r.json()["status"] == 401
    # The page sends a browser without a login to the hub's login.
    r = hub.service("GET", "", token="", allow_redirects=False)
    assert r.status_code in (302, 303, 307), r.status_code
    assert "/hub/" in r.headers["Location"], r.headers["Location"]
    # The live stream starts with the same view as api/v1/me.
    r = requests.get(
        hub.service_url + "api/v1/me/events",
        headers={"Authorization": f"token {token}"},
        stream=True,
        timeout=10,
    )
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/event-stream")
    [event] = sse_events(r, lambda e: True, 10)
    assert event["name"] == "alice" and event["pools"][0]["balance"] == 100


def test_login_places_a_project_member_in_the_project(hub):
    session = hub.login("team-tina")
    body = hub.api("GET", "credits", session=session).json()
    assert body["balance"] == 100
    assert body["project"]["name"] == "teamproj"
    assert body["project"]["cap"] == 10
    assert body["project"]["balance"] == 10


# ---- 2. a running server is charged each period ------------------------------


def test_running_server_is_charged_each_period(hub):
    name = "payer"
    session = hub.login(name)
    r = hub.spawn(session, name, {})
    assert r.status_code in (201, 202), r.text
    hub.wait_ready(name)

    # Watch the balance fall by billing_value per billing_interval.
    samples = []

    def fallen_three_times():
        balance = hub.api("GET", "credits", session=session).json()["balance"]
        if not samples or samples[-1][1] != balance:
            samples.append((time.monotonic(), balance))
        return balance <= 85

    wait_for(fallen_three_times, 30, 0.2, "three charges")
    values = [b for _, b in samples]
    assert values[:1] in ([100], [95]), values
    drops = [b for b in values if b < 100]
    assert drops[:3] == [95, 90, 85], f"balance did not fall by 5 per period: {values}"
    times = {b: t for t, b in samples}
    gap = times[85] - times[90]
    assert INTERVAL - ROUND - 1 <= gap <= INTERVAL + ROUND + 1, (
        f"periods {gap:.1f}s apart, expected about {INTERVAL}"
    )

    view = hub.credits(name)
    [server] = view["servers"]
    assert server["billing_value"] == 5 and server["billing_interval"] == INTERVAL
    assert server["pool"] == "default"
    assert server["next_charge_at"].endswith("Z")

    journal = hub.journal(name)
    entries = charge_entries(journal)
    assert len(entries) >= 3
    assert all(e["delta"] == -5 for e in entries), entries
    assert_periods_once(entries)
    stamps = [iso(e["time"]) for e in entries]
    for a, b in zip(stamps[:-1], stamps[1:], strict=True):
        assert INTERVAL - 1 <= b - a <= INTERVAL + 1, f"charge times {stamps}"
    assert sum(e["delta"] for e in journal) == view["pools"][0]["balance"]

    # After a stop, nothing more is charged.
    hub.stop(name)
    time.sleep(1)
    before = hub.balance(name)
    time.sleep(INTERVAL + ROUND + 1)
    assert hub.balance(name) == before
    assert hub.credits(name)["servers"] == []


# ---- 3. the project pays first ----------------------------------------------


def test_project_pays_first_then_the_user(hub):
    name = "team-tom"
    session = hub.login(name)
    r = hub.spawn(session, name, {"gpus": 1})  # 15 credits per period
    assert r.status_code in (201, 202), r.text
    hub.wait_ready(name)

    def two_charges():
        return len(charge_entries(hub.journal(name))) >= 2

    wait_for(two_charges, 30, 0.5, "two charges")
    hub.stop(name)

    project = hub.project_journal("teamproj")
    project_charges = [e for e in charge_entries(project) if e.get("user") == name]
    user_charges = charge_entries(hub.journal(name))
    # Period 0: the project gives all it has (10), the user the rest (5);
    # period 1: the project is empty, the user pays all 15.
    assert [(e["period"], e["delta"]) for e in project_charges] == [(0, -10)], project_charges
    assert [(e["period"], e["delta"]) for e in user_charges[:2]] == [(0, -5), (1, -15)], user_charges
    assert project_charges[0]["balance_after"] == 0
    body = hub.api("GET", "credits", session=session).json()
    assert body["project"]["balance"] == 0
    assert body["balance"] == 100 - 5 - 15 * (len(user_charges) - 1)


# ---- 4. stopped when credits run out ----------------------------------------


def test_server_is_stopped_when_credits_run_out(hub):
    name = "tiny-tim"  # cap 12, 5 per period: two periods paid, the third not
    session = hub.login(name)
    token = hub.new_token(session, name)
    r = hub.spawn(session, name, {})
    assert r.status_code in (201, 202), r.text
    hub.wait_ready(name)
    ready_at = time.monotonic()

    hub.wait_gone(name, timeout=3 * INTERVAL + 3 * ROUND + 10)
    took = time.monotonic() - ready_at
    # The third period starts at 2*INTERVAL; the stop comes within one round after.
    assert took <= 2 * INTERVAL + ROUND + 3, f"stopped {took:.1f}s after ready"

    me = hub.service("GET", "api/v1/me", token=token).json()
    assert me["servers"] == []
    [stopped] = me["stopped"]
    assert stopped["name"] == ""
    assert "credits ran out" in stopped["reason"]
    assert "5 credits every 4 seconds" in stopped["reason"]
    assert "2 of 12" in stopped["reason"]
    assert stopped["stopped_at"].endswith("Z")
    assert me["pools"][0]["balance"] == 2
    entries = charge_entries(hub.journal(name))
    assert [(e["period"], e["delta"]) for e in entries] == [(0, -5), (1, -5)]
    # By the service's clock: stopped within a round of the unpaid period's start.
    unpaid_from = iso(entries[0]["time"]) + 2 * INTERVAL
    assert -1 <= iso(stopped["stopped_at"]) - unpaid_from <= ROUND + 2, (stopped, entries)

    model = hub.user_model(name)
    assert model["servers"] == {}
    assert model["server"] is None


# ---- 5. a poor user's spawn is refused, with the message ---------------------


def spawn_refusal(hub, who, name, options=None, server_name=""):
    """(status, message) of a refused spawn: the 403 of the POST, or (when
    the POST returned before the refusal) the failed progress event."""
    r = hub.spawn(who, name, options, server_name)
    if r.status_code in (201, 202):
        events = hub.progress(name, server_name)
        failed = [e for e in events if e.get("failed")]
        assert failed, f"spawn was not refused: {r.status_code} {events}"
        return r.status_code, failed[-1]["message"]
    return r.status_code, r.json()["message"]


def test_poor_users_spawn_is_refused_with_a_clear_message(hub):
    name = "poor-pete"  # cap 15, grant 1 per hour
    session = hub.login(name)
    hub.set_pool(name, balance=3, reason="e2e: make poor")
    status, message = spawn_refusal(hub, session, name, {})
    assert status == 403, message
    assert "Not enough credits" in message
    assert "needs 5 credits every 4 seconds" in message
    assert "3 of 15" in message
    grant = re.search(r"More credits arrive at (\S+Z)", message)
    assert grant, message
    next_grant = hub.pool(name)["next_grant_at"]
    assert grant.group(1) == next_grant
    # Nothing started, nothing charged, nothing promised.
    assert hub.server_model(name) is None
    assert hub.balance(name) == 3
    assert charge_entries(hub.journal(name)) == []

    # A spawn costing more than the user holds, with the balance full.
    name = "poor-polly"
    session = hub.login(name)
    status, message = spawn_refusal(hub, session, name, {"gpus": 2})
    assert status == 403
    assert "needs 25 credits every 4 seconds" in message and "15 of 15" in message, message
    assert hub.server_model(name) is None


def test_invalid_value_from_a_callable_refuses_the_spawn_naming_the_setting(hub):
    name = "badcap-bob"  # user_cap returns "lots"
    session = hub.login(name)  # login itself goes on
    status, message = spawn_refusal(hub, session, name, {})
    assert status == 403
    assert "credits_user_cap" in message and "'lots'" in message, message
    assert "tell an administrator" in message
    assert hub.server_model(name) is None

    name = "ghost-gil"  # credits_user_project names a project that is not configured
    session = hub.login(name)
    status, message = spawn_refusal(hub, session, name, {})
    assert status == 403
    assert "'ghostproj'" in message and "credits_available_projects" in message, message
    assert hub.server_model(name) is None


# ---- 6. the progress message -----------------------------------------------


def test_spawn_progress_shows_the_cost(hub):
    # jupyterhub-singleuser (user name real*): a real, slow-starting server.
    name = "real-rosa"
    session = hub.login(name)
    spawn = run_in_thread(hub.spawn, session, name, {})

    def pending():
        model = hub.server_model(name)
        return model and model.get("pending") == "spawn"

    wait_for(pending, 30, 0.1, "spawn pending")
    events = hub.progress(name, timeout=120)
    spawn.join(60)
    messages = [e.get("message", "") for e in events]
    assert any("This server costs 5 credits per 4 seconds" in m for m in messages), messages
    assert events[-1].get("ready"), events
    hub.wait_ready(name)
    hub.stop(name)


def test_spawn_progress_shows_each_spawns_own_cost(hub):
    """The progress stream opened right away shows the cost of this spawn,
    not of an earlier one (the minimal server, kept pending for a while)."""
    name = "slowpoke"
    session = hub.login(name)
    for options, cost in (({"delay": 2, "gpus": 2}, 25), ({"delay": 2}, 5)):
        spawn = run_in_thread(hub.spawn, session, name, options)

        def pending():
            model = hub.server_model(name)
            return model and model.get("pending") == "spawn"

        wait_for(pending, 30, 0.05, "spawn pending")
        events = hub.progress(name)
        spawn.join(30)
        messages = [e.get("message", "") for e in events]
        assert f"This server costs {cost} credits per 4 seconds." in messages, (options, messages)
        assert not [m for m in messages if "credits per" in m and f" {cost} " not in m], messages
        hub.wait_ready(name)
        hub.stop(name)


# ---- 7. grants refill up to the cap ------------------------------------------


def test_grants_refill_up_to_the_cap(hub):
    name = "grant-gus"  # cap 100, 5 credits every 2 seconds
    hub.login(name)
    hub.set_pool(name, cap=20, balance=3, reason="e2e: grants")
    seen = []

    def full():
        pool = hub.pool(name)
        if not seen or seen[-1] != pool["balance"]:
            seen.append(pool["balance"])
        return pool["balance"] == 20 and pool

    pool = wait_for(full, 20, 0.3, "refilled to cap")
    assert pool["next_grant_at"] is None
    assert seen[0] in (3, 8), seen
    assert all(b <= 20 for b in seen), seen
    assert seen == sorted(seen), seen
    assert all((b - 3) % 5 == 0 for b in seen if b != 20), seen
    time.sleep(3)
    assert hub.balance(name) == 20
    # The next write journals the grants (+17 in all), capped.
    hub.set_pool(name, grant_value=6, reason="e2e: settle")
    journal = hub.journal(name)
    grants = [e["delta"] for e in journal if e["kind"] == "grant"]
    assert sum(grants) == 17, journal
    assert sum(e["delta"] for e in journal) == 20, journal
    assert journal[-1]["balance_after"] == 20


@pytest.mark.xfail(
    strict=True,
    reason=(
        "service/ledger (Rust): grants accrue lazily in the views but are journaled only at the "
        "pool's next write, so between writes GET api/v1/users/{name} shows balance 20 while "
        "GET api/v1/users/{name}/journal still ends at balance_after 3 and sums to 3; DESIGN §3.7: "
        "every change of a balance is a journal entry and a pool's balance always equals the sum "
        "of its journal"
    ),
)
def test_journal_sums_to_the_balance_shown_while_grants_accrue(hub):
    name = "grant-gwen"  # 5 credits every 2 seconds
    hub.login(name)
    hub.set_pool(name, cap=20, balance=3, reason="e2e: grants")
    wait_for(lambda: hub.balance(name) == 20, 20, 0.3, "refilled to cap")
    journal = hub.journal(name)
    assert journal[-1]["balance_after"] == 20, journal
    assert sum(e["delta"] for e in journal) == hub.balance(name), journal


# ---- 8. admin changes --------------------------------------------------------

BAD_VALUES = [
    ("string", {"balance": "10"}),
    ("float", {"balance": 1.5}),
    ("whole float", {"cap": 10.0}),
    ("bool", {"cap": True}),
    ("null", {"balance": None}),
    ("negative", {"balance": -1}),
    ("huge", {"cap": 2**53}),
    ("enormous", {"cap": 10**30}),
    ("zero interval", {"grant_interval": 0}),
    ("unknown key", {"balanse": 5}),
    ("balance above cap", {"balance": 60, "cap": 50}),
    ("one bad of two", {"balance": 7, "cap": -3}),
    ("empty", {}),
]
BAD_BODIES = [("not JSON", b"balance=5"), ("a list", b"[1, 2]"), ("a string", b'"x"')]


def pool_fields(pool):
    return {k: pool[k] for k in ("balance", "cap", "grant_value", "grant_interval")}


def test_admin_changes_through_the_v1_api(hub):
    name = "adj-amy"
    session = hub.login(name)
    user_token = hub.new_token(session, name)
    path = f"api/v1/users/{name}/pools/default"

    r = hub.service("PATCH", path, json={"balance": 40, "reason": "e2e good"})
    assert r.status_code == 200, r.text
    assert r.json()["balance"] == 40
    r = hub.service("PATCH", path, json={"balance": 0})
    assert r.status_code == 200 and r.json()["balance"] == 0
    r = hub.service("PATCH", path, json={"cap": 2**53 - 1, "grant_value": 0, "grant_interval": 7})
    assert r.status_code == 200, r.text
    r = hub.service("PATCH", path, json={"cap": 80, "balance": 50, "grant_value": 2, "grant_interval": 60})
    assert r.status_code == 200, r.text
    before = pool_fields(hub.pool(name))
    assert before == {"balance": 50, "cap": 80, "grant_value": 2, "grant_interval": 60}
    adjust = [e for e in hub.journal(name) if e["kind"] == "adjust"]
    assert adjust and adjust[0]["actor"] == "admin" and adjust[0]["reason"] == "e2e good"

    for label, body in BAD_VALUES:
        r = hub.service("PATCH", path, json=body)
        assert r.status_code == 400, f"{label}: {r.status_code} {r.text}"
        err = r.json()
        assert err["status"] == 400 and err["message"], f"{label}: {err}"
        assert pool_fields(hub.pool(name)) == before, label
    for label, raw in BAD_BODIES:
        r = hub.service("PATCH", path, data=raw, headers={"Content-Type": "application/json"})
        assert r.status_code == 400, f"{label}: {r.status_code} {r.text}"
        assert r.json()["message"], label
        assert pool_fields(hub.pool(name)) == before, label

    # Messages name the field and the value.
    msg = hub.service("PATCH", path, json={"cap": -1}).json()["message"]
    assert "cap" in msg and "-1" in msg
    msg = hub.service("PATCH", path, json={"balanse": 5}).json()["message"]
    assert "balanse" in msg

    # Non-admins are refused; unknown users and pools are 404.
    r = hub.service("PATCH", path, json={"balance": 80}, token=user_token)
    assert r.status_code == 403, r.text
    assert r.json()["status"] == 403
    r = hub.service("PATCH", path, json={"balance": 80}, token="")
    assert r.status_code == 401
    assert pool_fields(hub.pool(name)) == before
    r = hub.service("PATCH", "api/v1/users/nobody-at-all/pools/default", json={"balance": 1})
    assert r.status_code == 404, r.text
    r = hub.service("PATCH", f"api/v1/users/{name}/pools/nopool", json={"balance": 1})
    assert r.status_code == 404, r.text

    # Admin listings and metrics; not for users.
    r = hub.service("GET", "api/v1/users?limit=2")
    assert r.status_code == 200 and len(r.json()["items"]) == 2 and r.json()["next"], r.text
    assert hub.service("GET", "api/v1/users", token=user_token).status_code == 403
    r = hub.service("GET", "metrics")
    assert r.status_code == 200 and "# TYPE" in r.text, r.text[:200]
    assert hub.service("GET", "metrics", token=user_token).status_code == 403

    # Projects.
    r = hub.service("PATCH", "api/v1/projects/adjproj", json={"cap": 30, "reason": "e2e"})
    assert r.status_code == 200, r.text
    assert r.json()["cap"] == 30 and r.json()["balance"] == 30  # clamped from 50
    [clamp] = [e for e in hub.project_journal("adjproj") if e["kind"] == "clamp"]
    assert (clamp["delta"], clamp["balance_after"]) == (-20, 30), clamp
    r = hub.service("PATCH", "api/v1/projects/adjproj", json={"project": "x"})
    assert r.status_code == 400
    r = hub.service("PATCH", "api/v1/projects/adjproj", json={"balance": 5}, token=user_token)
    assert r.status_code == 403
    r = hub.service("PATCH", "api/v1/projects/noproj", json={"balance": 5})
    assert r.status_code == 404
    assert hub.project("adjproj")["balance"] == 30


def test_admin_changes_through_the_compatibility_api(hub):
    name = "adj-ann"
    session = hub.login(name)
    user_token = hub.new_token(session, name)
    path = f"credits/user/{name}"

    r = hub.api("POST", path, json={"balance": 40, "cap": 90, "grant_value": 3, "grant_interval": 120})
    assert r.status_code == 200, r.text
    before = pool_fields(hub.pool(name))
    assert before == {"balance": 40, "cap": 90, "grant_value": 3, "grant_interval": 120}

    for label, body in BAD_VALUES:
        r = hub.api("POST", path, json=body)
        assert 400 <= r.status_code < 500, f"{label}: {r.status_code} {r.text}"
        err = r.json()
        assert err["message"], f"{label}: {err}"
        assert pool_fields(hub.pool(name)) == before, label
    for label, raw in BAD_BODIES:
        r = hub.api("POST", path, data=raw, headers={"Content-Type": "application/json"})
        assert r.status_code == 400, f"{label}: {r.status_code} {r.text}"
        assert r.json()["message"], label
        assert pool_fields(hub.pool(name)) == before, label

    # The original package's project_name moves the user into a project.
    r = hub.api("POST", path, json={"project_name": "adjproj"})
    assert r.status_code == 200, r.text
    assert hub.pool(name)["project"]["name"] == "adjproj"
    r = hub.api("POST", path, json={"project_name": "no-such-project"})
    assert 400 <= r.status_code < 500, r.text
    assert hub.pool(name)["project"]["name"] == "adjproj"

    # Non-admins: 403 from the hub (with a cookie session or a token).
    r = hub.api("POST", path, json={"balance": 1}, token=user_token)
    assert r.status_code == 403, r.text
    r = hub.api("POST", path, json={"balance": 1}, session=session)
    assert r.status_code == 403, r.text
    r = hub.api("POST", "credits/project/adjproj", json={"balance": 1}, token=user_token)
    assert r.status_code == 403, r.text
    assert pool_fields(hub.pool(name)) == before

    # Projects.
    r = hub.api("POST", "credits/project/adjproj", json={"balance": 12})
    assert r.status_code == 200, r.text
    assert hub.project("adjproj")["balance"] == 12
    for label, body in BAD_VALUES:
        r = hub.api("POST", "credits/project/adjproj", json=body)
        assert 400 <= r.status_code < 500, f"{label}: {r.status_code} {r.text}"
        assert r.json()["message"]
    r = hub.api("POST", "credits/project/adjproj", data=b"{", headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    r = hub.api("POST", "credits/project/no-such-project", json={"balance": 1})
    assert r.status_code == 404, r.text
    assert hub.project("adjproj")["balance"] == 12

    # The user reads the change through the compatibility GET.
    body = hub.api("GET", "credits", token=user_token).json()
    assert body["balance"] == 40 and body["project"]["name"] == "adjproj"


# ---- 12. credits_task_post_hook ------------------------------------------------


def test_post_hook_runs_in_the_hub_after_rounds(hub):
    log = hub.dir / "rounds.log"

    def lines():
        try:
            return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        except FileNotFoundError:
            return []

    first = len(lines())
    found = wait_for(lambda: len(lines()) >= first + 2 and lines(), 4 * ROUND + 10, 0.5, "two more rounds")
    summary = found[-1]
    assert {"periods_charged", "credits_charged", "stopped"} <= set(summary), summary
    # A round that charges is reported with its figures.
    session = hub.login("hooked-hank")
    assert hub.spawn(session, "hooked-hank", {}).status_code in (201, 202)
    hub.wait_ready("hooked-hank")
    seen = len(lines())
    charged = wait_for(
        lambda: [s for s in lines()[seen:] if s["periods_charged"] > 0 and s["credits_charged"] >= 5],
        INTERVAL + 2 * ROUND + 10,
        0.5,
        "a round that charged",
    )
    assert charged
    hub.stop("hooked-hank")
    # The stop of the credits-exhausted test (when it ran) was reported too.
    if hub.credits("tiny-tim").get("stopped") if hub.service("GET", "api/v1/users/tiny-tim").ok else False:
        stops = [st for s in lines() for st in s["stopped"]]
        assert any(st["user"] == "tiny-tim" and "credits ran out" in st["reason"] for st in stops), stops
