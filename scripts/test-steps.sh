# The steps of scripts/test.sh that need more than one line, sourced by it (bash) and by the
# test that checks them (tests/scripts.rs): waiting for apt, whose locks unattended-upgrades (or
# another apt-get) on a fresh machine often holds for minutes while apt-get fails at once; and
# running every test binary even when one fails, with the list of failures at the end.

# The locks apt-get update and apt-get install take. apt and dpkg lock them with fcntl(2), which
# flock(1) does not see: a holder is found in /proc/locks instead.
apt_locks=(/var/lib/dpkg/lock-frontend /var/lib/dpkg/lock /var/lib/apt/lists/lock
  /var/cache/apt/archives/lock)

# Prints "FILE is held by PID (COMMAND)" for the first of the apt locks that a process holds;
# fails when none is held.
apt_lock_holder() {
  local file dev ino key pid
  for file in "${apt_locks[@]}"; do
    [ -e "$file" ] || continue
    read -r dev ino < <(stat -L -c '%d %i' "$file")
    # /proc/locks names a file as MAJOR:MINOR:INODE, the device numbers in hex.
    key=$(printf '%02x:%02x:%s' $(((dev >> 8) & 0xfff)) $(((dev & 0xff) | ((dev >> 12) & 0xfff00))) "$ino")
    # A line with "->" is a process waiting for the lock, not holding it.
    pid=$(awk -v key="$key" '$2 != "->" { for (i = 2; i <= NF; i++) if ($i == key) { print $(i - 1); exit } }' /proc/locks)
    if [ -n "$pid" ]; then
      echo "$file is held by $pid ($(cat "/proc/$pid/comm" 2>/dev/null || echo gone))"
      return 0
    fi
  done
  return 1
}

# Waits until no process holds an apt lock, at most $1 seconds (default 600), saying so once;
# fails, naming the holder, when the time is up.
wait_for_apt() {
  local limit=${1:-600} start=$SECONDS holder said=""
  while holder=$(apt_lock_holder); do
    if ((SECONDS - start >= limit)); then
      echo "apt is still busy after ${limit}s: $holder" >&2
      return 1
    fi
    if [ -z "$said" ]; then
      echo "waiting up to ${limit}s for apt: $holder"
      said=1
    fi
    sleep 1
  done
}

# apt-get "$@" (through $sudo when set, without questions) once no other process holds its
# locks, within 600 seconds in all. A lock taken by someone else between the wait and apt-get's
# start (apt-get then fails at once) is waited for again.
apt_get() {
  local deadline=$((SECONDS + 600)) left status
  while true; do
    left=$((deadline - SECONDS))
    ((left > 0)) || left=0
    wait_for_apt "$left" || return 1
    # DPkg::Lock::Timeout covers the dpkg locks of install; apt-get update takes the lists lock
    # without a timeout, hence the wait above.
    status=0
    ${sudo:-} env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout="$left" "$@" ||
      status=$?
    if ((status == 0)) || ! apt_lock_holder >/dev/null; then
      return $status
    fi
  done
}

# cargo test "$@" with --no-fail-fast: every test binary runs, also after one fails, and cargo's
# output passes through as it is. When tests fail, the failed ones follow, by test binary, and
# then cargo's closing lines again, so that the output still ends with cargo's verdict.
# cargo runs in a session of its own, writing to a file that is followed until cargo exits: a
# process a failed test left running (a server whose stop the test never reached) can neither
# keep the run from ending (as it did holding a pipe to tee open) nor outlive it. What is left
# in the session when cargo exits is named, then stopped.
cargo_test_all() {
  local log status=0 cargo left
  log=$(mktemp)
  setsid cargo test --no-fail-fast "$@" >"$log" 2>&1 &
  cargo=$!
  tail -n +1 -f --pid="$cargo" "$log"
  wait "$cargo" || status=$?
  # setsid ran in place (a background job is no group leader): cargo's pid is the session's id.
  left=$(pgrep -s "$cargo" || true)
  if [ -n "$left" ]; then
    echo
    echo "processes the tests left running, stopped now:"
    ps -o pid=,args= -p "$(echo $left | tr ' ' ,)" | cut -c1-200 | sed 's/^ */  /' || true
    kill -TERM $left 2>/dev/null || true
    for _ in $(seq 50); do
      pgrep -s "$cargo" >/dev/null || break
      sleep 0.1
    done
    pkill -KILL -s "$cargo" || true
  fi
  if ((status != 0)); then
    echo
    echo "FAILED, by test binary (cargo test TARGET -- NAME runs one again):"
    awk '
      /^ +Running / || /^ +Doc-tests / { names = "" }
      # libtest lists the failed tests last, under a second "failures:", one per line.
      /^failures:$/ { names = ""; listing = 1; next }
      listing && /^    [^ ]/ { sub(/^    /, ""); names = names (names == "" ? "" : ", ") $0; next }
      /^test result: / { listing = 0 }
      /^error: test failed, to rerun pass `.*`$/ {
        target = $0
        sub(/^error: test failed, to rerun pass `/, "", target)
        sub(/`$/, "", target)
        if (names == "") names = "(no test list: the binary crashed or was killed, see its output)"
        printf "  %s: %s\n", target, names
        failed++
        names = ""
      }
      END { if (!failed) print "  none: cargo failed before or between the test binaries, see above" }
    ' "$log"
    echo
    echo "cargo test's closing lines, again:"
    awk '/^test result: / { n = 0; delete tail; next } n || NF { tail[++n] = $0 } END { for (i = 1; i <= n; i++) print tail[i] }' "$log"
  fi
  rm -f "$log"
  return "$status"
}
