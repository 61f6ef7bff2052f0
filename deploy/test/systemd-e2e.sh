#!/usr/bin/env bash
# deploy/helpdesk-sync.service under a real systemd, end to end. A minimal Debian root (built
# once, cached outside the repository) is booted with systemd-nspawn on a private network; inside,
# the README's "Install as a service" steps are followed as written, with the simulator standing
# in for Feishu (its own unit, on the container's loopback) and the container's own PostgreSQL;
# then one PASS/FAIL line per promise of the unit. Exit 1 on any FAIL; exit 0 with one "skipped"
# line where nspawn cannot run (not root, no namespaces).
#
#   cargo build && sudo deploy/test/systemd-e2e.sh        # from the repository root
#
# Environment:
#   HELPDESK_SYNC_BIN  binary under test (default target/debug/helpdesk-sync, else target/release/)
#   E2E_CACHE          where the Debian root is kept (default /var/cache/helpdesk-sync-e2e)
#   E2E_SLOW=1         with the database down, wait out the unit's real start timeout (90 s)
#                      instead of a drop-in's 8 s
#   E2E_TIMEOUT        seconds for boot and checks before everything is stopped (default 600)
#   E2E_KEEP=1         keep the container's writable layer (the run directory) afterwards
#
# The guest's journal and console of the last run are kept in $E2E_CACHE/last-run/.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=${E2E_CACHE:-/var/cache/helpdesk-sync-e2e}
TIMEOUT=${E2E_TIMEOUT:-600}
MACHINE=hs-e2e
GUEST_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# The simulator stands in for Feishu: few tickets, and a detail limit (4/s) below the client's
# pace (9/s), so the first cycle logs rate-limit warnings about tickets (the journald check).
SIM_ARGS="--listen 127.0.0.1:8090 --tickets 60 --detail-limit 4"
UNIT=helpdesk-sync.service

started_at=$(date +%s)
say() { echo "systemd-e2e: $*"; }
skip() {
  say "skipped: $*"
  exit 0
}
elapsed() { echo "$(($(date +%s) - started_at)) s"; }

# --- Can nspawn run here? ---------------------------------------------------------------------
[ "$(uname -s)" = Linux ] || skip "not Linux"
[ "$(id -u)" = 0 ] || skip "needs root (systemd-nspawn); run: sudo $0"
unshare --mount --uts --ipc --net --pid --fork true 2>/dev/null ||
  skip "cannot create namespaces here (unshare failed), so systemd-nspawn cannot boot a container"

