//! The bash watchdog every server started by the end-to-end tests runs under.
//!
//! It runs `"$@"` (after four arguments of its own) in the background and stops it when a line
//! `stop` arrives on its stdin, or when stdin reaches EOF — i.e. when the test process that
//! holds the pipe's other end is gone, however it ended. If the server dies first, it exits
//! with the server's status so the harness sees it.
//!
//! `$1` pidfile to write, `$2` pidfile of a process that must stop first ('' for none),
//! `$3` grace seconds between SIGTERM and SIGKILL, `$4` directory to remove after stopping on
//! EOF ('' for none; a `stop` keeps it, for a restart).
pub const SCRIPT: &str = r#"
set -u
say() { echo "$(date +%H:%M:%S.%3N) watchdog $$: $*"; }
pidfile=$1 after=$2 grace=$3 remove=$4
shift 4
"$@" </dev/null &
srv=$!
echo "$srv" >"$pidfile"
say "started pid $srv: $*"
why=eof
while :; do
  line=
  read -r -t 1 line
  rc=$?
  if [ "$rc" -gt 128 ]; then
    kill -0 "$srv" 2>/dev/null && continue
    wait "$srv"; rc=$?
    say "pid $srv exited on its own with status $rc"
    exit "$rc"
  fi
  [ "$rc" -eq 0 ] || break
  if [ "$line" = stop ]; then why=stop; break; fi
done
if [ "$why" = eof ] && [ -n "$after" ] && [ -s "$after" ]; then
  other=$(cat "$after")
  say "waiting for pid $other to stop first"
  for _ in $(seq 600); do kill -0 "$other" 2>/dev/null || break; sleep 0.05; done
fi
say "$why: SIGTERM to pid $srv"
kill -TERM "$srv" 2>/dev/null
for _ in $(seq $((grace * 20))); do kill -0 "$srv" 2>/dev/null || break; sleep 0.05; done
if kill -0 "$srv" 2>/dev/null; then
  say "pid $srv ignored SIGTERM for ${grace}s; SIGKILL"
  kill -KILL "$srv" 2>/dev/null
fi
wait "$srv" 2>/dev/null
say "pid $srv stopped with status $?"
if [ "$why" = eof ] && [ -n "$remove" ]; then rm -rf -- "$remove"; fi
exit 0
"#;
