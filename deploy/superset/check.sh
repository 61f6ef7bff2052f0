#!/usr/bin/env bash
# The Superset starter kit, proven in a real browser (issue 24).
#
#   bash deploy/superset/check.sh
#
# Installs what is missing (Debian chromium, chromium-driver, fonts-noto-cjk; a virtualenv with
# apache-superset 6.1.0 and the packages it needs pinned beside it, and selenium), runs
# `helpdesk-sync demo` into a fresh database, creates a login role in helpdesk_sync_reader,
# initialises a throw-away Superset (SQLite metadata in a temp dir), imports the bundle
# deploy/superset/helpdesk_overview/ with the database URI of that read-only login, starts
# Superset on a free localhost port and drives headless Chromium: log in, open "Helpdesk
# overview", fail unless every chart rendered without an error, then filter the notes table on
# an author id above 2^53 and fail unless it shows exactly that author's rows.
# Screenshots and logs: target/superset-check/. Needs no stdin; runs as root (installs) or as a
# user with everything already installed.
#
# Environment: SUPERSET_VENV (/opt/superset-venv), HELPDESK_SYNC_BIN (target/debug/helpdesk-sync,
# built with cargo if missing), PG_URL (postgres://postgres@127.0.0.1:5432, a superuser),
# SUPERSET_CHECK_DB (helpdesk_superset_check; dropped and recreated).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
KIT="$ROOT/deploy/superset"
OUT="$ROOT/target/superset-check"
VENV="${SUPERSET_VENV:-/opt/superset-venv}"
PG_URL="${PG_URL:-postgres://postgres@127.0.0.1:5432}"
DB="${SUPERSET_CHECK_DB:-helpdesk_superset_check}"
BIN="${HELPDESK_SYNC_BIN:-target/debug/helpdesk-sync}"
READER_ROLE="${DB}_bi"
PIP_PACKAGES=(apache-superset==6.1.0 rich==15.0.0 cachetools==8.0.3 Flask-Caching==2.3.1
    psycopg2-binary==2.9.13 selenium==4.51.0)
APT_PACKAGES=(chromium chromium-driver fonts-noto-cjk)

START=$SECONDS
step() { printf '[superset-check +%3ds] %s\n' "$((SECONDS - START))" "$*"; }
fail() { printf 'superset check FAILED: %s\n' "$*" >&2; exit 1; }
exec </dev/null

