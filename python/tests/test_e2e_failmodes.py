"""When the credit service can't be reached: spawns are refused with a clear
message (fail closed, the default) or start unbilled with
credits_fail_open = True. And credits_enabled = False: the plugin is inert.

(The managed service killed mid-run is in test_e2e_restarts.py.)"""

from __future__ import annotations

import pytest
from conftest import free_ports

DEAD_PORT = free_ports(1)[0]
DEAD = f"""
c.MixinAuthenticator.credits_service_url = "http://127.0.0.1:{DEAD_PORT}/services/credits/"
"""


@pytest.fixture(scope="module")
def hubs(hub_factory):
    return hub_factory.many(
        {
            "closed": DEAD,
            "open": DEAD + "c.MixinAuthenticator.credits_fail_open = True\n",
            "disabled": "c.MixinAuthenticator.credits_enabled = False\n",
        },
        wait_service=False,
    )


def test_fail_closed_refuses_spawns_with_a_clear_message(hubs):
    hub = hubs["closed"]
    session = hub.login("alice")  # login goes on without the service
    r = hub.spawn(session, "alice", {})
    assert r.status_code in (403, 503), r.text
    message = r.json()["message"]
    assert "credit service is unreachable" in message, message
    assert "no server can start" in message
    assert hub.server_model("alice") is None
    # The compatibility API says the service can't be reached.
    r = hub.api("GET", "credits", session=session)
    assert r.status_code == 503, r.text
    assert "can't be reached" in r.json()["message"]


def test_fail_open_starts_servers_unbilled(hubs):
    hub = hubs["open"]
    session = hub.login("alice")
    r = hub.spawn(session, "alice", {})
    assert r.status_code in (201, 202), r.text
    hub.wait_ready("alice")
    assert "starting alice unbilled (credits_fail_open)" in hub.log_text()
    hub.stop("alice")


def test_disabled_credits_leave_spawns_alone(hubs):
    hub = hubs["disabled"]
    session = hub.login("alice")
    r = hub.spawn(session, "alice", {"gpus": 1000})
    assert r.status_code in (201, 202), r.text
    hub.wait_ready("alice")
    # No credit service runs: nothing can bill or stop.
    r = hub.request("GET", "/services/credits/health")
    assert r.status_code == 404
    assert "credits" not in [s["name"] for s in hub.api("GET", "services").json().values()]
    r = hub.api("GET", "credits", session=session)
    assert r.status_code == 404, r.text
    assert "disabled" in r.json()["message"], r.text
    r = hub.api("POST", "credits/user/alice", json={"balance": 1})
    assert r.status_code == 404, r.text
    assert "disabled" in r.json()["message"], r.text
    events = hub.progress("alice")
    assert not any("credits" in e.get("message", "") for e in events), events
    hub.stop("alice")
    assert "Credits are disabled" in hub.log_text()