# --- Host tools -------------------------------------------------------------------------------
missing=()
command -v systemd-nspawn >/dev/null || missing+=(systemd-container)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if ((${#missing[@]})); then
  command -v apt-get >/dev/null || skip "no apt-get to install ${missing[*]}"
  say "installing ${missing[*]}"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

BIN=${HELPDESK_SYNC_BIN:-}
if [ -z "$BIN" ]; then
  for candidate in "$REPO/target/debug/helpdesk-sync" "$REPO/target/release/helpdesk-sync"; do
    if [ -x "$candidate" ]; then
      BIN=$candidate
      break
    fi
  done
fi
if [ -z "$BIN" ] || [ ! -x "$BIN" ]; then
  say "no binary to test: run cargo build first (or set HELPDESK_SYNC_BIN)"
  exit 1
fi

mkdir -p "$CACHE"
exec 9>"$CACHE/lock"
flock -w 900 9 || {
  say "another run holds $CACHE/lock"
  exit 1
}

# --- The Debian root: built once per recipe ---------------------------------------------------
SUITE=$(sed -n 's/^VERSION_CODENAME=//p' /etc/os-release | tr -d '"')
[ -n "$SUITE" ] || {
  say "no VERSION_CODENAME in /etc/os-release: not a Debian-like host"
  exit 1
}

# The Debian archive the host's apt uses for its own suite (deb822 .sources or one-line .list).
host_mirror() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v suite="$SUITE" 'BEGIN { RS = ""; FS = "\n" }
      {
        types = ""; uris = ""; suites = ""; enabled = "yes"
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^#/) continue
          split($i, kv, /:[ \t]*/)
          key = tolower(kv[1]); value = substr($i, length(kv[1]) + 2); sub(/^[ \t]+/, "", value)
          if (key == "types") types = value
          else if (key == "uris") uris = value
          else if (key == "suites") suites = value
          else if (key == "enabled") enabled = tolower(value)
        }
        if (enabled != "no" && (" " types " ") ~ / deb / && (" " suites " ") ~ (" " suite " ")) {
          split(uris, u, /[ \t]+/); print u[1]; exit
        }
      }' "$f"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    awk -v suite="$SUITE" '$1 == "deb" {
        i = 2
        if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
        if ($(i + 1) == suite) { print $i; exit }
      }' "$f"
  done
}
MIRROR=$(host_mirror | head -n1)
MIRROR=${MIRROR%/}
[ -n "$MIRROR" ] || {
  say "no apt source for $SUITE on this host to build the container from"
  exit 1
}

ROOT_BASE_PACKAGES=systemd,systemd-sysv,dbus,libnss-systemd,sudo,curl,procps
ROOT_PACKAGES="postgresql"

# Stage 1: debootstrap. Stage 2, inside nspawn (any daemon a package starts dies with it, and
# policy-rc.d stops them from starting anyway): PostgreSQL, on port 5432 (pg_createcluster picks
# 5433 when it sees the host's 5432), and a few settings for a quiet boot.
build_root() {
  local dir=$1
  timeout 900 debootstrap --variant=minbase --include="$ROOT_BASE_PACKAGES" \
    "$SUITE" "$dir" "$MIRROR" >"$dir.log" 2>&1 || {
    tail -n 20 "$dir.log"
    return 1
  }
  printf '#!/bin/sh\nexit 101\n' >"$dir/usr/sbin/policy-rc.d"
  chmod 755 "$dir/usr/sbin/policy-rc.d"
  timeout 600 systemd-nspawn --quiet --register=no --keep-unit -D "$dir" --pipe \
    -E DEBIAN_FRONTEND=noninteractive /bin/bash -euc "
      apt-get update -q
      apt-get install -y -q --no-install-recommends $ROOT_PACKAGES
      apt-get clean
      sed -i -E 's/^#?port = [0-9]+/port = 5432/' /etc/postgresql/*/main/postgresql.conf
      echo $MACHINE >/etc/hostname
      printf '127.0.0.1 localhost\n127.0.1.1 $MACHINE\n' >/etc/hosts
      systemctl mask console-getty.service getty@.service
    " </dev/null >>"$dir.log" 2>&1 || {
    tail -n 20 "$dir.log"
    return 1
  }
  rm -f "$dir/usr/sbin/policy-rc.d"
  grep -q '^port = 5432' "$dir"/etc/postgresql/*/main/postgresql.conf
}

ROOT_KEY=$({
  echo "$SUITE $MIRROR $ROOT_BASE_PACKAGES $ROOT_PACKAGES $MACHINE"
  declare -f build_root
} | sha256sum | cut -c1-16)
ROOT=$CACHE/root-$ROOT_KEY
if [ -d "$ROOT" ]; then
  say "Debian $SUITE root: cached ($ROOT)"
else
  say "building the Debian $SUITE root from $MIRROR (once; cached in $CACHE)"
  build_started=$(date +%s)
  rm -rf "$ROOT.build" "$ROOT.build.log"
  build_root "$ROOT.build" || {
    say "building the root failed (log: $ROOT.build.log)"
    exit 1
  }
  # Other recipes' roots are stale now.
  for old in "$CACHE"/root-*; do
    case $old in "$ROOT.build" | "$ROOT.build.log") ;; *) rm -rf "$old" ;; esac
  done
  mv "$ROOT.build" "$ROOT"
  mv "$ROOT.build.log" "$ROOT.log"
  say "root built in $(($(date +%s) - build_started)) s"
fi

# --- The run: an overlay on the cached root, so the root stays clean --------------------------
RUN=$CACHE/run
MERGED=$RUN/merged
NSPAWN_PID=
LEADER=
LEADER_PIDNS=
WATCHDOG=
PASSED=0
FAILED=0

# The container's PID 1, if it still runs (and is still that process, not a reused pid).
leader_alive() {
  [ -n "$LEADER" ] && [ "$(readlink "/proc/$LEADER/ns/pid" 2>/dev/null)" = "$LEADER_PIDNS" ]
}

stop_container() {
  if [ -n "$NSPAWN_PID" ] && kill -0 "$NSPAWN_PID" 2>/dev/null; then
    # nspawn powers the container off on SIGTERM.
    kill -TERM "$NSPAWN_PID" 2>/dev/null || true
    for _ in $(seq 1 60); do
      kill -0 "$NSPAWN_PID" 2>/dev/null || break
      sleep 0.5
    done
  fi
  # A container that did not stop (or whose nspawn was killed: its PID 1 outlives nspawn) ends
  # with its PID 1, and every process in it with that.
  if leader_alive; then
    kill -KILL "$LEADER" 2>/dev/null || true
    for _ in $(seq 1 20); do
      leader_alive || break
      sleep 0.5
    done
  fi
  [ -z "$NSPAWN_PID" ] || kill -KILL "$NSPAWN_PID" 2>/dev/null || true
  [ -z "$NSPAWN_PID" ] || wait "$NSPAWN_PID" 2>/dev/null || true
  NSPAWN_PID=
}

