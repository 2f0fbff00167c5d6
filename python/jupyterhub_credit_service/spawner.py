"""CreditsSpawner: what a server costs (spec/004), the admission check
before it starts, and the notices of its start and stop."""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from datetime import datetime, timezone
from textwrap import dedent

from jupyterhub.spawner import Spawner
from jupyterhub.utils import maybe_future
from traitlets import Callable, Integer, TraitError, Union, default, validate

from .authenticator import CreditsAuthenticator, _check_int_or_callable, _env_int
from .client import ServiceRejected, ServiceUnavailable
from .errors import CreditsConfigError, CreditsException
from .values import check_int, resolve

#: How often a starting server is checked for readiness.
READY_POLL_SECS = 0.5
#: How long the progress stream waits for the admission check of its spawn.
PROGRESS_WAIT_SECS = 30
#: Attempts to deliver a start or stop notice to the service.
NOTICE_ATTEMPTS = 5


class CreditsSpawner(Spawner):
    """Mix into your spawner so that servers cost credits.

    .. code-block:: python

        class KubeSpawner(kubespawner.KubeSpawner, CreditsSpawner):
            pass
    """

    billing_value = Union(
        [Integer(), Callable()],
        help=dedent(
            """
            Credits charged every ``billing_interval`` seconds while the server
            runs: an integer or a callable ``(spawner)`` (sync or async).
            Default: 10, or JUPYTERHUB_CREDITS_BILLING_VALUE.
            """
        ),
    ).tag(config=True)

    billing_interval = Union(
        [Integer(), Callable()],
        help=dedent(
            """
            Seconds per billing period: an integer (at least 1) or a callable
            ``(spawner)``. Default: 600, or JUPYTERHUB_CREDITS_BILLING_INTERVAL.
            """
        ),
    ).tag(config=True)

    @default("billing_value")
    def _billing_value_default(self):
        return _env_int("JUPYTERHUB_CREDITS_BILLING_VALUE", 10)

    @default("billing_interval")
    def _billing_interval_default(self):
        return _env_int("JUPYTERHUB_CREDITS_BILLING_INTERVAL", 600)

    @validate("billing_value")
    def _validate_billing_value(self, proposal):
        return _check_int_or_callable("billing_value", proposal.value, 0)

    @validate("billing_interval")
    def _validate_billing_interval(self, proposal):
        return _check_int_or_callable("billing_interval", proposal.value, 1)

    _credits_key = None
    _credits_cost = None
    #: The key clear_state() dropped: LocalProcessSpawner.poll() clears the
    #: state as soon as the process is gone, before the hub runs the
    #: post-stop hook that tells the service the server stopped.
    _credits_cleared_key = None
    #: The spawn (its _spawn_future) whose admission check has finished.
    _credits_checked = None

    # A mixin: the spawner it is mixed with starts, stops and polls. These
    # only pass through (JupyterHub requires every Spawner subclass to name them).
    async def start(self):
        return await maybe_future(super().start())

    async def stop(self, now=False):
        return await maybe_future(super().stop(now=now))

    async def poll(self):
        return await maybe_future(super().poll())

    @property
    def _credits_authenticator(self):
        auth = getattr(self, "authenticator", None)
        if isinstance(auth, CreditsAuthenticator) and auth.credits_enabled:
            return auth
        return None

    async def credits_cost(self) -> tuple[int, int]:
        """billing_value and billing_interval for this spawn."""
        value = check_int("billing_value", await resolve(self.billing_value, self))
        interval = check_int("billing_interval", await resolve(self.billing_interval, self), 1)
        return value, interval

    async def run_pre_spawn_hook(self):
        # A new spawn: no cost of an earlier one in its progress.
        self._credits_cost = None
        try:
            await self._credits_admit()
        finally:
            # The progress stream waits for this (see progress()).
            self._credits_checked = self._spawn_future

    async def _credits_admit(self):
        await maybe_future(super().run_pre_spawn_hook())
        auth = self._credits_authenticator
        if auth is None:
            return
        user = self.user
        try:
            value, interval = await self.credits_cost()
            await auth.credits_sync_user(user.name, [g.name for g in user.groups], user.admin)
            key = f"{user.name}/{self.name}/{uuid.uuid4().hex}"
            decision = await auth.credits_client.admit(
                {
                    "user": user.name,
                    "server_name": self.name,
                    "server_key": key,
                    "user_options": self.user_options or {},
                    "billing_value": value,
                    "billing_interval": interval,
                    "promise_secs": int(self.start_timeout + self.http_timeout + 60),
                }
            )
        except CreditsConfigError as e:
            self.log.error("Credits configuration error for %s: %s", user.name, e)
            raise CreditsException(
                f"The credits configuration is invalid ({e}). Please tell an administrator."
            ) from None
        except ServiceRejected as e:
            raise CreditsException(f"Credits could not be checked: {e.message}") from None
        except ServiceUnavailable as e:
            if auth.credits_fail_open:
                self.log.warning(
                    "Credit service unreachable, starting %s unbilled (credits_fail_open): %s", user.name, e
                )
                return
            self.log.error("Credit service unreachable, refusing spawn of %s: %s", user.name, e)
            raise CreditsException(
                "Credits can't be checked right now (the credit service is unreachable), "
                "so no server can start. Please try again in a minute.",
                status_code=503,
            ) from None
        if not decision.get("admitted"):
            raise CreditsException(decision.get("message") or "Not enough credits to start this server.")
        self._credits_key = key
        self._credits_cost = (value, interval, decision.get("pool"))
        asyncio.ensure_future(self._credits_watch_ready(auth, key))

    async def _credits_watch_ready(self, auth, key):
        """Tells the service when the server is ready, or releases the
        promise when the spawn never gets there."""
        deadline = time.monotonic() + self.start_timeout + self.http_timeout + 30
        while self._credits_key == key and time.monotonic() < deadline:
            if self.ready:
                now = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
                self.log.info("Credits: %s is ready, billing starts", self._log_name)
                await self._credits_notice(functools.partial(auth.credits_client.ready, key, now))
                return
            if not self.pending and self.server is None:
                break
            await asyncio.sleep(READY_POLL_SECS)
        if self._credits_key == key and not self.ready:
            self._credits_key = None
            self.log.info("Credits: %s never got ready, its promise is released", self._log_name)
            await self._credits_notice(lambda: auth.credits_client.stopped(key))

    async def _credits_notice(self, call):
        delay = 1
        for attempt in range(NOTICE_ATTEMPTS):
            try:
                return await call()
            except ServiceRejected as e:
                self.log.warning("Credit service refused a notice: %s", e.message)
                return None
            except ServiceUnavailable as e:
                if attempt == NOTICE_ATTEMPTS - 1:
                    # The service's next listing of the hub catches up.
                    self.log.warning("Credit service unreachable for a notice: %s", e)
                    return None
                await asyncio.sleep(delay)
                delay *= 2
        return None

    async def run_post_stop_hook(self):
        try:
            await maybe_future(super().run_post_stop_hook())
        finally:
            key = self._credits_key or self._credits_cleared_key
            self._credits_key = self._credits_cleared_key = None
            auth = self._credits_authenticator
            if key and auth is not None:
                await self._credits_notice(lambda: auth.credits_client.stopped(key))

    async def progress(self):
        # The progress stream can open before the admission check of this
        # spawn is done (its pending state starts earlier): wait for it, so
        # that the cost shown is this spawn's.
        spawn = self._spawn_future
        deadline = time.monotonic() + PROGRESS_WAIT_SECS
        while (
            self._credits_authenticator is not None
            and spawn is not None
            and not spawn.done()
            and self._credits_checked is not spawn
            and time.monotonic() < deadline
        ):
            await asyncio.sleep(0.05)
        if self._credits_cost is not None and self._credits_checked is spawn:
            value, interval, pool = self._credits_cost
            where = "" if pool in (None, "default") else f" from your {pool!r} credits"
            yield {
                "progress": 1,
                "message": f"This server costs {value} credits per {interval} seconds{where}.",
            }
        async for event in super().progress():
            yield event

    def get_state(self):
        state = super().get_state()
        if self._credits_key:
            state["credits_key"] = self._credits_key
        return state

    def load_state(self, state):
        super().load_state(state)
        self._credits_key = state.get("credits_key")

    def clear_state(self):
        super().clear_state()
        if self._credits_key:
            self._credits_cleared_key = self._credits_key
        self._credits_key = None


__all__ = ["CreditsSpawner", "TraitError"]
