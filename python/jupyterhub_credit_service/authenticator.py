"""CreditsAuthenticator: the operator's credit settings (spec/003), the
managed credit service, and syncing each user's pools on login."""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import secrets
import shutil
import sys
from textwrap import dedent

from jupyterhub.auth import Authenticator
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from traitlets import Bool, Callable, Dict, Integer, List, TraitError, Unicode, Union, default, validate

from . import hubsetup
from .client import CreditClient
from .errors import CreditsConfigError
from .values import VALUE_MAX, check_int, check_name, check_pools, check_projects, resolve

#: How long to wait before reconnecting to the service's round stream.
ROUND_STREAM_RETRY_SECS = 5


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        raise TraitError(f"{name}={text!r} is not an integer") from None


def _env_bool(name: str, default: bool) -> bool:
    text = os.environ.get(name)
    if text is None:
        return default
    if text.strip().lower() in {"1", "true", "yes", "on"}:
        return True
    if text.strip().lower() in {"0", "false", "no", "off", ""}:
        return False
    raise TraitError(f"{name}={text!r} is not a boolean (use true or false)")


def _check_int_or_callable(name: str, value, minimum: int):
    if callable(value):
        return value
    try:
        return check_int(name, value, minimum)
    except CreditsConfigError as e:
        raise TraitError(str(e)) from None


def _sse_reader(on_event):
    """A streaming callback that calls `on_event(data)` for each Server-Sent Event."""
    buffer = bytearray()

    def on_chunk(chunk: bytes):
        buffer.extend(chunk)
        while b"\n\n" in buffer:
            index = buffer.index(b"\n\n")
            block = bytes(buffer[:index]).decode("utf-8", "replace")
            del buffer[: index + 2]
            lines = [line[5:].lstrip() for line in block.splitlines() if line.startswith("data:")]
            if lines:
                on_event("\n".join(lines))

    return on_chunk


