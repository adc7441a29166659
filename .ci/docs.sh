#!/usr/bin/env bash
# CI: build the documentation site with the pinned tooling; any warning fails the build.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${DOCS_VENV:-.venv-docs}"
[ -x "$VENV/bin/mkdocs" ] || { python3 -m venv "$VENV" && "$VENV/bin/pip" install --quiet -r requirements-docs.lock; }
SITE="$(mktemp -d)"
trap 'rm -rf "$SITE"' EXIT
NO_MKDOCS_2_WARNING=1 "$VENV/bin/mkdocs" build --strict --site-dir "$SITE"
