"""bench-hub adapter for jupyterhub-credit-service (this repository).

Use with the load harness in shared/bench-hub:

    $PY bench_hub.py --impl /path/to/repo/bench/hub_adapter.py --users 1000

The venv running bench_hub.py must have this package installed (pip install .).
The credit service runs as the hub's managed service; its billing rounds are
read from its JSON log lines in the hub log ("billing round done").
"""

import json
import os
import re
import sqlite3
from importlib.metadata import PackageNotFoundError, version

NAME = "jupyterhub-credit-service-rs"

# Nothing of ours goes through the hub's Python loggers at debug level.
LOG_KEEP_PREFIXES = ()

_ROUND = re.compile(r'"message":"billing round done","seconds":([0-9.eE+-]+)')


def hub_config(opts):
    credits = bool(opts["credits"])
    return f'''
import socket as _socket
from jupyterhub_credit_service import CreditsAuthenticator, CreditsSpawner


class BenchAuth(DummyAuthenticator, CreditsAuthenticator):
    pass


class BenchSpawner(CheapSpawner, CreditsSpawner):
    pass


def _free_port():
    with _socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


c.JupyterHub.authenticator_class = BenchAuth
c.JupyterHub.spawner_class = BenchSpawner
c.BenchAuth.credits_enabled = {credits!r}
# Balance starts at cap, so nobody runs dry during a run; grants after 600 s.
c.BenchAuth.credits_user = {{"name": "default", "cap": 1000000, "grant_value": 10, "grant_interval": 600}}
c.BenchAuth.credits_task_interval = {int(opts["task_interval"])}
c.BenchAuth.credits_service_port = _free_port()
c.BenchAuth.credits_service_environment = {{"CREDIT_SERVICE_LOG_FORMAT": "json"}}
c.BenchSpawner.billing_value = {int(opts["billing_value"])}
c.BenchSpawner.billing_interval = {int(opts["billing_interval"])}
'''


def parse_ticks(text):
    return [float(m.group(1)) for m in _ROUND.finditer(text)]


def count_rows(db_path):
    path = os.path.join(os.path.dirname(db_path), "jupyterhub_credits.sqlite")
    if not os.path.exists(path):
        return {}
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        out = {}
        for table in ("pools", "servers", "charges", "journal"):
            try:
                out[table] = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            except sqlite3.OperationalError:
                out[table] = None
        return out
    finally:
        con.close()


def versions():
    out = {}
    for pkg in ("jupyterhub-credit-service",):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


if __name__ == "__main__":  # a quick self-check of the parser
    line = json.dumps({"fields": {"message": "billing round done", "seconds": 0.0042}})
    line = line.replace('{"message"', '{"message"').replace(", ", ",").replace(": ", ":")
    print(parse_ticks(line))
