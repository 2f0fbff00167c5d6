"""Fitting the credit service into the hub with the spec's config alone: the
managed service, its role and scopes, the users' access to it, the header
template and the compatibility endpoints.

JupyterHub copies ``load_roles`` before it creates the authenticator, so the
service's role is added when this package is imported from
``jupyterhub_config.py`` (while the hub loads its config) and completed by
the authenticator once its settings are known.
"""

from __future__ import annotations

import os

#: The role granted to the credit service: list ready servers and stop them.
SERVICE_ROLE = {
    "name": "credits-service",
    "description": "The credit service: lists ready servers and stops those whose credits ran out",
    "scopes": ["list:users", "read:users:name", "read:servers", "servers"],
    "services": [],
}

TEMPLATES = os.path.join(os.path.dirname(__file__), "templates")


def hub_app(authenticator):
    """The JupyterHub application the authenticator belongs to, if any."""
    try:
        from jupyterhub.app import JupyterHub
    except ImportError:  # pragma: no cover
        return None
    parent = getattr(authenticator, "parent", None)
    return parent if isinstance(parent, JupyterHub) else None


def _ensure_role(roles: list) -> None:
    if not any(r is SERVICE_ROLE or r.get("name") == SERVICE_ROLE["name"] for r in roles):
        roles.append(SERVICE_ROLE)


def install_at_import() -> None:
    """Adds the service's role to the hub being configured, if any."""
    try:
        from jupyterhub.app import JupyterHub
    except ImportError:  # pragma: no cover
        return
    if not JupyterHub.initialized():
        return
    app = JupyterHub.instance()
    _ensure_role(app.load_roles)

    def on_change(change):
        # The config file may set load_roles after this import. traitlets
        # keeps its own copy of the list, so the role is assigned, not
        # appended to change["new"] (assigning again re-enters with it present).
        roles = change["new"]
        if not any(r is SERVICE_ROLE or r.get("name") == SERVICE_ROLE["name"] for r in roles):
            change["owner"].load_roles = [*roles, SERVICE_ROLE]

    app.observe(on_change, names=["load_roles"])


def _set_role_services(app, services: list) -> None:
    """Sets who holds the service's role, in every copy the hub may keep."""
    SERVICE_ROLE["services"] = list(services)
    for role in getattr(app, "load_roles", []) or []:
        if role.get("name") == SERVICE_ROLE["name"]:
            role["services"] = list(services)


def disable(app) -> None:
    """credits_enabled = False: the role stays empty, nothing is registered."""
    _set_role_services(app, [])


def handlers_via_get_handlers(authenticator) -> bool:
    """True when our get_handlers is the one the hub calls (it is not when an
    authenticator earlier in the MRO, such as OAuthenticator, defines its own)."""
    from .authenticator import CreditsAuthenticator

    for cls in type(authenticator).__mro__:
        if "get_handlers" in cls.__dict__:
            return cls is CreditsAuthenticator
    return False


def compat_handlers() -> list:
    from .handlers import CreditsHandler, ProjectCreditsHandler, UserCreditsHandler

    return [
        (r"/api/credits", CreditsHandler),
        (r"/api/credits/user/([^/]+)", UserCreditsHandler),
        (r"/api/credits/project/([^/]+)", ProjectCreditsHandler),
    ]


def register(authenticator, app) -> None:
    """Registers the managed service, its role, the users' access scope, the
    header template and (when get_handlers can't) the compatibility API."""
    name = authenticator.credits_service_name
    services = app.services
    managed = not authenticator.credits_service_url
    if managed and not any(s.get("name") == name for s in services):
        environment = {
            "CREDIT_SERVICE_DATABASE_URL": authenticator.credits_database_url,
            "CREDIT_SERVICE_ROUND_INTERVAL": str(authenticator.credits_task_interval),
            "CREDIT_SERVICE_PLUGIN_SECRET": authenticator.credits_plugin_secret,
            "CREDIT_SERVICE_EXIT_WITH_PARENT": "true",
        }
        environment.update(authenticator.credits_service_environment)
        services.append(
            {
                "name": name,
                "url": f"http://127.0.0.1:{authenticator.credits_service_port}",
                "command": list(authenticator.credits_service_command),
                "environment": environment,
                "display": True,
                "oauth_no_confirm": True,
                "oauth_client_allowed_scopes": [
                    f"access:services!service={name}",
                    "admin:users",
                    "read:metrics",
                ],
            }
        )
    if any(s.get("name") == name for s in services):
        _set_role_services(app, [name])
    access = f"access:services!service={name}"
    scopes = app.extra_user_scopes
    if access not in scopes:
        # A Set in JupyterHub 5.x and 6.x; a List in older releases.
        scopes.add(access) if isinstance(scopes, set) else scopes.append(access)
    if TEMPLATES not in app.template_paths:
        # Before JupyterHub's own templates (searched in order), after any of
        # the operator's: their page.html, if any, stays theirs.
        default = app._template_paths_default()[0]
        paths = app.template_paths
        paths.insert(paths.index(default) if default in paths else len(paths), TEMPLATES)
    app.template_vars.setdefault("credits_service_prefix", f"{app.base_url}services/{name}/")
    if not handlers_via_get_handlers(authenticator):
        app.extra_handlers.extend(compat_handlers())