cleanup() {
  local rc=$?
  set +e
  [ -z "$WATCHDOG" ] || kill "$WATCHDOG" 2>/dev/null
  if leader_alive; then
    g journalctl --no-pager -o short-precise >"$CACHE/last-run/journal.txt" 2>&1
  fi
  stop_container
  [ ! -f "$RUN/console.log" ] || cp "$RUN/console.log" "$CACHE/last-run/console.log"
  if leader_alive; then
    say "the container's PID 1 ($LEADER) would not die: $RUN left mounted"
    exit 1
  fi
  if mountpoint -q "$MERGED"; then
    umount "$MERGED" || umount -l "$MERGED"
  fi
  if [ "${E2E_KEEP:-}" = 1 ]; then
    say "kept $RUN"
  else
    rm -rf "$RUN"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'say "FAIL: stopped after E2E_TIMEOUT=$TIMEOUT s"; exit 124' TERM
trap 'exit 130' INT

umount "$MERGED" 2>/dev/null || true
rm -rf "$RUN"
mkdir -p "$RUN"/{upper,work,merged} "$CACHE/last-run"
rm -f "$CACHE"/last-run/*
mount -t overlay overlay -o "lowerdir=$ROOT,upperdir=$RUN/upper,workdir=$RUN/work" "$MERGED"

# The global timeout: kill the container (its PID 1: every guest command then fails at once),
# then stop the script, whose cleanup does the rest.
(
  trap 'kill $sleeper 2>/dev/null; exit 0' TERM
  sleep "$TIMEOUT" &
  sleeper=$!
  wait "$sleeper"
  [ ! -f "$RUN/leader" ] || {
    read -r pid pidns <"$RUN/leader"
    [ "$(readlink "/proc/$pid/ns/pid" 2>/dev/null)" != "$pidns" ] || kill -KILL "$pid" 2>/dev/null
  }
  kill -TERM $$
) &
WATCHDOG=$!

# A command inside the booted container (as root), bounded by its own timeout.
g() {
  nsenter --target "$LEADER" --all --root --wd -- /usr/bin/timeout "${GTIMEOUT:-120}" \
    /usr/bin/env -i PATH="$GUEST_PATH" HOME=/root LANG=C.UTF-8 TERM=dumb SYSTEMD_COLORS=0 \
    SUDO_EDITOR=/root/e2e/editor "$@"
}
gsh() { g /bin/bash -o pipefail -c "$1"; }
prop() { g systemctl show -P "$2" "$1"; }
# The journal's last entry now, to read what comes after it (`--since` has whole seconds, so
# it also returns the end of the previous check).
journal_cursor() { g journalctl -n 1 --show-cursor -o cat | sed -n 's/^-- cursor: //p'; }
# The service's entries at priority err from a cursor on (that entry included: it is the one
# before the check). Matched by SYSLOG_IDENTIFIER, not by unit: journald attributes an entry to
# a unit from the sender's cgroup, and a process that exits right after logging (a
# configuration error) is often gone before it is looked up. Not `--after-cursor`: with a
# match, systemd 252's journalctl skips the first matching entry after the cursor.
errors_after() { g journalctl --cursor="$1" -p err -o cat SYSLOG_IDENTIFIER=helpdesk-sync; }
sql() { g setpriv --reuid=postgres --regid=postgres --init-groups psql -X -q -A -t -d helpdesk -c "$1"; }
# As the service's user, in the service's mount namespace (its view of the file system).
as_service() {
  local pid=$1 uid=$2 gid=$3
  shift 3
  g nsenter --target "$pid" --mount -- setpriv --reuid="$uid" --regid="$gid" --clear-groups "$@"
}

pass() {
  PASSED=$((PASSED + 1))
  echo "PASS: $*"
}
fail() {
  FAILED=$((FAILED + 1))
  echo "FAIL: $*"
}
note() { echo "      $*"; }
# check "what" function args...: the function prints details (note) and returns the verdict.
check() {
  local what=$1
  shift
  if "$@"; then pass "$what"; else fail "$what"; fi
}
# wait_for SECONDS command...: true once the command succeeds (polled every 0.5 s).
wait_for() {
  local deadline=$(($(date +%s) + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 0.5
  done
}
state_is() { [ "$(prop "$1" ActiveState)/$(prop "$1" SubState)" = "$2" ]; }

boot() {
  local boot_started
  boot_started=$(date +%s)
  systemd-nspawn --quiet --register=no --keep-unit --private-network -D "$MERGED" \
    -M "$MACHINE" --console=read-only -b </dev/null >>"$RUN/console.log" 2>&1 &
  NSPAWN_PID=$!
  # The container's PID 1 is nspawn's child, once it runs systemd.
  LEADER=
  for _ in $(seq 1 150); do
    LEADER=$(pgrep -P "$NSPAWN_PID" | head -n1 || true)
    [ -z "$LEADER" ] || [ "$(cat "/proc/$LEADER/comm" 2>/dev/null)" != systemd ] || break
    kill -0 "$NSPAWN_PID" 2>/dev/null || break
    LEADER=
    sleep 0.2
  done
  if [ -z "$LEADER" ]; then
    say "the container did not start; console:"
    tail -n 20 "$RUN/console.log"
    return 1
  fi
  LEADER_PIDNS=$(readlink "/proc/$LEADER/ns/pid")
  echo "$LEADER $LEADER_PIDNS" >"$RUN/leader"
  local state=
  for _ in $(seq 1 60); do
    state=$(g systemctl is-system-running --wait 2>/dev/null || true)
    case $state in running | degraded | maintenance | stopping) break ;; esac
    sleep 1
  done
  # "degraded" would name a failed unit: shown, and fatal only for the units under test.
  if [ "$state" != running ]; then
    note "system state: $state"
    g systemctl --failed --no-pager --plain | sed 's/^/      /' || true
  fi
  [ "$state" = running ] || [ "$state" = degraded ] || return 1
  say "booted in $(($(date +%s) - boot_started)) s ($state)"
}

# --- Into the container: the repository's files and the simulator ------------------------------
SRC=$MERGED/root/helpdesk-sync
mkdir -p "$SRC/target/release" "$MERGED/root/e2e"
cp "$REPO/README.md" "$REPO/config.toml.example" "$SRC/"
cp -r "$REPO/deploy" "$SRC/"
# Where the README's install step takes it from (the README builds with --release).
cp "$BIN" "$SRC/target/release/helpdesk-sync"
cat >"$MERGED/etc/systemd/system/feishu-sim.service" <<EOF
[Unit]
Description=Simulated Feishu Helpdesk API (helpdesk-sync e2e)
Before=$UNIT

[Service]
ExecStart=/root/helpdesk-sync/target/release/helpdesk-sync simulate $SIM_ARGS

[Install]
WantedBy=multi-user.target
EOF

boot
g systemctl enable --now --quiet feishu-sim.service
wait_for 20 gsh "journalctl -u feishu-sim -o cat | grep -q '^helpdesk_token = '" || {
  fail "the simulator printed its config snippet"
  exit 1
}
snippet=$(gsh "journalctl -u feishu-sim -o cat")
sim_value() { sed -n "s/^$1 = \"\(.*\)\"\$/\1/p" <<<"$snippet" | head -n1; }
SIM_BASE_URL=$(sim_value base_url)
SIM_APP_ID=$(sim_value app_id)
SIM_APP_SECRET=$(sim_value app_secret)
SIM_HELPDESK_ID=$(sim_value helpdesk_id)
SIM_HELPDESK_TOKEN=$(sim_value helpdesk_token)
DB_PASSWORD=E2e$RANDOM$RANDOM$RANDOM

# sudoedit's editor: what a person types into [feishu].
cat >"$MERGED/root/e2e/editor" <<EOF
#!/bin/sh
exec sed -i -E -e 's|^base_url = .*|base_url = "$SIM_BASE_URL"|' \\
  -e 's|^app_id = .*|app_id = "$SIM_APP_ID"|' -e 's|^helpdesk_id = .*|helpdesk_id = "$SIM_HELPDESK_ID"|' "\$@"
EOF
chmod 755 "$MERGED/root/e2e/editor"

# --- The README's "Install as a service", step by step -----------------------------------------
readme_steps() {
  awk '/^### Install as a service/ { section = 1; next }
    section && /^#/ && !fence { exit }
    section && /^```/ { fence = !fence; next }
    section && fence { print }' "$REPO/README.md" |
    awk '{ if (sub(/\\$/, "")) { pending = pending $0; next } print pending $0; pending = "" }' |
    grep -Ev '^[[:space:]]*(#|$)'
}
ENABLE_SECONDS=
ENABLE_STATE=
ENABLE_MIGRATIONS=
STATUS_OUTPUT=
run_readme_step() {
  local step=$1 input=
  case $step in
  "cargo build"*)
    note "\$ $step    (skipped: the binary under test is at target/release/helpdesk-sync)"
    return 0
    ;;
  *"journalctl "*" -f"*)
    note "\$ $step    (for 3 s)"
    step="timeout 3 ${step%%#*}; [ \$? = 124 ]"
    ;;
  *createuser*--pwprompt*) input="$DB_PASSWORD"$'\n'"$DB_PASSWORD" ;;
  *"/dev/stdin /etc/helpdesk-sync/app_secret"*) input=$SIM_APP_SECRET ;;
  *"/dev/stdin /etc/helpdesk-sync/helpdesk_token"*) input=$SIM_HELPDESK_TOKEN ;;
  *"/dev/stdin /etc/helpdesk-sync/env"*)
    input="DATABASE_URL=postgres://helpdesk_sync:$DB_PASSWORD@127.0.0.1:5432/helpdesk"
    ;;
  *"/dev/stdin"*)
    note "\$ $step    (no input known for this step)"
    return 1
    ;;
  esac
  case $step in timeout*) ;; *) note "\$ $step" ;; esac
  local t0 t1 out rc=0
  t0=$(date +%s.%N)
  out=$(printf '%s\n' "$input" | g /bin/bash -o pipefail -c "cd /root/helpdesk-sync && $step" 2>&1) || rc=$?
  t1=$(date +%s.%N)
  case $step in
  *"enable --now"*)
    # What systemctl saw the moment it returned: READY=1 already sent, migrations done.
    ENABLE_STATE="$(prop $UNIT ActiveState)/$(prop $UNIT SubState)"
    ENABLE_MIGRATIONS=$(sql "SELECT count(*) FROM _sqlx_migrations WHERE success" 2>&1 || true)
    ENABLE_SECONDS=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
    ;;
  "systemctl status"*) STATUS_OUTPUT=$out ;;
  esac
  if [ "$rc" != 0 ]; then
    note "exit $rc:"
    tail -n 15 <<<"$out" | sed 's/^/        /'
    return 1
  fi
}

mapfile -t STEPS < <(readme_steps)
say "README \"Install as a service\": ${#STEPS[@]} steps"
for step in "${STEPS[@]}"; do
  run_readme_step "$step" || {
    fail "README step: $step"
    exit 1
  }
done
pass "README \"Install as a service\" followed as written (${#STEPS[@]} steps)"

# --- Checks ------------------------------------------------------------------------------------
check_enable_waits_for_ready() {
  local migrations
  local files=("$REPO"/migrations/*.sql)
  migrations=${#files[@]}
  note "enable --now returned after ${ENABLE_SECONDS}s: $ENABLE_STATE; migrations applied: $ENABLE_MIGRATIONS of $migrations"
  [ "$ENABLE_STATE" = active/running ] && [ "$ENABLE_MIGRATIONS" = "$migrations" ] &&
    grep -q 'Active: active (running)' <<<"$STATUS_OUTPUT"
}
check "systemctl enable --now returns after READY=1 (migrated; status: active (running))" \
  check_enable_waits_for_ready

first_cycle_done() { [ "$(sql "SELECT count(*) FROM sync_runs WHERE outcome <> 'running'")" -ge 1 ]; }
check_sync_wrote_tickets() {
  wait_for 90 first_cycle_done || {
    note "no finished cycle in sync_runs after 90 s"
    return 1
  }
  local outcome tickets
  outcome=$(sql "SELECT outcome FROM sync_runs ORDER BY run_id LIMIT 1")
  tickets=$(sql "SELECT count(*) FROM tickets")
  note "first cycle: $outcome; tickets stored: $tickets of 60"
  [ "$outcome" = ok ] && [ "$tickets" = 60 ]
}
check "the first cycle synced the simulator's tickets into the container's PostgreSQL" \
  check_sync_wrote_tickets

check_http() {
  local healthz readyz
  healthz=$(g curl -fsS http://127.0.0.1:9187/healthz) || return 1
  readyz=$(g curl -fsS http://127.0.0.1:9187/readyz) || return 1
  note "/healthz: $healthz; /readyz: $readyz"
  [ "$healthz" = ok ] && [ "$readyz" = ready ]
}
check "/healthz and /readyz answer 200" check_http

check_journal() {
  local warning ticket entry stream info
  warning=$(gsh "journalctl -u $UNIT -p warning -o cat | grep -m1 'rate limited by the API'" || true)
  ticket=$(gsh "journalctl -u $UNIT -p warning -o export | sed -n 's/^TICKET_ID=//p' | head -n1" || true)
  note "journalctl -p warning: ${warning:-nothing}"
  [ -n "$warning" ] && [ -n "$ticket" ] || return 1
  entry=$(g journalctl -u $UNIT -o export "TICKET_ID=$ticket" -p warning)
  note "journalctl TICKET_ID=$ticket: $(grep -E '^(PRIORITY|ENDPOINT|CODE|ATTEMPT)=' <<<"$entry" | sort -u | tr '\n' ' ')"
  grep -qx 'PRIORITY=4' <<<"$entry" && grep -qx 'ENDPOINT=detail' <<<"$entry" &&
    grep -qx 'CODE=99991400' <<<"$entry" || return 1
  info=$(gsh "journalctl -u $UNIT -o export -g '^cycle finished' | grep -E '^(PRIORITY|CHANGED)=' | sort -u | tr '\n' ' '")
  note "cycle finished: $info"
  grep -q 'PRIORITY=6' <<<"$info" && grep -q 'CHANGED=' <<<"$info" || return 1
  # Nothing through the stderr stream (which journald would file at priority 6).
  stream=$(g journalctl "_SYSTEMD_UNIT=$UNIT" _TRANSPORT=stdout -o cat | head -n3)
  [ -z "$stream" ] || {
    note "lines through stderr: $stream"
    return 1
  }
}
check "journald: warnings at priority 4 (journalctl -p warning), fields queryable (TICKET_ID=, ENDPOINT=, CODE=), info at 6, nothing on the stderr stream" \
  check_journal

MAINPID=$(prop $UNIT MainPID)
SERVICE_UID=$(g stat -c %u "/proc/$MAINPID")
SERVICE_GID=$(g stat -c %g "/proc/$MAINPID")
CREDS=/run/credentials/$UNIT

check_dynamic_user() {
  local passwd
  passwd=$(g getent passwd helpdesk-sync) || return 1
  note "getent passwd helpdesk-sync: $passwd (main process uid $SERVICE_UID)"
  [ "$(cut -d: -f3 <<<"$passwd")" = "$SERVICE_UID" ] && [ "$SERVICE_UID" -ge 61184 ] &&
    [ "$SERVICE_UID" -le 65519 ]
}
check "DynamicUser: the service runs as a throwaway user that exists while it runs" check_dynamic_user

check_credentials() {
  local listing secret
  listing=$(gsh "stat -c '%A %u %n' $CREDS $CREDS/*")
  note "$(tr '\n' ';' <<<"$listing")"
  # Only the service's user may read them: owner, mode r-x------ / r--------.
  awk -v uid="$SERVICE_UID" '$2 != uid || ($1 != "dr-x------" && $1 != "-r--------") { bad = 1 }
    END { exit bad }' <<<"$listing" || return 1
  ! g setpriv --reuid=65534 --regid=65534 --clear-groups cat "$CREDS/app_secret" >/dev/null 2>&1 ||
    return 1
  secret=$(as_service "$MAINPID" "$SERVICE_UID" "$SERVICE_GID" cat "$CREDS/app_secret") || return 1
  [ "$secret" = "$SIM_APP_SECRET" ] || return 1
  # The originals in /etc/helpdesk-sync are root's alone, also from inside the service.
  local f readable=
  for f in app_secret helpdesk_token env; do
    if as_service "$MAINPID" "$SERVICE_UID" "$SERVICE_GID" cat "/etc/helpdesk-sync/$f" >/dev/null 2>&1; then
      readable+=" $f"
    fi
  done
  note "readable from inside the service in /etc/helpdesk-sync:${readable:- none} (config.toml: $(
    as_service "$MAINPID" "$SERVICE_UID" "$SERVICE_GID" test -r /etc/helpdesk-sync/config.toml && echo yes || echo no))"
  [ -z "$readable" ]
}
check "credentials: readable by the service's user only (not by nobody); /etc/helpdesk-sync secrets unreadable from inside" \
  check_credentials

# Every world-writable directory in the service's view, plus the usual places: only the private
# /tmp and /var/tmp (and /dev/shm, /dev/mqueue, emptied by RemoveIPC) may take a file. The probe
# files are left behind on purpose: after the stop, nothing of the user may remain.
check_sandbox_writes() {
  local dirs writable allowed=" /tmp /var/tmp /dev/shm /dev/mqueue " d bad="" list
  dirs=$(
    g nsenter --target "$MAINPID" --mount -- find / \( -path /proc -o -path /sys \) -prune \
      -o -type d -perm -0002 -print 2>/dev/null || true
    printf '%s\n' / /etc /etc/helpdesk-sync /usr /usr/local/bin /var /var/lib /var/cache \
      /var/log /var/spool /srv /opt /root /home /run /run/lock /run/user /run/systemd \
      /run/postgresql "$CREDS" /dev /tmp /var/tmp
  )
  dirs=$(sort -u <<<"$dirs")
  mapfile -t list <<<"$dirs"
  writable=$(
    as_service "$MAINPID" "$SERVICE_UID" "$SERVICE_GID" /bin/sh -c '
      for d in "$@"; do touch "$d/e2e-probe-written-by-the-service" 2>/dev/null && echo "$d"; done
    ' sh "${list[@]}" || true
  )
  note "writable as the service: $(tr '\n' ' ' <<<"$writable")(tried $(wc -l <<<"$dirs") directories)"
  for d in $writable; do
    case $allowed in *" $d "*) ;; *) bad+=" $d" ;; esac
  done
  [ -z "$bad" ] || note "not granted by the unit:$bad"
  [ -z "$bad" ] && grep -qx /tmp <<<"$writable"
}
check "sandbox: no write outside the private /tmp, /var/tmp (and IPC dirs), including /run and /run/lock" \
  check_sandbox_writes

check_privileges() {
  local status
  status=$(g grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp):' "/proc/$MAINPID/status")
  note "$(tr -s '\t\n' '  ' <<<"$status")"
  [ "$(grep -c '^Cap.*:[[:space:]]*0000000000000000$' <<<"$status")" = 5 ] &&
    grep -qE '^NoNewPrivs:[[:space:]]*1$' <<<"$status" && grep -qE '^Seccomp:[[:space:]]*2$' <<<"$status"
}
check "sandbox: no capabilities, no new privileges, seccomp filter on" check_privileges

# systemctl stop in the middle of a cycle: every ticket made due, restart, stop once claimed.
claims_exist() { [ "$(sql "SELECT count(*) FROM ticket_sync_state WHERE claimed_by IS NOT NULL")" -gt 0 ]; }
check_stop_mid_cycle() {
  sql "UPDATE ticket_sync_state SET next_due_at = now()" >/dev/null
  g systemctl restart $UNIT
  wait_for 30 claims_exist || {
    note "no claims within 30 s"
    return 1
  }
  local t0 t1 rc=0 status result claimed due outcome cursor errors
  cursor=$(journal_cursor)
  t0=$(date +%s.%N)
  g systemctl stop $UNIT || rc=$?
  t1=$(date +%s.%N)
  status=$(prop $UNIT ExecMainStatus)
  result=$(prop $UNIT Result)
  claimed=$(sql "SELECT count(*) FROM ticket_sync_state WHERE claimed_by IS NOT NULL")
  due=$(sql "SELECT count(*) FROM ticket_sync_state WHERE next_due_at <= now()")
  outcome=$(sql "SELECT outcome FROM sync_runs ORDER BY run_id DESC LIMIT 1")
  errors=$(errors_after "$cursor")
  note "stop took $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s: systemctl $rc, exit status $status, result $result; run $outcome; still due $due, claimed $claimed; at priority err: ${errors:-nothing}"
  [ "$rc" = 0 ] && [ "$status" = 0 ] && [ "$result" = success ] && [ "$claimed" = 0 ] &&
    [ "$outcome" = interrupted ] && [ "$due" -gt 0 ] && [ -z "$errors" ]
}
check "systemctl stop mid-cycle: exit 0, run 'interrupted', nothing left claimed, nothing at priority err" check_stop_mid_cycle

check_nothing_outlives() {
  local passwd left
  passwd=$(g getent passwd helpdesk-sync || true)
  left=$(g find / \( -path /proc -o -path /sys \) -prune -o -uid "$SERVICE_UID" -print 2>/dev/null || true)
  note "after stop: user ${passwd:-gone}; $CREDS $(g test -e $CREDS && echo present || echo gone); files of uid $SERVICE_UID: ${left:-none}"
  [ -z "$passwd" ] && ! g test -e $CREDS && [ -z "$left" ]
}
check "after stop: the user, its credentials and every file it wrote are gone" check_nothing_outlives

# A configuration error: exit 2, no restart (RestartPreventExitStatus=2), one journal entry at
# priority 3 naming the key.
check_config_error() {
  local cursor status restarts messages stream
  gsh "cp /etc/helpdesk-sync/env /root/e2e/env.saved && echo HELPDESK_SYNC__SYNC__BATCH_SIZE=0 >>/etc/helpdesk-sync/env"
  cursor=$(journal_cursor)
  g systemctl start $UNIT 2>/dev/null && return 1
  sleep 12 # RestartSec=10, and a margin
  status=$(prop $UNIT ExecMainStatus)
  restarts=$(prop $UNIT NRestarts)
  messages=$(errors_after "$cursor")
  stream=$(g journalctl "_SYSTEMD_UNIT=$UNIT" _TRANSPORT=stdout --cursor="$cursor" -o cat | head -n1)
  note "exit status $status, state $(prop $UNIT ActiveState), restarts $restarts after 12 s; journal (priority err): ${messages:-nothing}"
  [ -z "$stream" ] || note "through stderr instead: $stream"
  gsh "cp /root/e2e/env.saved /etc/helpdesk-sync/env && systemctl reset-failed $UNIT"
  [ "$status" = 2 ] && [ "$restarts" = 0 ] && [ "$(grep -c . <<<"$messages")" = 1 ] &&
    grep -q 'sync.batch_size' <<<"$messages" && [ -z "$stream" ]
}
check "a configuration error exits 2, is not restarted, and is one journal entry at priority err" \
  check_config_error

# The database unreachable at start: "activating" while it retries, failed after the start
# timeout, restarted 10 s later; up once PostgreSQL is back.
check_database_down() {
  local limit=8 since state restarted t_fail t_next
  if [ "${E2E_SLOW:-}" = 1 ]; then
    limit=90
  else
    gsh "mkdir -p /etc/systemd/system/$UNIT.d && printf '[Service]\nTimeoutStartSec=$limit\n' >/etc/systemd/system/$UNIT.d/e2e-start-timeout.conf && systemctl daemon-reload"
  fi
  # The cluster's own unit too: stopping postgresql.service alone returns before it is down.
  g systemctl stop 'postgresql*'
  since=$(g date +%s)
  g systemctl start --no-block $UNIT
  sleep 4
  state="$(prop $UNIT ActiveState)/$(prop $UNIT SubState)"
  restarted=$(wait_for $((limit + 30)) gsh "journalctl -u $UNIT --since @$since -o cat | grep -q 'Scheduled restart job'" && echo yes || echo no)
  g systemctl start postgresql
  wait_for 60 state_is $UNIT active/running || true
  local log t_term t_fail t_next warnings
  log=$(g journalctl -u $UNIT --since "@$since" -o short-unix)
  t_term=$(grep -m1 'start operation timed out' <<<"$log" | cut -d. -f1)
  t_fail=$(grep -m1 "Failed with result 'timeout'" <<<"$log" | cut -d. -f1)
  t_next=$(grep -m1 'Scheduled restart job' <<<"$log" | cut -d. -f1)
  warnings=$(g journalctl -u $UNIT --since "@$since" -p warning -o cat | grep -c 'database unreachable')
  note "after 4 s: $state; start timed out after $((${t_term:-0} - since)) s (limit $limit s), SIGTERM answered in $((${t_fail:-0} - ${t_term:-0})) s, restart $((${t_next:-0} - ${t_fail:-0})) s later; $warnings 'database unreachable' warnings; with PostgreSQL back: $(prop $UNIT ActiveState)/$(prop $UNIT SubState)"
  g rm -f "/etc/systemd/system/$UNIT.d/e2e-start-timeout.conf"
  g systemctl daemon-reload
  [ "$state" = activating/start ] && [ "$restarted" = yes ] && [ -n "$t_term" ] &&
    [ $((t_term - since)) -ge $((limit - 1)) ] && [ -n "$t_fail" ] && state_is $UNIT active/running
}
check "database unreachable: 'activating' while it retries, failed after the start timeout ($([ "${E2E_SLOW:-}" = 1 ] && echo "the unit's 90 s" || echo "8 s drop-in; E2E_SLOW=1 for the unit's 90 s")), restarted, up when PostgreSQL is back" \
  check_database_down

# A stuck process: SIGSTOP. The watchdog (WatchdogSec=60) kills it and systemd restarts it.
check_watchdog() {
  local pid since new_pid t_dog
  pid=$(prop $UNIT MainPID)
  since=$(g date +%s)
  g kill -STOP "$pid"
  wait_for 140 gsh "journalctl -u $UNIT --since @$since -o cat | grep -q 'Watchdog timeout'" || {
    note "no watchdog timeout within 140 s"
    return 1
  }
  wait_for 40 state_is $UNIT active/running || true
  new_pid=$(prop $UNIT MainPID)
  t_dog=$(gsh "journalctl -u $UNIT --since @$since -o short-unix | grep -m1 'Watchdog timeout' | cut -d. -f1")
  note "SIGSTOP pid $pid; watchdog fired after $((t_dog - since)) s; now pid $new_pid, $(prop $UNIT ActiveState)/$(prop $UNIT SubState), restarts $(prop $UNIT NRestarts)"
  [ "$new_pid" != "$pid" ] && [ "$new_pid" != 0 ] && state_is $UNIT active/running
}
check "watchdog: a stopped (SIGSTOP) main process is killed and restarted" check_watchdog

# Reboot: the service comes up at boot, after PostgreSQL, and syncs.
cycle_since_boot() {
  [ "$(sql "SELECT count(*) FROM sync_runs WHERE started_at > now() - interval '2 minutes' AND outcome = 'ok'")" -ge 1 ]
}
check_reboot() {
  local rc=0 pg_up started runs
  g systemctl reboot || true
  wait "$NSPAWN_PID" || rc=$?
  NSPAWN_PID=
  LEADER=
  note "container exited with $rc (133: reboot requested)"
  [ "$rc" = 133 ] || return 1
  boot || return 1
  wait_for 30 state_is $UNIT active/running || {
    note "$UNIT: $(prop $UNIT ActiveState)/$(prop $UNIT SubState)"
    return 1
  }
  pg_up=$(prop postgresql.service ActiveEnterTimestampMonotonic)
  started=$(prop $UNIT ExecMainStartTimestampMonotonic)
  wait_for 60 cycle_since_boot || true
  runs=$(sql "SELECT count(*) FROM sync_runs WHERE started_at > now() - interval '2 minutes' AND outcome = 'ok'")
  note "postgresql.service up at ${pg_up} us, $UNIT started at ${started} us (monotonic); cycles ok since boot: $runs"
  [ "$pg_up" -gt 0 ] && [ "$started" -gt "$pg_up" ] && [ "$runs" -ge 1 ]
}
check "after a reboot: started at boot, after PostgreSQL, and synced" check_reboot

say "done in $(elapsed)"
echo "systemd-e2e: $PASSED passed, $FAILED failed"
if [ "$FAILED" -gt 0 ]; then
  say "the guest's journal: $CACHE/last-run/journal.txt"
  exit 1
fi
