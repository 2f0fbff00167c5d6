#!/usr/bin/env bash
# Benchmark of the credit ledger (DESIGN §6): billing rounds with 100,000
# users and 10,000 running servers, and admission latency, on SQLite and
# PostgreSQL. Arguments are passed on, e.g. --backend sqlite, --json, --help.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --release -p credit-bench -- --backend both "$@"
