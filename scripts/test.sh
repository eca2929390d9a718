#!/usr/bin/env bash
# Set up everything the tests need (Debian packages, virtualenv, weights), then run them.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --dev
exec .venv/bin/python -m pytest "$@"