WORK=""
SERVER_PID=""
cleanup() {
    local rc=$?
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    if [[ -n "$WORK" ]]; then
        cp "$WORK"/*.log "$OUT"/ 2>/dev/null || true
        rm -rf "$WORK"
    fi
    if [[ $rc -eq 0 ]]; then
        step "PASSED in $((SECONDS - START))s (screenshots: $OUT)"
    else
        printf '[superset-check +%3ds] FAILED (exit %d); logs and screenshots: %s\n' \
            "$((SECONDS - START))" "$rc" "$OUT" >&2
    fi
}
trap cleanup EXIT

rm -rf "$OUT"
mkdir -p "$OUT"

# 1. system packages
missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    [[ $(id -u) -eq 0 ]] || fail "missing Debian packages ${missing[*]} (run as root to install them)"
    step "apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v /usr/bin/chromium >/dev/null || fail "/usr/bin/chromium not found"
command -v /usr/bin/chromedriver >/dev/null || fail "/usr/bin/chromedriver not found"

# 2. the Superset virtualenv (pinned packages; selenium drives /usr/bin/chromium, downloads nothing)
venv_ok() {
    "$VENV/bin/python" - "${PIP_PACKAGES[@]}" 2>/dev/null <<'EOF'
import sys
from importlib.metadata import version
for spec in sys.argv[1:]:
    name, want = spec.split("==")
    if version(name) != want:
        sys.exit(1)
EOF
}
if ! venv_ok; then
    step "installing ${PIP_PACKAGES[*]} into $VENV"
    if [[ ! -x "$VENV/bin/python" ]]; then
        python3 -m venv "$VENV" 2>/dev/null || {
            [[ $(id -u) -eq 0 ]] || fail "python3 -m venv failed (install python3-venv)"
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
            python3 -m venv "$VENV"
        }
    fi
    "$VENV/bin/pip" install -q "${PIP_PACKAGES[@]}" || fail "pip install into $VENV failed"
    venv_ok || fail "$VENV does not have ${PIP_PACKAGES[*]} after pip install"
fi
PY="$VENV/bin/python"
SUPERSET="$VENV/bin/superset"
step "venv $VENV: $("$PY" -c 'from importlib.metadata import version as v; print("apache-superset", v("apache-superset"), "selenium", v("selenium"))'); $(/usr/bin/chromium --version 2>/dev/null)"

"$PY" "$KIT/kit.py" contract

# 3. the helpdesk-sync binary
if [[ ! -x "$BIN" ]]; then
    step "building helpdesk-sync (cargo build)"
    cargo build --quiet || fail "cargo build failed"
    BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/helpdesk-sync"
    [[ -x "$BIN" ]] || fail "no binary at $BIN after cargo build"
fi

# 4. the demo database, and a login role in helpdesk_sync_reader
step "helpdesk-sync demo into a fresh database $DB"
"$PY" - "$PG_URL/postgres" "$DB" <<'EOF' || fail "cannot drop database $DB at $PG_URL"
import sys, psycopg2
from psycopg2 import sql
con = psycopg2.connect(sys.argv[1]); con.autocommit = True
con.cursor().execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(sys.argv[2])))
EOF
BIN="$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")"
# In $OUT: the demo leaves its config file in the current directory.
(cd "$OUT" && DATABASE_URL="$PG_URL/$DB" "$BIN" demo >"$OUT/demo.log" 2>&1) ||
    { tail -20 "$OUT/demo.log" >&2; fail "helpdesk-sync demo failed (log: $OUT/demo.log)"; }
READER_PASSWORD="$("$PY" -c 'import secrets; print(secrets.token_hex(16))')"
"$PY" "$KIT/kit.py" reader-role "$PG_URL/$DB" "$READER_ROLE" "$READER_PASSWORD"
PG_HOSTPORT="${PG_URL#*://}"; PG_HOSTPORT="${PG_HOSTPORT#*@}"
READER_URL="postgresql://$READER_ROLE:$READER_PASSWORD@$PG_HOSTPORT/$DB"
step "read-only login $READER_ROLE IN ROLE helpdesk_sync_reader"

# 5. a throw-away Superset: SQLite metadata and a secret key in a temp dir
WORK="$(mktemp -d /tmp/superset-check.XXXXXX)"
export SUPERSET_CONFIG_PATH="$WORK/superset_config.py"
export SUPERSET_HOME="$WORK/home"
cat >"$SUPERSET_CONFIG_PATH" <<EOF
SECRET_KEY = "$("$PY" -c 'import secrets; print(secrets.token_urlsafe(42))')"
SQLALCHEMY_DATABASE_URI = "sqlite:///$WORK/superset.db"
# render every chart at once (no lazy loading below the fold) so the check sees them all
FEATURE_FLAGS = {"DASHBOARD_VIRTUALIZATION": False}
DATA_CACHE_CONFIG = {"CACHE_TYPE": "NullCache"}
RATELIMIT_STORAGE_URI = "memory://"
TALISMAN_ENABLED = False
EOF
export SUPERSET_ADMIN_PASSWORD="admin"
step "superset db upgrade / create-admin / init"
"$SUPERSET" db upgrade >"$WORK/superset-init.log" 2>&1 || fail "superset db upgrade failed ($OUT/superset-init.log)"
"$SUPERSET" fab create-admin --username admin --firstname Check --lastname Admin \
    --email admin@localhost --password "$SUPERSET_ADMIN_PASSWORD" >>"$WORK/superset-init.log" 2>&1 ||
    fail "superset fab create-admin failed ($OUT/superset-init.log)"
"$SUPERSET" init >>"$WORK/superset-init.log" 2>&1 || fail "superset init failed ($OUT/superset-init.log)"

# 6. the server on a free localhost port
PORT="$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
step "superset run on 127.0.0.1:$PORT"
"$SUPERSET" run -h 127.0.0.1 -p "$PORT" --with-threads >"$WORK/superset-server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 120); do
    kill -0 "$SERVER_PID" 2>/dev/null || { tail -20 "$WORK/superset-server.log" >&2; fail "superset server exited"; }
    if "$PY" -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:$PORT/health', timeout=2).status == 200 else 1)" 2>/dev/null; then
        break
    fi
    sleep 1
done
"$PY" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$PORT/health', timeout=5)" 2>/dev/null ||
    fail "superset did not answer /health within 120s"

# 7. import the bundle as a user would in "Dashboards > Import dashboard": the database URI with
#    the password masked (XXXXXXXXXX), the password given beside it
step "import the bundle through the REST API (database: $READER_ROLE@$PG_HOSTPORT/$DB)"
"$PY" "$KIT/kit.py" bundle "$WORK/helpdesk_overview.zip" "postgresql://$READER_ROLE:XXXXXXXXXX@$PG_HOSTPORT/$DB"
"$PY" "$KIT/kit.py" import "http://127.0.0.1:$PORT" "$WORK/helpdesk_overview.zip" "$READER_PASSWORD"

# 8. headless Chromium
step "headless chromium: log in, render every chart, filter on an id above 2^53"
"$PY" "$KIT/kit.py" browser "http://127.0.0.1:$PORT" "$READER_URL" "$OUT"
