"""End-to-end fixtures: a real JupyterHub subprocess with the real proxy
(configurable-http-proxy) and the real credit service, managed by the hub and
started by the plugin. Tests talk to it only through HTTP, as users and
admins would.

Environment:
- CREDITS_TEST_DATABASE: ``sqlite`` (default) or ``postgres`` (a fresh
  PostgreSQL database per hub, on 127.0.0.1:5432 as user postgres).
- CREDITS_TEST_CHP_DIR: the directory holding ``configurable-http-proxy``
  (default /tmp/chp/node_modules/.bin).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests

VENV_BIN = os.path.dirname(sys.executable)
CHP_DIR = os.environ.get("CREDITS_TEST_CHP_DIR", "/tmp/chp/node_modules/.bin")
DATABASE = os.environ.get("CREDITS_TEST_DATABASE", "sqlite").strip().lower()
PG_HOST = os.environ.get("CREDITS_TEST_PG_HOST", "127.0.0.1")
PG_USER = os.environ.get("CREDITS_TEST_PG_USER", "postgres")
SERVICE = "credits"
#: "mini" (default): a minimal HTTP server as single-user server, except for
#: users whose name starts with "real"; "real": jupyterhub-singleuser for all.
SINGLEUSER = os.environ.get("CREDITS_TEST_SINGLEUSER", "mini").strip().lower()
MINI_SERVER = str(Path(__file__).with_name("mini_singleuser.py"))
SERVICE_BINARY = "jupyterhub-credit-service"

if DATABASE not in ("sqlite", "postgres"):
    raise RuntimeError(f"CREDITS_TEST_DATABASE={DATABASE!r}: use sqlite or postgres")

#: Log lines left out of the log excerpt of a failed test.
_NOISE = re.compile(
    r"xsrf|ConfigProxy|200 GET /hub/api/(credits|users/|user |user\)|\s)"
    r"|200 GET /hub/login|302 POST /hub/login"
)

#: Every hub started in this session, for the log dump of a failed test.
_HUBS: list[Hub] = []


# ---- helpers ----------------------------------------------------------


def free_ports(n: int) -> list[int]:
    """n distinct free TCP ports on 127.0.0.1."""
    socks, ports = [], []
    try:
        while len(ports) < n:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_for(predicate, timeout: float, interval: float = 0.25, message: str = "condition"):
    """Polls predicate() until it returns something truthy; returns that."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}; last value: {last!r}")
        time.sleep(interval)


def _psql(sql: str, db: str = "postgres") -> None:
    subprocess.run(
        ["psql", "-h", PG_HOST, "-U", PG_USER, "-d", db, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql],
        check=True,
        capture_output=True,
        timeout=60,
    )


def _children() -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        out.setdefault(ppid, []).append(int(entry))
    return out


