# Sourced by every scripts/bench-*: what they share. Not a benchmark itself.
#
#   BENCH_SMOKE=1   smoke mode: tiny data, one round, seconds instead of minutes. Every step of
#                   the script still runs (both tools, the table with its ratios) and the script
#                   fails if a step fails or a figure is missing; scripts/bench-smoke runs them
#                   all in CI so a benchmark cannot rot. Smoke figures mean nothing.
#   BENCH_BIN=path  the opsagent binary to measure (OPSAGENT_BIN, its older name, still works);
#                   without it the script builds the release binary (cargo build --release).
# Each script's own knobs (BENCH_ROWS, BENCH_SECONDS, …) still override the smoke defaults.

SMOKE=${BENCH_SMOKE:-0}

# pick SMOKE_VALUE FULL_VALUE: the default for the mode this run is in.
pick() { if [ "$SMOKE" = 1 ]; then printf '%s\n' "$1"; else printf '%s\n' "$2"; fi; }

# Sets BIN to the absolute path of the binary to measure, building it if none was given.
bench_bin() {
  BIN=${BENCH_BIN:-${OPSAGENT_BIN:-}}
  if [ -z "$BIN" ]; then
    cargo build --release --locked -q
    BIN=${CARGO_TARGET_DIR:-target}/release/opsagent
  fi
  [ -x "$BIN" ] || { echo "$(basename "$0"): no opsagent binary at $BIN" >&2; exit 1; }
  BIN=$(realpath "$BIN")
}

# need COMMAND APT_PACKAGE: installs the package when the command is missing (needs root).
need() {
  command -v "$1" >/dev/null 2>&1 && return 0
  echo "$(basename "$0"): apt-get install $2" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends "$2" >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "$2" >/dev/null; }
  command -v "$1" >/dev/null 2>&1 || { echo "$(basename "$0"): $1 still missing (apt package $2)" >&2; exit 1; }
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# report_check FILE REGEX…: the printed report must match every REGEX (each names a line that
# must carry its figures) and hold no nan, inf or "?" where a figure belongs.
report_check() {
  local file=$1 re bad=""
  shift
  for re in "$@"; do
    grep -Eq -- "$re" "$file" || bad="$bad
  no line matches /$re/"
  done
  if grep -Eqi '(^|[^a-z])(nan|inf)([^a-z]|$)|\?' "$file"; then
    bad="$bad
  a figure is missing (nan, inf or ?)"
  fi
  [ -z "$bad" ] && return 0
  echo "$(basename "$0"): FAIL: the report is incomplete:$bad" >&2
  exit 1
}

# settle SQL_COMMAND…: before the timed rounds, waits (at most 3 minutes) until the server has
# written the data generation's dirty pages and the 1-minute load average is under 0.5, so the
# first round does not pay for work left over from the generation. Not in smoke mode.
settle() {
  [ "$SMOKE" = 1 ] && return 0
  local was dirty _
  was=$("$@" -N -e "SELECT @@GLOBAL.innodb_max_dirty_pages_pct") || return 0
  "$@" -e "SET GLOBAL innodb_max_dirty_pages_pct = 0"
  for _ in $(seq 180); do
    dirty=$("$@" -N -e "SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_pages_dirty'" | awk '{print $2}')
    [ "${dirty:-0}" -lt 64 ] && awk '{exit !($1 < 0.5)}' /proc/loadavg && break
    sleep 1
  done
  "$@" -e "SET GLOBAL innodb_max_dirty_pages_pct = $was"
  echo "settled: $dirty dirty pages, load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
}
