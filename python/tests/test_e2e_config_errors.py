"""A wrong setting stops the hub at start, quickly, and its log names the
setting and the value (not a traceback deep in a first spawn)."""

from __future__ import annotations

import time

import pytest

#: name: (config lines, texts the log must contain)
CASES = {
    "cap_string": ('c.MixinAuthenticator.credits_user_cap = "abc"\n', ["credits_user_cap", "'abc'"]),
    "grant_interval_zero": (
        "c.MixinAuthenticator.credits_user_grant_interval = 0\n",
        ["credits_user_grant_interval", "0"],
    ),
    "grant_value_negative": (
        "c.MixinAuthenticator.credits_user_grant_value = -1\n",
        ["credits_user_grant_value", "-1"],
    ),
    "billing_value_negative": ("c.Spawner.billing_value = -5\n", ["billing_value", "-5"]),
    "billing_interval_float": ("c.Spawner.billing_interval = 1.5\n", ["billing_interval", "1.5"]),
    "project_cap_string": (
        'c.MixinAuthenticator.credits_available_projects = [{"name": "p1", "cap": "ten", '
        '"grant_value": 1, "grant_interval": 60}]\n',
        ["credits_available_projects[0].cap", "'ten'"],
    ),
    "project_unknown_key": (
        'c.MixinAuthenticator.credits_available_projects = [{"name": "p1", "cap": 10, '
        '"grant_value": 1, "grant_interval": 60, "grants": 3}]\n',
        ["credits_available_projects[0]", "grants"],
    ),
    "task_interval_zero": (
        "c.MixinAuthenticator.credits_task_interval = 0\n",
        ["credits_task_interval", "0"],
    ),
    "service_port_zero": ("c.MixinAuthenticator.credits_service_port = 0\n", ["credits_service_port", "0"]),
    "pool_pattern_not_a_dict": (
        'c.MixinAuthenticator.credits_user = [{"name": "gpu", "cap": 10, "grant_value": 1, '
        '"grant_interval": 60, "user_options": "gpu"}]\n',
        ["credits_user[0].user_options", "'gpu'"],
    ),
}

#: How long a hub with a wrong setting may take to exit (imports included,
#: on a busy 2-core machine with all cases starting at once).
EXIT_WITHIN = 90


@pytest.fixture(scope="module")
def failed_hubs(hub_factory):
    hubs = hub_factory.many({name: lines for name, (lines, _) in CASES.items()}, start=False)
    started = time.monotonic()
    for hub in hubs.values():
        hub.launch()
    results = {}
    for name, hub in hubs.items():
        remaining = max(1, EXIT_WITHIN - (time.monotonic() - started))
        rc = hub.wait_exit(remaining)
        results[name] = (rc, time.monotonic() - started, hub)
    return results


@pytest.mark.parametrize("case", list(CASES))
def test_bad_setting_stops_the_hub_naming_it(failed_hubs, case):
    rc, took, hub = failed_hubs[case]
    assert rc != 0, f"hub exited with {rc}\n{hub.log_tail()}"
    log = hub.log_text()
    for text in CASES[case][1]:
        assert text in log, f"{text!r} not in the log:\n{hub.log_tail(30)}"
    # Nothing was left running: no proxy, no credit service.
    assert "Starting managed service" not in log
    assert "JupyterHub is now running" not in log
