"""The compatibility API under /hub/api/credits, so admin scripts written for
the original package keep working. Each call forwards to the credit service."""

from __future__ import annotations

import json

from jupyterhub.apihandlers import APIHandler
from tornado import web

from .client import ServiceRejected, ServiceUnavailable


class _Base(APIHandler):
    @property
    def credits(self):
        return self.authenticator

    def fail(self, status: int, message: str):
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"status": status, "message": message}))

    async def forward(self, call):
        try:
            return await call
        except ServiceRejected as e:
            self.fail(e.status, e.message)
        except ServiceUnavailable as e:
            self.log.warning("credits: %s", e)
            self.fail(503, "The credit service can't be reached; try again shortly.")
        return None

    def require_admin(self):
        if self.current_user is None:
            raise web.HTTPError(403, "authentication required")
        if "admin:users" not in self.expanded_scopes:
            raise web.HTTPError(403, "this needs the scope admin:users")
        if not self.credits.credits_enabled:
            raise web.HTTPError(404, "credits are disabled on this hub")

    def translated_body(self, rename: dict) -> bytes | None:
        """The JSON body with the original package's field names mapped to
        the service's; types are left alone so the service rejects bad ones."""
        try:
            body = json.loads(self.request.body or b"")
        except ValueError as e:
            self.fail(400, f"the body is not valid JSON: {e}")
            return None
        if not isinstance(body, dict):
            self.fail(400, 'the body must be a JSON object such as {"balance": 10}')
            return None
        translated = {rename.get(k, k): v for k, v in body.items()}
        return json.dumps(translated).encode()


def _compat_view(view: dict) -> dict:
    """The first pool in the original package's shape."""
    pool = view["pools"][0] if view.get("pools") else {}
    project = pool.get("project")
    return {
        "name": view.get("name"),
        "balance": pool.get("balance"),
        "cap": pool.get("cap"),
        "grant_value": pool.get("grant_value"),
        "grant_interval": pool.get("grant_interval"),
        "grant_last_update": pool.get("next_grant_at"),
        "project": project,
        "pools": view.get("pools", []),
    }


class CreditsHandler(_Base):
    """GET /hub/api/credits: the caller's credits."""

    async def get(self):
        user = self.current_user
        if user is None:
            raise web.HTTPError(403, "authentication required")
        if not self.credits.credits_enabled:
            return self.fail(404, "credits are disabled on this hub")
        view = await self.forward(self.credits.credits_client.get_user(user.name))
        if view is not None:
            self.write(_compat_view(view))


class UserCreditsHandler(_Base):
    """POST /hub/api/credits/user/{name}: balance, cap, grant_value,
    grant_interval, project_name (scope admin:users)."""

    async def post(self, name):
        self.require_admin()
        body = self.translated_body({"project_name": "project"})
        if body is None:
            return
        actor = self.current_user.name
        view = await self.forward(self.credits.credits_client.patch_pool(name, "default", body, actor))
        if view is not None:
            self.write(view)


class ProjectCreditsHandler(_Base):
    """POST /hub/api/credits/project/{name} (scope admin:users)."""

    async def post(self, name):
        self.require_admin()
        body = self.translated_body({})
        if body is None:
            return
        actor = self.current_user.name
        view = await self.forward(self.credits.credits_client.patch_project(name, body, actor))
        if view is not None:
            self.write(view)
