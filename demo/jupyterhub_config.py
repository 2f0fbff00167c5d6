# The spec's example config, with DummyAuthenticator and
# SimpleLocalProcessSpawner in place of OAuth and Kubernetes, and short
# intervals so that billing, grants and a stop show within two minutes.
import os

import jupyterhub_credit_service
from jupyterhub.auth import DummyAuthenticator
from jupyterhub.spawner import SimpleLocalProcessSpawner

c = get_config()  # noqa: F821


class MixinAuthenticator(DummyAuthenticator, jupyterhub_credit_service.CreditsAuthenticator):
    pass


c.JupyterHub.authenticator_class = MixinAuthenticator


def user_cap(username, user_groups=[], is_admin=False):
    if username.endswith("mycompany.org"):
        return 1000
    elif username.startswith("poor"):
        return 15
    elif username.startswith("broke"):
        return 0
    return 100


c.MixinAuthenticator.credits_user_cap = user_cap
c.MixinAuthenticator.credits_user_grant_value = 5
c.MixinAuthenticator.credits_user_grant_interval = 60


async def available_projects():
    return [{"name": "community1", "cap": 40, "grant_value": 10, "grant_interval": 120}]


def user_project(user_name, user_groups, is_admin):
    return "community1" if user_name.startswith("team") else None


c.MixinAuthenticator.credits_available_projects = available_projects
c.MixinAuthenticator.credits_user_project = user_project
c.MixinAuthenticator.credits_task_interval = 10
c.MixinAuthenticator.admin_users = {"admin"}
c.MixinAuthenticator.allow_all = True


class Spawner(SimpleLocalProcessSpawner, jupyterhub_credit_service.CreditsSpawner):
    pass


def get_billing_value(spawner):
    billing_value = 5
    if "gpus" in spawner.user_options.keys():
        billing_value += int(spawner.user_options["gpus"]) * 10
    return billing_value


c.JupyterHub.spawner_class = Spawner
c.Spawner.billing_value = get_billing_value
c.Spawner.billing_interval = 30
# The demo may run as root; the single-user server refuses that by default.
c.Spawner.args = ["--allow-root"] if os.getuid() == 0 else []
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = 8000
