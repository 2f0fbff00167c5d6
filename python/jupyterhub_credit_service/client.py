"""The plugin's client of the credit service's internal API."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

SECRET_HEADER = "X-Credits-Plugin-Secret"
ACTOR_HEADER = "X-Credits-Actor"


class ServiceUnavailable(Exception):
    """The credit service could not be reached or failed."""


class ServiceRejected(Exception):
    """The credit service answered 4xx; `status` and `message` say why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def segment(name: str) -> str:
    """A URL path segment for a user, pool, project or key."""
    return quote(name, safe="")


class CreditClient:
    """Calls `internal/v1/` of one credit service."""

    def __init__(self, base_url: str, secret: str, timeout: float = 10.0):
        self.base_url = base_url.rstrip("/") + "/"
        self.secret = secret
        self.timeout = timeout

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        actor: str | None = None,
        raw_body: bytes | None = None,
    ) -> Any:
        headers = {SECRET_HEADER: self.secret, "Content-Type": "application/json"}
        if actor:
            headers[ACTOR_HEADER] = actor
        data = raw_body if raw_body is not None else (None if body is None else json.dumps(body).encode())
        if data is None and method in ("POST", "PUT", "PATCH"):
            data = b""
        request = HTTPRequest(
            self.base_url + path,
            method=method,
            headers=headers,
            body=data,
            request_timeout=self.timeout,
            connect_timeout=self.timeout,
        )
        try:
            response = await AsyncHTTPClient().fetch(request, raise_error=True)
        except HTTPClientError as e:
            if e.response is not None and 400 <= e.code < 500:
                try:
                    message = json.loads(e.response.body or b"{}").get("message", str(e))
                except ValueError:
                    message = str(e)
                raise ServiceRejected(e.code, message) from e
            raise ServiceUnavailable(f"the credit service answered {e.code}") from e
        except Exception as e:  # connection refused, timeout, DNS
            raise ServiceUnavailable(f"the credit service at {self.base_url} is unreachable: {e}") from e
        return json.loads(response.body) if response.body else None

    async def put_projects(self, projects: list[dict]) -> Any:
        return await self.call("PUT", "internal/v1/projects", projects)

    async def put_user(self, name: str, pools: list[dict]) -> Any:
        return await self.call("PUT", f"internal/v1/users/{segment(name)}", {"pools": pools})

    async def get_user(self, name: str) -> Any:
        return await self.call("GET", f"internal/v1/users/{segment(name)}")

    async def admit(self, request: dict) -> Any:
        return await self.call("POST", "internal/v1/spawns", request)

    async def ready(self, key: str, ready_at: str | None = None) -> Any:
        body = {} if ready_at is None else {"ready_at": ready_at}
        return await self.call("POST", f"internal/v1/spawns/{segment(key)}/ready", body)

    async def stopped(self, key: str) -> Any:
        return await self.call("POST", f"internal/v1/spawns/{segment(key)}/stopped")

    async def patch_pool(self, user: str, pool: str, body: bytes, actor: str) -> Any:
        path = f"internal/v1/users/{segment(user)}/pools/{segment(pool)}"
        return await self.call("PATCH", path, actor=actor, raw_body=body)

    async def patch_project(self, name: str, body: bytes, actor: str) -> Any:
        return await self.call("PATCH", f"internal/v1/projects/{segment(name)}", actor=actor, raw_body=body)