class CreditsAuthenticator(Authenticator):
    """Mix into your authenticator to give users credits.

    .. code-block:: python

        class MixinAuthenticator(GenericOAuthenticator, CreditsAuthenticator):
            pass
    """

    credits_enabled = Bool(
        help=dedent(
            """
            Enable or disable credits entirely. When False the plugin is inert:
            no admission check, no billing, no stops.
            Default: True, or the environment variable JUPYTERHUB_CREDITS_ENABLED.
            """
        ),
    ).tag(config=True)

    @default("credits_enabled")
    def _credits_enabled_default(self):
        return _env_bool("JUPYTERHUB_CREDITS_ENABLED", True)

    credits_user_cap = Union(
        [Integer(), Callable()],
        help=dedent(
            """
            The most credits a user can hold: an integer, or a callable
            ``(user_name, user_groups, is_admin)`` returning one (sync or async).
            Default: 100, or JUPYTERHUB_CREDITS_USER_CAP.
            """
        ),
    ).tag(config=True)

    credits_user_grant_value = Union(
        [Integer(), Callable()],
        help=dedent(
            """
            Credits granted every ``credits_user_grant_interval`` seconds while
            below the cap: an integer or a callable ``(user_name, user_groups, is_admin)``.
            Default: 10, or JUPYTERHUB_CREDITS_USER_GRANT_VALUE.
            """
        ),
    ).tag(config=True)

    credits_user_grant_interval = Union(
        [Integer(), Callable()],
        help=dedent(
            """
            Seconds between grants: an integer (at least 1) or a callable
            ``(user_name, user_groups, is_admin)``.
            Default: 600, or JUPYTERHUB_CREDITS_USER_GRANT_INTERVAL.
            """
        ),
    ).tag(config=True)

    @default("credits_user_cap")
    def _cap_default(self):
        return _env_int("JUPYTERHUB_CREDITS_USER_CAP", 100)

    @default("credits_user_grant_value")
    def _grant_value_default(self):
        return _env_int("JUPYTERHUB_CREDITS_USER_GRANT_VALUE", 10)

    @default("credits_user_grant_interval")
    def _grant_interval_default(self):
        return _env_int("JUPYTERHUB_CREDITS_USER_GRANT_INTERVAL", 600)

    @validate("credits_user_cap", "credits_user_grant_value")
    def _validate_credit_amount(self, proposal):
        return _check_int_or_callable(proposal.trait.name, proposal.value, 0)

    @validate("credits_user_grant_interval")
    def _validate_interval(self, proposal):
        return _check_int_or_callable(proposal.trait.name, proposal.value, 1)

    credits_user = Union(
        [Dict(), List(), Callable()],
        default_value=None,
        allow_none=True,
        help=dedent(
            """
            Per-user pools, for per-system budgets. A dict (one pool), a list
            of dicts, or a callable ``(user_name, user_groups, is_admin)``
            returning either. Each pool: ``name``, ``cap``, ``grant_value``,
            ``grant_interval`` and optionally ``project`` and ``user_options``
            (a pattern: a server is charged to the first pool whose pattern
            matches its user_options, else to the pool without a pattern).
            When set, it replaces credits_user_cap / _grant_value / _grant_interval.
            """
        ),
    ).tag(config=True)

    @validate("credits_user")
    def _validate_credits_user(self, proposal):
        value = proposal.value
        if value is None or callable(value):
            return value
        try:
            check_pools("credits_user", value)
        except CreditsConfigError as e:
            raise TraitError(str(e)) from None
        return value

    credits_user_project = Callable(
        default_value=None,
        allow_none=True,
        help=dedent(
            """
            A callable ``(user_name, user_groups, is_admin)`` returning the name
            of the project the user belongs to, or None. A project's credits
            are used before the user's own.
            """
        ),
    ).tag(config=True)

    credits_available_projects = Union(
        [List(), Callable()],
        default_value=[],
        help=dedent(
            """
            Projects users can belong to: a list of dicts with ``name``,
            ``cap``, ``grant_value``, ``grant_interval``, or an (async)
            callable returning such a list. Default: [].
            """
        ),
    ).tag(config=True)

    @validate("credits_available_projects")
    def _validate_projects(self, proposal):
        value = proposal.value
        if callable(value):
            return value
        try:
            check_projects("credits_available_projects", value)
        except CreditsConfigError as e:
            raise TraitError(str(e)) from None
        return value

    # A non-zero default_value: traitlets skips validating a configured value
    # equal to it (Integer()'s default 0 let credits_task_interval = 0 through).
    credits_task_interval = Integer(
        60,
        help=dedent(
            """
            Seconds between billing rounds of the credit service.
            Default: 60, or JUPYTERHUB_CREDITS_TASK_INTERVAL.
            """
        ),
    ).tag(config=True)

    @default("credits_task_interval")
    def _task_interval_default(self):
        return _env_int("JUPYTERHUB_CREDITS_TASK_INTERVAL", 60)

    @validate("credits_task_interval")
    def _validate_task_interval(self, proposal):
        value = proposal.value
        if not 1 <= value <= 86400:
            raise TraitError(f"credits_task_interval: {value!r} must be from 1 to 86400 seconds")
        return value

    credits_task_post_hook = Callable(
        default_value=None,
        allow_none=True,
        help=dedent(
            """
            Optional function called in the hub after each billing round,
            with no argument or with the round's summary (a dict with
            periods_charged, credits_charged and the servers stopped).
            May be async.
            """
        ),
    ).tag(config=True)

    credits_service_url = Unicode(
        help=dedent(
            """
            URL of an external credit service (its own pod, shared by several
            hubs). Empty (default): the hub starts and supervises the service
            itself as a managed JupyterHub service.
            Default: JUPYTERHUB_CREDITS_SERVICE_URL.
            """
        ),
    ).tag(config=True)

    @default("credits_service_url")
    def _service_url_default(self):
        return _env("JUPYTERHUB_CREDITS_SERVICE_URL", "")

    credits_service_name = Unicode(
        "credits",
        help="Name of the credit service in the hub (its URL is /services/<name>/).",
    ).tag(config=True)

    credits_service_port = Integer(
        10101,
        help=(
            "Port of the managed credit service on 127.0.0.1. "
            "Default: 10101, or JUPYTERHUB_CREDITS_SERVICE_PORT."
        ),
    ).tag(config=True)

    @default("credits_service_port")
    def _service_port_default(self):
        return _env_int("JUPYTERHUB_CREDITS_SERVICE_PORT", 10101)

    @validate("credits_service_port")
    def _validate_port(self, proposal):
        if not 1 <= proposal.value <= 65535:
            raise TraitError(f"credits_service_port: {proposal.value!r} is not a TCP port")
        return proposal.value

    credits_database_url = Unicode(
        help=dedent(
            """
            Database of the managed credit service: ``sqlite:///PATH`` or
            ``postgresql://USER@HOST/DB`` (several hubs may share one).
            Default: a SQLite file next to the hub's database, or
            JUPYTERHUB_CREDITS_DATABASE_URL.
            """
        ),
    ).tag(config=True)

    @default("credits_database_url")
    def _database_url_default(self):
        env = os.environ.get("JUPYTERHUB_CREDITS_DATABASE_URL")
        if env:
            return env
        directory = os.getcwd()
        db_url = getattr(self.parent, "db_url", "") or ""
        if db_url.startswith("sqlite:///") and db_url != "sqlite:///:memory:":
            directory = os.path.dirname(os.path.abspath(db_url[len("sqlite:///") :]))
        return "sqlite://" + os.path.join(directory, "jupyterhub_credits.sqlite")

    credits_plugin_secret = Unicode(
        help=dedent(
            """
            Secret shared by the plugin and the credit service. Default:
            JUPYTERHUB_CREDITS_PLUGIN_SECRET, or a random secret for the
            managed service. Set it (on both sides) for an external service.
            """
        ),
    ).tag(config=True)

    @default("credits_plugin_secret")
    def _secret_default(self):
        return os.environ.get("JUPYTERHUB_CREDITS_PLUGIN_SECRET") or secrets.token_urlsafe(32)

    credits_fail_open = Bool(
        help=dedent(
            """
            When the credit service can't be reached: False (default) refuses
            spawns with a clear message; True lets them start unbilled.
            Default: JUPYTERHUB_CREDITS_FAIL_OPEN.
            """
        ),
    ).tag(config=True)

    @default("credits_fail_open")
    def _fail_open_default(self):
        return _env_bool("JUPYTERHUB_CREDITS_FAIL_OPEN", False)

    credits_service_command = List(
        Unicode(),
        help=(
            "Command starting the managed credit service. "
            "Default: the jupyterhub-credit-service installed with this package."
        ),
    ).tag(config=True)

    @default("credits_service_command")
    def _command_default(self):
        here = os.path.join(os.path.dirname(sys.executable), "jupyterhub-credit-service")
        return [
            here
            if os.path.exists(here)
            else (shutil.which("jupyterhub-credit-service") or "jupyterhub-credit-service")
        ]

    credits_service_environment = Dict(
        help="Extra environment for the managed credit service (e.g. CREDIT_SERVICE_LOG_LEVEL).",
    ).tag(config=True)

    # ---- set-up -------------------------------------------------------

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._credits_client = None
        self._credits_projects_sent = None
        self._credits_tasks = set()
        app = hubsetup.hub_app(self)
        if not self.credits_enabled:
            hubsetup.disable(app)
            # The compatibility API stays, to say that credits are disabled.
            if app is not None and not hubsetup.handlers_via_get_handlers(self):
                app.extra_handlers.extend(hubsetup.compat_handlers())
            self.log.info("Credits are disabled (credits_enabled = False)")
            return
        self._credits_check_spawner_config(app)
        if app is not None:
            hubsetup.register(self, app)
            self._credits_start(self._credits_round_listener())
            self._credits_start(self._credits_push_projects_at_start())

    def _credits_start(self, coroutine):
        try:
            task = asyncio.get_event_loop().create_task(coroutine)
        except RuntimeError:
            coroutine.close()
            return
        self._credits_tasks.add(task)
        task.add_done_callback(self._credits_tasks.discard)

    def _credits_check_spawner_config(self, app):
        """Spawner settings fail at hub start, not at the first spawn."""
        if app is None:
            return
        spawner_class = getattr(app, "spawner_class", None)
        names = [c.__name__ for c in getattr(spawner_class, "__mro__", ())] or ["Spawner"]
        for section in names:
            if section not in app.config:
                continue
            for trait, minimum in (("billing_value", 0), ("billing_interval", 1)):
                if trait in app.config[section]:
                    value = app.config[section][trait]
                    if not callable(value):
                        try:
                            check_int(f"{section}.{trait}", value, minimum)
                        except CreditsConfigError as e:
                            raise TraitError(str(e)) from None

    @property
    def credits_service_base_url(self) -> str:
        if self.credits_service_url:
            return self.credits_service_url
        return f"http://127.0.0.1:{self.credits_service_port}/services/{self.credits_service_name}/"

    @property
    def credits_client(self) -> CreditClient:
        if self._credits_client is None:
            self._credits_client = CreditClient(self.credits_service_base_url, self.credits_plugin_secret)
        return self._credits_client

    def get_handlers(self, app):
        handlers = super().get_handlers(app)
        if hubsetup.handlers_via_get_handlers(self):
            handlers = list(handlers) + hubsetup.compat_handlers()
        return handlers

    # ---- the operator's settings, evaluated -------------------------

    async def credits_projects(self) -> list[dict]:
        value = await resolve(self.credits_available_projects)
        return check_projects("credits_available_projects", value)

    async def credits_user_pools(self, user_name: str, user_groups: list[str], is_admin: bool) -> list[dict]:
        args = (user_name, user_groups, is_admin)
        if self.credits_user is not None:
            pools = check_pools("credits_user", await resolve(self.credits_user, *args))
        else:
            pools = [
                {
                    "name": "default",
                    "cap": check_int("credits_user_cap", await resolve(self.credits_user_cap, *args)),
                    "grant_value": check_int(
                        "credits_user_grant_value", await resolve(self.credits_user_grant_value, *args)
                    ),
                    "grant_interval": check_int(
                        "credits_user_grant_interval",
                        await resolve(self.credits_user_grant_interval, *args),
                        1,
                    ),
                    "project": None,
                    "user_options": None,
                }
            ]
        if self.credits_user_project is not None:
            project = await resolve(self.credits_user_project, *args)
            if project is not None:
                project = check_name("credits_user_project", project)
                for pool in pools:
                    if pool["project"] is None:
                        pool["project"] = project
        return pools

    async def credits_sync_projects(self) -> list[dict]:
        projects = await self.credits_projects()
        if projects != self._credits_projects_sent:
            await self.credits_client.put_projects(projects)
            self._credits_projects_sent = projects
        return projects

    async def credits_sync_user(self, user_name: str, user_groups: list[str], is_admin: bool) -> dict:
        """Evaluates the operator's settings for this user and hands them to the service."""
        projects = {p["name"] for p in await self.credits_sync_projects()}
        pools = await self.credits_user_pools(user_name, list(user_groups), bool(is_admin))
        for pool in pools:
            if pool["project"] is not None and pool["project"] not in projects:
                raise CreditsConfigError(
                    f"project {pool['project']!r} of user {user_name!r} is not in credits_available_projects"
                )
        return await self.credits_client.put_user(user_name, pools)

    async def run_post_auth_hook(self, handler, authentication):
        authentication = await super().run_post_auth_hook(handler, authentication)
        if not self.credits_enabled or not authentication:
            return authentication
        name = authentication.get("name")
        groups = authentication.get("groups")
        admin = authentication.get("admin")
        user = handler.find_user(name) if handler is not None and name else None
        if groups is None:
            groups = [g.name for g in user.groups] if user is not None else []
        if admin is None:
            admin = bool(user.admin) if user is not None else False
        try:
            await self.credits_sync_user(name, groups, admin)
        except Exception as e:
            # Login goes on; the spawn will say what is wrong.
            self.log.error("Credits for %s could not be set up at login: %s", name, e)
        return authentication

    # ---- background ---------------------------------------------------

    async def _credits_push_projects_at_start(self):
        for _ in range(60):
            try:
                await self.credits_sync_projects()
                return
            except CreditsConfigError as e:
                self.log.error("Credits: %s", e)
                return
            except Exception:
                await asyncio.sleep(1)

    async def _credits_round_listener(self):
        """Runs credits_task_post_hook after each billing round of the service."""
        if self.credits_task_post_hook is None:
            return
        url = self.credits_service_base_url.rstrip("/") + "/internal/v1/rounds"
        while True:
            on_chunk = _sse_reader(lambda data: self._credits_start(self._credits_run_post_hook(data)))
            request = HTTPRequest(
                url,
                headers={"X-Credits-Plugin-Secret": self.credits_plugin_secret},
                streaming_callback=on_chunk,
                request_timeout=0,
                connect_timeout=10,
            )
            try:
                await AsyncHTTPClient().fetch(request, raise_error=False)
            except Exception as e:
                self.log.debug("Credits round stream: %s", e)
            await asyncio.sleep(ROUND_STREAM_RETRY_SECS)

    async def _credits_run_post_hook(self, data: str):
        hook = self.credits_task_post_hook
        try:
            summary = json.loads(data)
            takes_argument = len(inspect.signature(hook).parameters) > 0
            result = hook(summary) if takes_argument else hook()
            if inspect.isawaitable(result):
                await result
        except Exception:
            self.log.exception("credits_task_post_hook failed")


__all__ = ["CreditsAuthenticator", "VALUE_MAX"]
