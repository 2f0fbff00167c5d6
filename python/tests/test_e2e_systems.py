"""Per-system pools (spec/000, DESIGN §3 rule 9): credits_user with
user_options patterns. A server is charged to the first pool whose pattern
matches its options, else to the pool without one; options that match no
pool are refused with a message saying so."""

from __future__ import annotations

import pytest
from conftest import run_in_thread, wait_for

CONFIG = """
c.JupyterHub.allow_named_servers = True
c.MixinAuthenticator.credits_available_projects = [
    {"name": "gpuproj", "cap": 30, "grant_value": 0, "grant_interval": 3600},
]


def credits_user(user_name, user_groups, is_admin):
    cpu = {"name": "cpu", "cap": 50, "grant_value": 1, "grant_interval": 3600,
           "user_options": {"system": ["cpu", "login"]}}
    gpu = {"name": "gpu", "cap": 40, "grant_value": 1, "grant_interval": 3600,
           "user_options": {"system": "gpu.*"}}
    if user_name.startswith("mixed"):
        gpu["project"] = "gpuproj"
        return [gpu, {"name": "default", "cap": 60, "grant_value": 1, "grant_interval": 3600}]
    return [cpu, gpu]


c.MixinAuthenticator.credits_user = credits_user


def get_billing_value(spawner):
    system = spawner.user_options.get("system")
    if isinstance(system, list):
        system = system[0] if system else None
    return 20 if str(system).startswith("gpu") else 5


c.Spawner.billing_value = get_billing_value
c.Spawner.billing_interval = 4
"""


@pytest.fixture(scope="module")
def hub(hub_factory):
    return hub_factory(CONFIG, name="systems")


def pools(hub, name):
    return {p["name"]: p for p in hub.credits(name)["pools"]}


def test_login_creates_every_pool(hub):
    hub.login("sys-sam")
    got = pools(hub, "sys-sam")
    assert set(got) == {"cpu", "gpu"}
    assert (got["cpu"]["balance"], got["cpu"]["cap"]) == (50, 50)
    assert (got["gpu"]["balance"], got["gpu"]["cap"]) == (40, 40)
    assert got["gpu"]["user_options"] == {"system": "gpu.*"}
    assert got["cpu"]["user_options"] == {"system": ["cpu", "login"]}
    # The compatibility view shows the first pool and lists them all.
    session = hub.login("sys-sam")
    body = hub.api("GET", "credits", session=session).json()
    assert {p["name"] for p in body["pools"]} == {"cpu", "gpu"}


def test_each_server_is_charged_to_the_pool_its_options_match(hub):
    name = "sys-sam"
    session = hub.login(name)
    spawn = run_in_thread(hub.spawn, session, name, {"system": "gpu", "delay": 1}, "g")
    wait_for(lambda: (hub.server_model(name, "g") or {}).get("pending") == "spawn", 20, 0.05, "pending")
    events = hub.progress(name, "g")
    spawn.join(30)
    messages = [e.get("message", "") for e in events]
    assert "This server costs 20 credits per 4 seconds from your 'gpu' credits." in messages, messages
    hub.wait_ready(name, "g")

    r = hub.spawn(session, name, {"system": ["login"]}, "c")  # a one-element list counts as its element
    assert r.status_code in (201, 202), r.text
    hub.wait_ready(name, "c")

    def charged():
        p = pools(hub, name)
        return p["gpu"]["balance"] <= 20 and p["cpu"]["balance"] <= 45 and p

    got = wait_for(charged, 20, 0.3, "both pools charged")
    servers = {s["name"]: s for s in hub.credits(name)["servers"]}
    assert servers["g"]["pool"] == "gpu" and servers["g"]["billing_value"] == 20
    assert servers["c"]["pool"] == "cpu" and servers["c"]["billing_value"] == 5
    hub.stop(name, "g")
    hub.stop(name, "c")
    journal = hub.journal(name)
    for e in journal:
        if e["kind"] == "charge":
            assert e["pool"] == {"g": "gpu", "c": "cpu"}[e["server"]], e
            assert e["delta"] == {"g": -20, "c": -5}[e["server"]], e
    final = pools(hub, name)
    gpu_charges = [e for e in journal if e["kind"] == "charge" and e["pool"] == "gpu"]
    cpu_charges = [e for e in journal if e["kind"] == "charge" and e["pool"] == "cpu"]
    assert final["gpu"]["balance"] == 40 - 20 * len(gpu_charges)
    assert final["cpu"]["balance"] == 50 - 5 * len(cpu_charges)
    assert got


def test_options_matching_no_pool_are_refused_with_a_message(hub):
    name = "sys-sue"
    session = hub.login(name)
    r = hub.spawn(session, name, {"system": "quantum"})
    assert r.status_code == 403, r.text
    message = r.json()["message"]
    assert "None of your credit pools" in message
    assert '"cpu"' in message and '"gpu"' in message
    assert "quantum" in message
    assert hub.server_model(name) is None
    # Nothing was taken.
    got = pools(hub, name)
    assert (got["cpu"]["balance"], got["gpu"]["balance"]) == (50, 40)


