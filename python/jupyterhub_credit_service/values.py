"""Evaluating and checking the operator's credit settings.

Settings are integers or callables (sync or async) with the signatures of the
spec. Everything is checked here, so that a mistake names the setting and the
wrong value.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

from .errors import CreditsConfigError

#: Largest credit amount or interval: JSON clients keep it exact.
VALUE_MAX = 2**53 - 1

#: Keys a per-user pool dict may hold (the list form of credits_user).
POOL_KEYS = {"name", "cap", "grant_value", "grant_interval", "project", "user_options"}
#: Keys a project dict may hold.
PROJECT_KEYS = {"name", "cap", "grant_value", "grant_interval"}


async def resolve(value: Any, *args: Any) -> Any:
    """The value itself, or what the callable returns (awaited if needed)."""
    if callable(value):
        value = value(*args)
        if inspect.isawaitable(value):
            value = await value
    return value


def check_int(name: str, value: Any, minimum: int = 0) -> int:
    """An integer in minimum..2**53-1 (bools are refused)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise CreditsConfigError(
            f"{name}: {value!r} is not an integer (expected a whole number from {minimum} to {VALUE_MAX})"
        )
    if not minimum <= value <= VALUE_MAX:
        raise CreditsConfigError(f"{name}: {value!r} is out of range (expected {minimum} to {VALUE_MAX})")
    return value


def check_name(name: str, value: Any) -> str:
    """A non-empty name without control characters."""
    if not isinstance(value, str) or not value or len(value.encode()) > 255:
        raise CreditsConfigError(f"{name}: {value!r} is not a name (a non-empty string of at most 255 bytes)")
    if re.search(r"[\x00-\x1f\x7f]", value):
        raise CreditsConfigError(f"{name}: {value!r} contains control characters")
    return value


def check_pool(where: str, pool: Any) -> dict:
    """One pool of the list form of credits_user."""
    if not isinstance(pool, dict):
        raise CreditsConfigError(
            f"{where}: {pool!r} is not a dict with name, cap, grant_value, grant_interval"
        )
    unknown = set(pool) - POOL_KEYS
    if unknown:
        raise CreditsConfigError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(POOL_KEYS)}")
    out = {
        "name": check_name(f"{where}.name", pool.get("name", "default")),
        "cap": check_int(f"{where}.cap", pool.get("cap")),
        "grant_value": check_int(f"{where}.grant_value", pool.get("grant_value")),
        "grant_interval": check_int(f"{where}.grant_interval", pool.get("grant_interval"), 1),
        "project": None,
        "user_options": None,
    }
    project = pool.get("project")
    if project is not None:
        out["project"] = check_name(f"{where}.project", project)
    options = pool.get("user_options")
    if options is not None:
        if not isinstance(options, dict):
            raise CreditsConfigError(
                f"{where}.user_options: {options!r} must be a dict such as {{'system': 'gpu'}}"
            )
        out["user_options"] = options
    return out


def check_pools(name: str, value: Any) -> list[dict]:
    """credits_user: a dict, or a list of dicts, each one pool."""
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise CreditsConfigError(f"{name}: {value!r} must be a dict or a non-empty list of dicts")
    pools = [check_pool(f"{name}[{i}]", p) for i, p in enumerate(value)]
    names = [p["name"] for p in pools]
    if len(set(names)) != len(names):
        raise CreditsConfigError(f"{name}: pool names must be unique, got {names}")
    return pools


def check_projects(name: str, value: Any) -> list[dict]:
    """credits_available_projects: a list of project dicts."""
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        raise CreditsConfigError(f"{name}: {value!r} must be a list of dicts")
    out = []
    for i, project in enumerate(value):
        where = f"{name}[{i}]"
        if not isinstance(project, dict):
            raise CreditsConfigError(f"{where}: {project!r} is not a dict")
        unknown = set(project) - PROJECT_KEYS
        if unknown:
            raise CreditsConfigError(
                f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(PROJECT_KEYS)}"
            )
        out.append(
            {
                "name": check_name(f"{where}.name", project.get("name")),
                "cap": check_int(f"{where}.cap", project.get("cap")),
                "grant_value": check_int(f"{where}.grant_value", project.get("grant_value")),
                "grant_interval": check_int(f"{where}.grant_interval", project.get("grant_interval"), 1),
            }
        )
    names = [p["name"] for p in out]
    if len(set(names)) != len(names):
        raise CreditsConfigError(f"{name}: project names must be unique, got {names}")
    return out
