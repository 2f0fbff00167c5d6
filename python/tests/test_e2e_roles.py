"""The service gets its scopes with the spec's config alone, also when the
operator's config sets JupyterHub.load_roles itself (traitlets then keeps its
own copy of the list, which the plugin must extend)."""

from __future__ import annotations

import time

import pytest

OPERATOR_ROLES = """
c.JupyterHub.load_roles = [
    {"name": "ops-readers", "scopes": ["read:users"], "users": ["admin"]},
]
"""


@pytest.fixture(scope="module")
def hub(hub_factory):
    return hub_factory(OPERATOR_ROLES)


def test_service_can_list_the_hub_when_the_config_sets_load_roles(hub):
    # The service lists the hub's ready servers in its first round.
    time.sleep(3)
    log = hub.log_text()
    assert "Role credits-service added to database" in log or "credits-service" in log, log[-2000:]
    assert "requires any of [list:users]" not in log, log[-2000:]
    # And the operator's own role is there too.
    assert "ops-readers" in log