def test_the_pool_without_a_pattern_takes_the_rest_and_a_pools_project_pays_first(hub):
    name = "mixed-max"
    session = hub.login(name)
    r = hub.spawn(session, name, {"system": "quantum"}, "q")
    assert r.status_code in (201, 202), r.text
    hub.wait_ready(name, "q")
    r = hub.spawn(session, name, {"system": "gpu-a100"}, "g")
    assert r.status_code in (201, 202), r.text
    hub.wait_ready(name, "g")
    servers = wait_for(
        lambda: len(hub.credits(name)["servers"]) == 2 and hub.credits(name)["servers"], 10, 0.3, "2"
    )
    by_name = {s["name"]: s["pool"] for s in servers}
    assert by_name == {"q": "default", "g": "gpu"}
    wait_for(lambda: pools(hub, name)["gpu"]["project"]["balance"] <= 10, 10, 0.3, "project charged")
    hub.stop(name, "q")
    hub.stop(name, "g")
    # Each period of "g" costs 20: the gpu pool's project pays first
    # (30 → 10 → 0), the gpu pool the rest; "q" is paid by the default pool.
    project = [e for e in hub.project_journal("gpuproj") if e["kind"] == "charge"]
    journal = [e for e in hub.journal(name) if e["kind"] == "charge"]
    assert project[0]["delta"] == -20 and project[0]["period"] == 0 and project[0]["server"] == "g", project
    per_period = {}
    for e in project + [e for e in journal if e["server"] == "g"]:
        assert e["pool"] in ("gpuproj", "gpu"), e
        per_period[e["period"]] = per_period.get(e["period"], 0) + e["delta"]
    assert set(per_period.values()) == {-20}, per_period
    assert all(e["pool"] == "default" and e["delta"] == -5 for e in journal if e["server"] == "q"), journal
    got = pools(hub, name)
    assert got["gpu"]["project"]["balance"] == 30 + sum(e["delta"] for e in project)


# ---- spawn lifecycle on named servers (DESIGN §3 rule 5) ------------------------
# "mixed-*" users: {"system": "x"} goes to their default pool (cap 60), 5 credits.


def default_charges(hub, name, server):
    return [e for e in hub.journal(name) if e["kind"] == "charge" and e["server"] == server]


def test_concurrent_spawns_never_promise_more_than_there_is(hub):
    name = "mixed-mia"
    session = hub.login(name)
    hub.set_pool(name, "default", balance=7, reason="e2e: room for one server")
    threads = [run_in_thread(hub.spawn, session, name, {"system": "x", "delay": 2}, s) for s in ("a", "b")]
    for t in threads:
        t.join(60)
    statuses = sorted(t.result.status_code for t in threads)
    assert statuses in ([201, 403], [202, 403]), [(t.result.status_code, t.result.text) for t in threads]
    refused = next(t.result for t in threads if t.result.status_code == 403)
    message = refused.json()["message"]
    assert "Not enough credits" in message and "promised" in message, message
    admitted = next(s for s, t in zip("ab", threads, strict=True) if t.result.status_code != 403)
    hub.wait_ready(name, admitted)
    wait_for(lambda: default_charges(hub, name, admitted), 10, 0.3, "first charge")
    hub.stop(name, admitted)
    assert pools(hub, name)["default"]["balance"] == 2


def test_a_spawn_that_fails_costs_nothing_and_releases_its_promise(hub):
    name = "mixed-mo"
    session = hub.login(name)
    hub.set_pool(name, "default", balance=5, reason="e2e: room for one server")
    r = hub.spawn(session, name, {"system": "x", "crash": True}, "boom")
    if r.status_code in (201, 202):
        events = hub.progress(name, "boom")
        assert events[-1].get("failed"), events
    else:
        assert r.status_code >= 400, r.text

    def gone():
        model = hub.server_model(name, "boom")
        return model is None or not (model["ready"] or model["pending"])

    wait_for(gone, 20, 0.3, "failed server gone")
    # Its promise is released at once: the only 5 credits pay for the next spawn.
    wait_for(lambda: hub.credits(name)["servers"] == [], 10, 0.3, "no live server in the ledger")
    r = hub.spawn(session, name, {"system": "x"}, "ok")
    assert r.status_code in (201, 202), r.text
    hub.wait_ready(name, "ok")
    wait_for(lambda: default_charges(hub, name, "ok"), 10, 0.3, "charge")
    hub.stop(name, "ok")
    assert default_charges(hub, name, "boom") == []
    assert pools(hub, name)["default"]["balance"] == 0


def test_a_server_that_dies_by_itself_is_billed_no_more(hub):
    import os
    import signal
    import time

    name = "mixed-meg"
    session = hub.login(name)
    r = hub.spawn(session, name, {"system": "x"}, "k")
    assert r.status_code in (201, 202), r.text
    server = hub.wait_ready(name, "k")
    wait_for(lambda: default_charges(hub, name, "k"), 10, 0.3, "first charge")
    os.kill(server["state"]["pid"], signal.SIGKILL)
    # The hub notices at its next poll (poll_interval 5 s) and stops it.
    hub.wait_gone(name, "k", timeout=30)
    wait_for(lambda: hub.credits(name)["servers"] == [], 10, 0.3, "ledger knows")
    count = len(default_charges(hub, name, "k"))
    time.sleep(4 + 2 + 1)
    assert len(default_charges(hub, name, "k")) == count