def descendants(pid: int) -> list[int]:
    """All processes below pid (children, grandchildren, ...)."""
    tree = _children()
    out, todo = [], [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (OSError, IndexError):
        return False


def processes_in(directory: Path) -> list[int]:
    """Processes whose working directory lies in directory (the hub, its
    proxy, its service and the single-user servers all run there)."""
    root = str(directory.resolve())
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except OSError:
            continue
        if cwd == root or cwd.startswith(root + "/"):
            out.append(int(entry))
    return out


def sse_events(response, until, timeout: float) -> list[dict]:
    """Reads `data:` events of a text/event-stream until until(event) or timeout."""
    events: list[dict] = []
    deadline = time.monotonic() + timeout
    for line in response.iter_lines(decode_unicode=True):
        if line and line.startswith("data:"):
            event = json.loads(line[5:].strip())
            events.append(event)
            if until(event):
                break
        if time.monotonic() > deadline:
            break
    response.close()
    return events


# ---- the hub ----------------------------------------------------------

BASE_CONFIG = '''
import os
import sys
import jupyterhub_credit_service
from jupyterhub.auth import DummyAuthenticator
from jupyterhub.spawner import SimpleLocalProcessSpawner

c = get_config()  # noqa: F821


class MixinAuthenticator(DummyAuthenticator, jupyterhub_credit_service.CreditsAuthenticator):
    pass


c.JupyterHub.authenticator_class = MixinAuthenticator
c.MixinAuthenticator.admin_users = {"admin"}
c.MixinAuthenticator.allow_all = True
c.MixinAuthenticator.credits_task_interval = 2
c.MixinAuthenticator.credits_service_port = SERVICE_PORT
if DATABASE_URL:
    c.MixinAuthenticator.credits_database_url = DATABASE_URL
c.MixinAuthenticator.credits_service_environment = {"CREDIT_SERVICE_LOG_LEVEL": "info"}


class Spawner(SimpleLocalProcessSpawner, jupyterhub_credit_service.CreditsSpawner):
    pass


c.JupyterHub.spawner_class = Spawner
c.Spawner.billing_value = 5
c.Spawner.billing_interval = 4
c.Spawner.args = ["--allow-root"] if os.getuid() == 0 else []


def choose_single_user_server(spawner):
    """jupyterhub-singleuser for users named real*, else the minimal server;
    user_options {"delay": N} keeps the minimal server pending N seconds,
    {"crash": true} makes the spawner fail to start it (no such program)."""
    if spawner.user_options.get("crash"):
        spawner.cmd = [os.path.join(TEST_DIR, "no-such-single-user-server")]
    elif SINGLEUSER == "real" or spawner.user.name.startswith("real"):
        spawner.cmd = ["jupyterhub-singleuser"]
    else:
        spawner.cmd = [sys.executable, MINI_SERVER]
        spawner.environment = dict(spawner.environment, MINI_DELAY=str(spawner.user_options.get("delay", 0)))


c.Spawner.pre_spawn_hook = choose_single_user_server
c.JupyterHub.tornado_settings = {"slow_spawn_timeout": 5}
c.Spawner.home_dir_template = os.path.join(TEST_DIR, "home", "{username}")
c.Spawner.start_timeout = 60
c.Spawner.http_timeout = 60
c.Spawner.poll_interval = 5

c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = HUB_PORT
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = HUB_API_PORT
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:%d" % PROXY_API_PORT
c.ConfigurableHTTPProxy.pid_file = os.path.join(TEST_DIR, "jupyterhub-proxy.pid")
c.JupyterHub.db_url = "sqlite:///" + os.path.join(TEST_DIR, "jupyterhub.sqlite")
c.JupyterHub.cookie_secret_file = os.path.join(TEST_DIR, "jupyterhub_cookie_secret")
c.JupyterHub.last_activity_interval = 3600
c.JupyterHub.cleanup_servers = False
'''


class Hub:
    """One JupyterHub in a directory of its own."""

    def __init__(self, directory: Path, extra_config: str = "", *, wait_service: bool = True):
        self.dir = Path(directory)
        self.extra_config = textwrap.dedent(extra_config)
        self.wait_service = wait_service
        self.hub_port, self.hub_api_port, self.proxy_api_port, self.service_port = free_ports(4)
        self.url = f"http://127.0.0.1:{self.hub_port}"
        self.service_url = f"{self.url}/services/{SERVICE}/"
        self.log_path = self.dir / "hub.log"
        self.config_path = self.dir / "jupyterhub_config.py"
        self.proc: subprocess.Popen | None = None
        self.pg_database = None
        self.database_url = ""
        if DATABASE == "postgres":
            self.pg_database = "credits_e2e_" + uuid.uuid4().hex[:12]
            _psql(f'CREATE DATABASE "{self.pg_database}"')
            self.database_url = f"postgresql://{PG_USER}@{PG_HOST}:5432/{self.pg_database}"
        self._admin_token = None
        self._seen_pids: set[int] = set()
        self.write_config()
        _HUBS.append(self)

    # -- config, start, stop ---------------------------------------------

    def write_config(self):
        header = (
            f"TEST_DIR = {str(self.dir)!r}\n"
            f"HUB_PORT = {self.hub_port}\n"
            f"HUB_API_PORT = {self.hub_api_port}\n"
            f"PROXY_API_PORT = {self.proxy_api_port}\n"
            f"SERVICE_PORT = {self.service_port}\n"
            f"DATABASE_URL = {self.database_url!r}\n"
            f"SINGLEUSER = {SINGLEUSER!r}\n"
            f"MINI_SERVER = {MINI_SERVER!r}\n"
        )
        self.config_path.write_text(header + BASE_CONFIG + "\n# ---- test-specific\n" + self.extra_config)

    def env(self) -> dict:
        env = dict(os.environ)
        env["PATH"] = os.pathsep.join([CHP_DIR, VENV_BIN, env.get("PATH", "")])
        for name in list(env):
            if name.startswith(("JUPYTERHUB_", "CREDIT_SERVICE_")):
                del env[name]
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def launch(self):
        """Starts `jupyterhub -f config` without waiting."""
        assert self.proc is None or self.proc.poll() is not None, "hub already running"
        log = open(self.log_path, "ab")
        log.write(f"\n===== hub start at {time.strftime('%H:%M:%S')} =====\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            [os.path.join(VENV_BIN, "jupyterhub"), "-f", str(self.config_path)],
            cwd=self.dir,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()

    def start(self, timeout: float = 90):
        self.launch()
        self.wait_up(timeout)
        return self

    def wait_up(self, timeout: float = 90):
        deadline = time.monotonic() + timeout

        def up(path):
            try:
                return requests.get(self.url + path, timeout=3).status_code == 200
            except requests.RequestException:
                return False

        while not up("/hub/api/"):
            self._check_running()
            if time.monotonic() > deadline:
                raise AssertionError(f"hub did not come up in {timeout}s\n{self.log_tail()}")
            time.sleep(0.3)
        if self.wait_service:
            while not up(f"/services/{SERVICE}/health"):
                self._check_running()
                if time.monotonic() > deadline:
                    raise AssertionError(f"credit service did not come up in {timeout}s\n{self.log_tail()}")
                time.sleep(0.3)
        self._remember_pids()

    def _check_running(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"hub exited with {self.proc.returncode}\n{self.log_tail()}")

    def _remember_pids(self):
        if self.proc is not None:
            self._seen_pids.update(descendants(self.proc.pid))

    def wait_exit(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"hub still running after {timeout}s\n{self.log_tail()}") from None

    def kill_hub(self, sig=signal.SIGKILL):
        """Kills only the hub process (kill -9 by default)."""
        self._remember_pids()
        os.kill(self.proc.pid, sig)
        self.proc.wait(30)

    def service_pids(self) -> list[int]:
        if self.proc is None or self.proc.poll() is not None:
            return []
        return [p for p in descendants(self.proc.pid) if SERVICE_BINARY in cmdline(p) and alive(p)]

    def cleanup(self):
        """Kills the hub, its proxy, service and single-user servers."""
        if self.proc is not None and self.proc.poll() is None:
            self._remember_pids()
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(30)
        pids = set(self._seen_pids) | set(processes_in(self.dir))
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + 10
        while any(alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        if self.pg_database:
            try:
                _psql(f'DROP DATABASE IF EXISTS "{self.pg_database}" WITH (FORCE)')
            except subprocess.CalledProcessError as e:
                print(f"could not drop {self.pg_database}: {e.stderr!r}", file=sys.stderr)
        if self in _HUBS:
            _HUBS.remove(self)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, n: int = 80, quiet: bool = False) -> str:
        lines = self.log_text().splitlines()
        if quiet:
            lines = [line for line in lines if not _NOISE.search(line)]
        return "\n".join(lines[-n:])

    # -- HTTP as users and admins -------------------------------------

    def login(self, name: str, password: str = "pw") -> requests.Session:
        """A browser-like session logged in as name, with the _xsrf header set."""
        s = requests.Session()
        r = s.get(self.url + "/hub/login", timeout=10)
        r.raise_for_status()
        xsrf = s.cookies.get("_xsrf")
        assert xsrf, "no _xsrf cookie from /hub/login"
        r = s.post(
            self.url + "/hub/login",
            data={"username": name, "password": password, "_xsrf": xsrf},
            allow_redirects=False,
            timeout=30,
        )
        assert r.status_code == 302, f"login of {name} failed: {r.status_code} {r.text[:500]}"
        s.headers["X-XSRFToken"] = s.cookies.get("_xsrf") or xsrf
        s.hub_user = name
        return s

    def new_token(self, session: requests.Session, name: str) -> str:
        r = session.post(
            f"{self.url}/hub/api/users/{name}/tokens",
            json={"note": "e2e test", "expires_in": 3600},
            timeout=10,
        )
        assert r.status_code in (200, 201), f"token for {name}: {r.status_code} {r.text}"
        return r.json()["token"]

    @property
    def admin_token(self) -> str:
        if self._admin_token is None:
            session = self.login("admin")
            self._admin_token = self.new_token(session, "admin")
        return self._admin_token

    def request(self, method: str, path: str, token: str | None = None, session=None, **kw):
        """An HTTP call to the hub's public URL; path starts with /."""
        kw.setdefault("timeout", 30)
        if session is not None:
            return session.request(method, self.url + path, **kw)
        headers = dict(kw.pop("headers", {}) or {})
        token = self.admin_token if token is None else token
        if token:
            headers["Authorization"] = f"token {token}"
        return requests.request(method, self.url + path, headers=headers, **kw)

    def api(self, method: str, path: str, **kw):
        """The hub REST API: path relative to /hub/api/."""
        return self.request(method, "/hub/api/" + path.lstrip("/"), **kw)

    def service(self, method: str, path: str, **kw):
        """The credit service: path relative to /services/credits/."""
        return self.request(method, f"/services/{SERVICE}/" + path.lstrip("/"), **kw)

    # -- servers ----------------------------------------------------------

    def spawn(self, who, name: str, options: dict | None = None, server_name: str = ""):
        """POST /hub/api/users/{name}/server[/server_name] with user_options.
        who: a logged-in Session, a token, or None for the admin token."""
        path = f"users/{name}/server" + (f"s/{server_name}" if server_name else "")
        kw = {"json": options or {}, "timeout": 60}
        if isinstance(who, requests.Session):
            return self.api("POST", path, session=who, **kw)
        return self.api("POST", path, token=who, **kw)

    def user_model(self, name: str) -> dict:
        r = self.api("GET", f"users/{name}")
        assert r.status_code == 200, r.text
        return r.json()

    def server_model(self, name: str, server_name: str = ""):
        return self.user_model(name).get("servers", {}).get(server_name)

    def wait_ready(self, name: str, server_name: str = "", timeout: float = 90) -> dict:
        def ready():
            server = self.server_model(name, server_name)
            return server if server and server.get("ready") else None

        return wait_for(ready, timeout, 0.3, f"server {name}/{server_name} ready")

    def wait_gone(self, name: str, server_name: str = "", timeout: float = 60):
        wait_for(
            lambda: self.server_model(name, server_name) is None,
            timeout,
            0.3,
            f"server {name}/{server_name} gone",
        )

    def stop(self, name: str, server_name: str = "", timeout: float = 60):
        path = f"users/{name}/server" + (f"s/{server_name}" if server_name else "")
        r = self.api("DELETE", path)
        assert r.status_code in (202, 204), f"stop {name}: {r.status_code} {r.text}"
        self.wait_gone(name, server_name, timeout)

    def progress(self, name: str, server_name: str = "", timeout: float = 90) -> list[dict]:
        """The spawn's progress events, until ready or failed."""
        path = f"/hub/api/users/{name}/server" + (f"s/{server_name}" if server_name else "") + "/progress"
        r = requests.get(
            self.url + path,
            headers={"Authorization": f"token {self.admin_token}"},
            stream=True,
            timeout=timeout,
        )
        if r.status_code != 200:
            return [{"http_status": r.status_code, "body": r.text}]
        return sse_events(r, lambda e: e.get("ready") or e.get("failed"), timeout)

    # -- credits ----------------------------------------------------------

    def credits(self, name: str) -> dict:
        r = self.service("GET", f"api/v1/users/{name}")
        assert r.status_code == 200, f"credits of {name}: {r.status_code} {r.text}"
        return r.json()

    def pool(self, name: str, pool: str = "default") -> dict:
        view = self.credits(name)
        for p in view["pools"]:
            if p["name"] == pool:
                return p
        raise AssertionError(f"{name} has no pool {pool!r}: {view}")

    def balance(self, name: str, pool: str = "default") -> int:
        return self.pool(name, pool)["balance"]

    def journal(self, name: str) -> list[dict]:
        """The whole journal of a user, oldest first."""
        entries, before = [], None
        while True:
            path = f"api/v1/users/{name}/journal?limit=1000" + (f"&before={before}" if before else "")
            r = self.service("GET", path)
            assert r.status_code == 200, r.text
            page = r.json()
            entries.extend(page["items"])
            if not page.get("next"):
                break
            before = page["next"]
        return list(reversed(entries))

    def project_journal(self, name: str) -> list[dict]:
        r = self.service("GET", f"api/v1/projects/{name}/journal?limit=1000")
        assert r.status_code == 200, r.text
        return list(reversed(r.json()["items"]))

    def project(self, name: str) -> dict:
        r = self.service("GET", f"api/v1/projects/{name}")
        assert r.status_code == 200, r.text
        return r.json()

    def set_pool(self, name: str, pool: str = "default", **fields) -> dict:
        r = self.service("PATCH", f"api/v1/users/{name}/pools/{pool}", json=fields)
        assert r.status_code == 200, f"PATCH {name}/{pool} {fields}: {r.status_code} {r.text}"
        return r.json()


def charges(journal: list[dict], server_key_part: str | None = None) -> list[dict]:
    return [e for e in journal if e["kind"] == "charge"]


# ---- fixtures ---------------------------------------------------------


class HubFactory:
    def __init__(self, tmp_path_factory, prefix: str):
        self.tmp_path_factory = tmp_path_factory
        self.prefix = prefix
        self.hubs: list[Hub] = []

    def __call__(
        self, extra_config: str = "", *, start: bool = True, wait_service: bool = True, name=None
    ) -> Hub:
        directory = self.tmp_path_factory.mktemp(name or self.prefix)
        hub = Hub(directory, extra_config, wait_service=wait_service)
        self.hubs.append(hub)
        if start:
            hub.start()
        return hub

    def many(self, configs: dict, *, start: bool = True, wait_service: bool = True) -> dict:
        """Several hubs, launched together (hub starts overlap), then waited for."""
        hubs = {
            key: self(extra, start=False, wait_service=wait_service, name=key)
            for key, extra in configs.items()
        }
        if start:
            for hub in hubs.values():
                hub.launch()
            for hub in hubs.values():
                hub.wait_up()
        return hubs

    def cleanup(self):
        for hub in self.hubs:
            hub.cleanup()


@pytest.fixture(scope="module")
def hub_factory(request, tmp_path_factory):
    """Makes hubs that live until the end of the module."""
    factory = HubFactory(tmp_path_factory, request.module.__name__.rsplit(".", 1)[-1])
    yield factory
    factory.cleanup()


@pytest.fixture
def fresh_hub_factory(request, tmp_path_factory):
    """Makes hubs that live until the end of the test."""
    factory = HubFactory(tmp_path_factory, request.node.name[:30])
    yield factory
    factory.cleanup()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed and _HUBS:
        for hub in list(_HUBS):
            report.sections.append((f"hub log {hub.dir} (tail, quiet)", hub.log_tail(120, quiet=True)))
    return report


def run_in_thread(fn, *args, **kwargs) -> threading.Thread:
    """Runs fn in a daemon thread; the result lands in thread.result."""

    def target():
        try:
            thread.result = fn(*args, **kwargs)
        except BaseException as e:  # noqa: BLE001
            thread.result = e

    thread = threading.Thread(target=target, daemon=True)
    thread.result = None
    thread.start()
    return thread
