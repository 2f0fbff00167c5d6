"""Faults (DESIGN §2, §6): kill -9 of the managed credit service mid-run
(spawns are refused meanwhile, the hub restarts it) and kill -9 of the hub
(its service exits by itself, the next hub start brings everything back).
Afterwards every period of a running server is charged exactly once, in
order, none lost."""

from __future__ import annotations

import math
import os
import signal
import time
from datetime import datetime

import pytest
from conftest import alive, port_open, wait_for

INTERVAL = 4
ROUND = 2
CONFIG = f"""
c.MixinAuthenticator.credits_user_cap = 100000
c.MixinAuthenticator.credits_user_grant_value = 0
c.Spawner.billing_value = 5
c.Spawner.billing_interval = {INTERVAL}
"""
USER = "rita"


@pytest.fixture(scope="module")
def hub(hub_factory):
    return hub_factory(CONFIG, name="restarts")


def iso(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def charges(hub):
    return [e for e in hub.journal(USER) if e["kind"] == "charge"]


def periods_due(first_charge_time: float) -> int:
    """Periods started so far, counted from period 0's start."""
    return math.floor((time.time() - first_charge_time) / INTERVAL) + 1


def assert_each_period_once(hub):
    entries = charges(hub)
    periods = [e["period"] for e in entries]
    assert periods == list(range(len(periods))), f"periods repeated or missing: {periods}"
    assert all(e["delta"] == -5 for e in entries), entries
    journal = hub.journal(USER)
    assert sum(e["delta"] for e in journal) == hub.balance(USER), journal
    return entries


def wait_caught_up(hub, timeout=INTERVAL + 3 * ROUND + 10):
    """Waits until every started period is charged; checks none is extra."""
    first = iso(charges(hub)[0]["time"])

    def caught_up():
        # The journal time has whole seconds: allow for one period of slack.
        return len(charges(hub)) >= periods_due(first + 1) and charges(hub)

    entries = wait_for(caught_up, timeout, 0.5, "billing caught up")
    assert len(entries) <= periods_due(first), f"{len(entries)} charges, {periods_due(first)} periods due"
    return assert_each_period_once(hub)


@pytest.fixture(scope="module")
def running(hub):
    session = hub.login(USER)
    r = hub.spawn(session, USER, {})
    assert r.status_code in (201, 202), r.text
    hub.wait_ready(USER)
    wait_for(lambda: len(charges(hub)) >= 2, 2 * INTERVAL + ROUND + 5, 0.5, "two charges")
    return session


def test_service_killed_mid_run_is_restarted_and_bills_each_period_once(hub, running):
    [pid] = hub.service_pids()
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not alive(pid), 10, 0.1, "service gone")

    # Meanwhile spawns are refused (fail closed), with a clear message.
    session = hub.login("fred")
    r = hub.spawn(session, "fred", {})
    if r.status_code in (403, 503):
        assert "credit service is unreachable" in r.json()["message"], r.text
        assert hub.server_model("fred") is None
    else:  # the hub restarted the service already
        assert r.status_code in (201, 202), r.text

    # The hub restarts its managed service (it polls it every 30 s).
    def restarted():
        pids = hub.service_pids()
        return pids and pids != [pid] and hub.request("GET", "/services/credits/health", token="").ok

    wait_for(restarted, 60, 0.5, "service restarted by the hub")
    assert "Service credits exited" in hub.log_text()
    entries = wait_caught_up(hub)
    assert len(entries) >= 3
    assert hub.server_model(USER)["ready"]


def test_hub_killed_leaves_no_orphan_and_restart_bills_missed_periods_once(hub, running):
    [service] = hub.service_pids()
    before = len(charges(hub))
    hub.kill_hub(signal.SIGKILL)
    # The managed service exits by itself and frees its port.
    wait_for(lambda: not alive(service), 15, 0.1, "service of the killed hub exits")
    wait_for(lambda: not port_open(hub.service_port), 5, 0.1, "service port free")
    time.sleep(2 * INTERVAL)  # periods start while nobody bills

    hub.start()
    server = hub.server_model(USER)
    assert server and server["ready"], server  # the single-user server ran on
    entries = wait_caught_up(hub)
    assert len(entries) >= before + 2, (before, len(entries))
    # Billing goes on after the catch-up.
    count = len(entries)
    wait_for(lambda: len(charges(hub)) > count, INTERVAL + ROUND + 5, 0.5, "a charge after the restart")
    assert_each_period_once(hub)

    hub.stop(USER)
    time.sleep(1)
    final = assert_each_period_once(hub)
    time.sleep(INTERVAL + ROUND)
    assert len(charges(hub)) == len(final), "charged after the stop"
