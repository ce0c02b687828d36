# Shell functions shared by the benchmark scripts (bench/run.sh and
# bench/peers.sh source this file; it runs nothing by itself). Before
# sourcing, a script sets BENCH_WHO, the word its messages start with
# ("bench", "peers").

log() { printf '%s\n' "$*"; }
calc() { awk "BEGIN { printf \"%.3f\", $1 }"; }

# ports_free KNOB ADDR...: fail (under set -e: exit) unless every ADDR is
# free, naming KNOB, the variable that moves the ports.
ports_free() {
	local knob=$1 a
	shift
	for a in "$@"; do
		if (exec 3<>"/dev/tcp/${a%:*}/${a#*:}") 2>/dev/null; then
			echo "$BENCH_WHO: $a is already in use; set $knob to another base port" >&2
			return 1
		fi
	done
}

# make_tmp NAME KEEP: create the temp dir $TMP, and on exit stop every
# process in PIDS (those start launched) and remove $TMP (unless KEEP is 1).
make_tmp() {
	TMP=$(mktemp -d "${TMPDIR:-/tmp}/cibaproxy-$1.XXXXXX")
	TMP_KEEP=$2
	PIDS=()
	trap cleanup EXIT
	trap 'exit 130' INT TERM
}
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	if [ "$TMP_KEEP" = 1 ]; then echo "$BENCH_WHO: kept $TMP"; else rm -rf "$TMP"; fi
}

# start NAME CMD...: run CMD in the background, logging to $TMP/NAME.log;
# its pid is in $STARTED.
start() {
	local name=$1
	shift
	"$@" >"$TMP/$name.log" 2>&1 &
	STARTED=$!
	PIDS+=("$STARTED")
}
# stop PID: end a process this script started, and wait for it.
stop() {
	kill "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
	local p keep=()
	for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
	PIDS=("${keep[@]}")
}
# wait_up ADDR [SECONDS]: wait until something answers HTTP at ADDR (at
# most SECONDS, 10 by default).
wait_up() {
	local i
	for i in $(seq $((${2:-10} * 10))); do
		curl -s -o /dev/null "http://$1/" && return 0
		sleep 0.1
	done
	echo "$BENCH_WHO: nothing answers on $1" >&2
	exit 1
}
# cpu PID: the process's utime+stime, in clock ticks.
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# rss PID: its resident set, KiB.
rss() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
