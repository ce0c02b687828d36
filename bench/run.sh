#!/usr/bin/env bash
# cibaproxy benchmark: `make bench` runs this. It measures, with the same load
# generator (wrk), a bare net/http reference handler (bench/ref) and
# cibaproxy on the embedded store, alternately (A/B/A/B, BENCH_ROUNDS rounds)
# so that the noise of a shared machine hits both, and prints per-round
# numbers and the ratio ranges against the targets of the performance issue.
# See BENCHMARKS.md for what each scenario is and for recorded results.
#
#   1. pending poll of one auth_req_id: wrk -t2 -c64 -d5s, and -t1 -c1 -d3s
#   2. pending polls round-robin over BENCH_N (100 000) pending requests
#   3. POST /bc-authorize (durable write, webhook channel to a 204 sink)
#   4. memory: 1 000 000 pending requests (bench/memfill)
#   5. approval -> ping delivered to a local endpoint (bench/pinglat), under
#      scenario 1's load
#   1-2 again on the redis store (a local redis-server), and
#   6. two instances on one Redis against one instance (when redis-server is
#      installed; BENCH_REDIS=0 skips)
#   the scale scenarios of bench/scale.sh: pending-count sweep, held polls
#   at scale, complete flows per second, and the charts (bench/charts/);
#   and CPU profiles of cibaproxy under scenarios 1 and 3, and a heap profile
#   of scenario 4 (text summaries in bench/profiles/).
#
#   bench/run.sh                 # every phase (make bench)
#   bench/run.sh PHASE...        # only these phases (and the build, the
#                                # summary and the charts), e.g.
#   bench/run.sh sweep cluster   # a name also selects the phases it begins:
#                                # "redis" = redis-1-2-6, redis-6-profile
#                                # and redis-3-5; "scenario" = 3, 5 and 4
# Phases, in order: scenarios-1-2 (with its setup), scenario-3,
# scenario-5, redis-1-2-6, redis-6-profile (needs redis-1-2-6, run with it),
# redis-3-5, profiles-1-3, scenario-4-memory, sweep, heldpolls, flows,
# cluster, peers, idpload.
#
# Everything listens on 127.0.0.1; every load run is bounded by wrk -d.
# Knobs (environment): BENCH_ROUNDS (3), BENCH_DURATION (4s, 64-connection
# runs), BENCH_DURATION_C1 (2s, 1-connection runs), BENCH_WARMUP (3s, one
# unmeasured pass over the pending requests per server), BENCH_N (100000),
# BENCH_MEM_N (1000000, 0 skips), BENCH_PROFILE (1; 0 skips),
# BENCH_PROFILE_SECONDS (6), BENCH_PING_FLOWS (200), BENCH_CLUSTER (1 when
# redis-server and redis-cli exist; 0 skips), BENCH_PORT (18080: uses
# BENCH_PORT .. BENCH_PORT+55, and +10030 .. +10035 for the Cluster bus),
# BENCH_CIBAPROXY (a cibaproxy binary to run instead of this tree's: an
# A/B against another commit's build, same scripts), BENCH_KEEP (1 keeps the temp dir), BENCH_PEERS_ROUNDS (2; BENCH_ROUNDS
# when that is set). BENCH_QUICK=1: small sizes, for a check that the whole
# benchmark works (under 3 minutes on a quiet 2-CPU machine; its charts go
# to bench/out/charts). Each phase prints "phase NAME: N s" when it ends,
# and the summary lists them all; make bench then prints "make bench took
# N s".
#
# Where the time of a quiet full run goes (2026-12-07, 990 s before the
# changes of that day, about 740 s estimated after): scenarios 1-2 ~85 s,
# Redis 1-2-6 ~130 s, IdP load ~115 s, the sweep to 1 000 000 ~60 s,
# Cluster ~70 s, peers ~50 s; the rest under 45 s each. Waits that measured
# nothing were removed (webhook drains after the Redis and Cluster
# bc-authorize runs, a second identical scenario-6 baseline run, a second
# seeding of the profiled server).
set -euo pipefail

cd "$(dirname "$0")/.."
BENCH_WHO=bench
# log, calc, ports_free, make_tmp, start, stop, wait_up, cpu, rss.
source bench/lib.sh
# BENCH_QUICK=1: small sizes (one round, short runs), for a check that the
# whole benchmark works; its figures are not results.
if [ "${BENCH_QUICK:-0}" = 1 ]; then
	: "${BENCH_ROUNDS:=1}" "${BENCH_DURATION:=2s}" "${BENCH_DURATION_C1:=1s}" "${BENCH_WARMUP:=1s}"
	: "${BENCH_N:=5000}" "${BENCH_MEM_N:=50000}" "${BENCH_PROFILE_SECONDS:=2}" "${BENCH_PING_FLOWS:=50}"
	# The profiles are the slowest part for what a check learns from them,
	# and they would replace the recorded bench/profiles/*.txt: skipped.
	QUICK_NOPROF=${BENCH_PROFILE:-}
	: "${BENCH_PROFILE:=0}"
fi
ROOT=$PWD
GO=${GO:-go}
ROUNDS=${BENCH_ROUNDS:-3}
# 4 s and 2 s (5 s and 3 s before 2026-12-07): 120 000 and 10 000 polls a
# run on this machine, and the 3-round ranges of the quiet run at 5 s and
# 3 s were within 10 %: the shorter runs keep make bench under 15 minutes.
DUR=${BENCH_DURATION:-4s}
DUR1=${BENCH_DURATION_C1:-2s}
WARM=${BENCH_WARMUP:-3s}
N=${BENCH_N:-100000}
MEM_N=${BENCH_MEM_N:-1000000}
PROFILE=${BENCH_PROFILE:-1}
# Seconds of each CPU profile (its wrk run lasts one more) and the
# approvals timed per scenario-5 run.
PROF_S=${BENCH_PROFILE_SECONDS:-6}
PING_FLOWS=${BENCH_PING_FLOWS:-200}
PORT=${BENCH_PORT:-18080}
CIB_ADDR=127.0.0.1:$PORT          # cibaproxy, polls (no channel)
REF_ADDR=127.0.0.1:$((PORT + 1))  # reference handler
SINK_ADDR=127.0.0.1:$((PORT + 2)) # webhook sink
AUTHZ_ADDR=127.0.0.1:$((PORT + 3)) # cibaproxy, bc-authorize (webhook on)
PPROF_ADDR=127.0.0.1:$((PORT + 4)) # pprof of the profiled cibaproxy
PING_ADDR=127.0.0.1:$((PORT + 5))  # bench/pinglat: webhook receiver and ping endpoint
REDIS_ADDR=127.0.0.1:$((PORT + 6)) # redis-server for the redis scenarios
CIB2_ADDR=127.0.0.1:$((PORT + 7))  # a second cibaproxy on that Redis
REDIS35_ADDR=127.0.0.1:$((PORT + 8)) # redis-server for Redis scenarios 3 and 5, flushed after each run
REDIS=${BENCH_REDIS:-1}
command -v redis-server >/dev/null || REDIS=0
PROFILES=$ROOT/bench/profiles

command -v wrk >/dev/null || { echo "bench: wrk is not installed (Debian: apt-get install wrk)" >&2; exit 1; }
ports_free BENCH_PORT $CIB_ADDR $REF_ADDR $SINK_ADDR $AUTHZ_ADDR $PPROF_ADDR $PING_ADDR $REDIS_ADDR $CIB2_ADDR $REDIS35_ADDR
# The phases asked for (none: all); want NAME says whether phase NAME is
# one of them: an argument selects the phase of its name and those whose
# names begin with it and "-".
WANT=("$@")
PHASES="scenarios-1-2 scenario-3 scenario-5 redis-1-2-6 redis-6-profile redis-3-5 profiles-1-3 scenario-4-memory sweep heldpolls flows cluster peers idpload"
for a in "${WANT[@]}"; do
	grep -qE "(^| )$a(-[^ ]*)?( |$)" <<<"$PHASES" || { echo "bench: no phase $a (phases: $PHASES)" >&2; exit 2; }
done
want() {
	local a
	[ "${#WANT[@]}" = 0 ] && return 0
	for a in "${WANT[@]}"; do
		case $1 in "$a" | "$a"-*) return 0 ;; esac
	done
	return 1
}
make_tmp bench "${BENCH_KEEP:-0}"

# phase NAME: end the current phase (printing "phase NAME: N s", its wall
# time, with the CPU seconds this script's finished children used in it)
# and begin NAME; "phase" with no name only ends the current one.
PHASE= PHASE_T0=0 PHASE_C0=0 PHASE_LIST=
childcpu() { awk -v t="$(getconf CLK_TCK)" '{ printf "%.1f", ($16 + $17) / t }' "/proc/$$/stat"; }
phase() {
	local now c
	now=$SECONDS c=$(childcpu)
	if [ -n "$PHASE" ]; then
		log "phase $PHASE: $((now - PHASE_T0)) s (at $(date -u +%H:%M:%S); children's CPU $(calc "$c - $PHASE_C0") s; load average $(cut -d' ' -f1 /proc/loadavg))"
		PHASE_LIST="$PHASE_LIST $PHASE=$((now - PHASE_T0))"
	fi
	PHASE=${1:-} PHASE_T0=$now PHASE_C0=$c
}

AUTH=$(printf '%s' bench-poll:bench-poll-secret | base64 -w0)
POLL_PREFIX='grant_type=urn%3Aopenid%3Aparams%3Agrant-type%3Aciba&auth_req_id='
AUTHZ_BODY='scope=openid+email&login_hint=alice&binding_message=Code+1234'
RESULTS=$TMP/results.tsv
: >"$RESULTS"

# load SCEN SERVER ROUND ADDR THREADS CONNS DURATION [VAR=VALUE...]: one wrk
# run with bench/wrk.lua, configured by the VAR=VALUE pairs; appends its
# numbers to $RESULTS and prints them.
load() {
	local scen=$1 srv=$2 round=$3 addr=$4 t=$5 c=$6 d=$7
	shift 7
	local out=$TMP/wrk-$scen-$srv-$round.txt
	env BENCH_THREADS="$t" "$@" wrk -t"$t" -c"$c" -d"$d" -s "$ROOT/bench/wrk.lua" "http://$addr" >"$out" 2>&1 || {
		cat "$out" >&2
		exit 1
	}
	local line
	line=$(grep '^BENCH ' "$out") || {
		cat "$out" >&2
		exit 1
	}
	# BENCH rps=… p50_us=… p90_us=… p99_us=… max_us=… requests=… non2xx=… errors=…
	set -- $(sed 's/[a-z0-9_]*=//g' <<<"${line#BENCH }")
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$scen" "$srv" "$round" "$1" "$2" "$3" "$4" "$5" "$6" "$7" "$8" >>"$RESULTS"
	printf '  round %s  %-4s %-18s %9.0f req/s  p50 %6.3f ms  p99 %6.2f ms  (%s requests, %s non-2xx, %s socket errors)\n' \
		"$round" "$scen" "$srv" "$1" "$(calc "$2/1000")" "$(calc "$4/1000")" "$6" "$7" "$8"
}

# warm NAME ADDR IDS: one unmeasured pass of WARM over the pending requests
# in IDS, before the measured rounds, so that every server starts them in
# its steady state (a first poll of each request is the costliest: on
# Redis, it is the read that fills the instance's knowledge of it). The
# pass is printed, not counted.
warm() {
	local out=$TMP/wrk-warm-$1.txt
	env BENCH_THREADS=2 BENCH_AUTH="$AUTH" BENCH_PATH=/token BENCH_IDS="$3" \
		wrk -t2 -c64 -d"$WARM" -s "$ROOT/bench/wrk.lua" "http://$2" >"$out" 2>&1 || {
		cat "$out" >&2
		exit 1
	}
	printf '  warm-up %-22s %s (not counted)\n' "$1" "$(grep '^BENCH ' "$out" | cut -d' ' -f2-4)"
}

# pinground SCEN ROUND CONFIG [VAR=VALUE...]: scenario 5 once: a fresh
# cibaproxy on CONFIG (with the VAR=VALUE environment), one request polled by
# wrk for at most 30 s, and bench/pinglat timing PING_FLOWS approvals to their ping under
# that load; appends the result to $RESULTS and prints it.
pinground() {
	local scen=$1 r=$2 config=$3 pid wpid line i
	shift 3
	start cibaproxy-$scen-$r env BENCH_ADDR=$AUTHZ_ADDR BENCH_WEBHOOK="http://$PING_ADDR/hook" BENCH_NOTIFY="http://$PING_ADDR/notify" "$@" "$TMP/cibaproxy" serve --config "$config"
	pid=$STARTED
	wait_up $AUTHZ_ADDR
	"$TMP/seed" -url "http://$AUTHZ_ADDR" -n 1 -c 1 -out "$TMP/ids-$scen-$r.txt" >/dev/null
	env BENCH_THREADS=2 BENCH_AUTH="$AUTH" BENCH_PATH=/token BENCH_BODY="$POLL_PREFIX$(cat "$TMP/ids-$scen-$r.txt")" \
		wrk -t2 -c64 -d30s -s "$ROOT/bench/wrk.lua" "http://$AUTHZ_ADDR" >"$TMP/wrk-$scen-$r.txt" 2>&1 &
	wpid=$!
	# The approvals are timed under that load: wait until wrk's 64
	# connections are up (at most 5 s; without ss, 1 s).
	if command -v ss >/dev/null; then
		for i in $(seq 250); do
			[ "$(ss -Htn state established "( dport = :${AUTHZ_ADDR#*:} )" | wc -l)" -ge 64 ] && break
			sleep 0.02
		done
	else
		sleep 1
	fi
	"$TMP/pinglat" -url "http://$AUTHZ_ADDR" -listen $PING_ADDR -n "$PING_FLOWS" -c 4 >"$TMP/pinglat-$scen-$r.txt" 2>&1 || { cat "$TMP/pinglat-$scen-$r.txt" >&2; exit 1; }
	kill $wpid 2>/dev/null || true
	wait $wpid 2>/dev/null || true
	line=$(grep '^PINGLAT ' "$TMP/pinglat-$scen-$r.txt")
	set -- $(sed 's/[a-z0-9_]*=//g' <<<"${line#PINGLAT }")
	printf '%s\tcib\t%s\t%s\t%s\t%s\n' "$scen" "$r" "$2" "$4" "$5" >>"$RESULTS"
	printf '  round %s  %s   approval->ping  p50 %6.2f ms  p99 %6.2f ms  max %6.2f ms  (%s flows, polls loading the same instance)\n' "$r" "$scen" "$2" "$4" "$5" "$1"
	stop "$pid"
}

log "== cibaproxy benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
log "machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(free -g | awk '/^Mem:/{print $2}') GiB, kernel $(uname -r)"
log "tools:   $($GO version | cut -d' ' -f3-), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2), load average $(cut -d' ' -f1-3 /proc/loadavg)"
log "commit:  $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (tree has uncommitted changes)')"
log "rounds:  $ROUNDS; 64-connection runs wrk -t2 -c64 -d$DUR, 1-connection runs wrk -t1 -c1 -d$DUR1"
if [ "${BENCH_QUICK:-0}" = 1 ] && [ -z "${QUICK_NOPROF:-}" ]; then
	log "BENCH_QUICK: the CPU and heap profiles are skipped (BENCH_PROFILE=1 takes them); the IdP load skips its ciba poll mode"
fi

phase build
log ""
log "== build (go build -trimpath -o $TMP/...)"
# One go command for all of them: the packages compile and link in
# parallel.
$GO build -trimpath -o "$TMP/" ./cmd/cibaproxy ./bench/ref ./bench/seed ./bench/sink ./bench/memfill ./bench/pinglat \
	./bench/heldpolls ./bench/flows ./bench/idpload
if [ -n "${BENCH_CIBAPROXY:-}" ]; then
	log "BENCH_CIBAPROXY: running $BENCH_CIBAPROXY as cibaproxy, not this tree's build"
	cp "$BENCH_CIBAPROXY" "$TMP/cibaproxy"
fi
if [ "$PROFILE" = 1 ]; then
	# The profiled binary is the real server plus net/http/pprof on its own
	# loopback listener, added at build time by an overlay (bench/profile).
	printf '{"Replace":{"%s":"%s"}}\n' "$ROOT/cmd/cibaproxy/zz_bench_pprof.go" "$ROOT/bench/profile/pprof.go" >"$TMP/overlay.json"
	$GO build -trimpath -tags cibaproxy_bench_pprof -overlay "$TMP/overlay.json" -o "$TMP/cibaproxy-pprof" ./cmd/cibaproxy
fi

# The scale scenarios (held polls, complete flows, the pending-count sweep)
# and the charts: bench/scale.sh.
source "$ROOT/bench/scale.sh"
scale_build
# The Redis Cluster variant of scenarios 1 and 3: bench/cluster.sh.
source "$ROOT/bench/cluster.sh"

# sink_up starts the webhook sink of the bc-authorize runs, once.
SINK_PID=
sink_up() {
	[ -z "$SINK_PID" ] || return 0
	start sink "$TMP/sink" -listen $SINK_ADDR
	SINK_PID=$STARTED
	wait_up $SINK_ADDR
}
poll() { curl -s -u bench-poll:bench-poll-secret -d grant_type=urn:openid:params:grant-type:ciba -d "auth_req_id=$2" "http://$1/token"; }
# pollround ROUND P ID IDS [HOOK]: one round of scenarios 1 and 2 (P=s) or
# of their Redis variant (P=r): pending polls of ID, then round-robin over
# the ids in the file IDS, with 64 connections and with 1, each run on the
# reference and then on cibaproxy. HOOK, when given, is called as
# "HOOK begin|end SCEN SERVER ROUND" around each run.
pollround() {
	local r=$1 p=$2 id=$3 ids=$4 hook=${5:-} s srv addr
	for s in ${p}1c64 ${p}1c1 ${p}2c64 ${p}2c1; do
		for srv in ref cib; do
			addr=$REF_ADDR
			[ $srv = cib ] && addr=$CIB_ADDR
			[ -z "$hook" ] || "$hook" begin $s $srv "$r"
			case $s in
			?1c64) load $s $srv "$r" $addr 2 64 "$DUR" BENCH_AUTH="$AUTH" BENCH_PATH=/token BENCH_BODY="$POLL_PREFIX$id" ;;
			?1c1) load $s $srv "$r" $addr 1 1 "$DUR1" BENCH_AUTH="$AUTH" BENCH_PATH=/token BENCH_BODY="$POLL_PREFIX$id" ;;
			?2c64) load $s $srv "$r" $addr 2 64 "$DUR" BENCH_AUTH="$AUTH" BENCH_PATH=/token BENCH_IDS="$ids" ;;
			?2c1) load $s $srv "$r" $addr 1 1 "$DUR1" BENCH_AUTH="$AUTH" BENCH_PATH=/token BENCH_IDS="$ids" ;;
			esac
			[ -z "$hook" ] || "$hook" end $s $srv "$r"
		done
	done
}

REF_PID=
if want scenarios-1-2; then
phase setup
log ""
log "== setup: cibaproxy (bench/bench.yaml, embedded store in $TMP, long polling off, no channel) on $CIB_ADDR"
mkdir -p "$TMP/data-poll"
start cibaproxy env BENCH_ADDR=$CIB_ADDR BENCH_DATA="$TMP/data-poll" BENCH_WEBHOOK= "$TMP/cibaproxy" serve --config bench/bench.yaml
CIB_PID=$STARTED
wait_up $CIB_ADDR
"$TMP/seed" -url "http://$CIB_ADDR" -n 1 -c 1 -out "$TMP/ids-1.txt"
SEED_START=$(date +%s.%N)
"$TMP/seed" -url "http://$CIB_ADDR" -n "$N" -c 64 -out "$TMP/ids-n.txt" -timeout 3m
log "   ($N requests seeded with 64 concurrent POST /bc-authorize in $(calc "$(date +%s.%N) - $SEED_START") s, each an fsynced write)"
ID1=$(cat "$TMP/ids-1.txt")
cat "$TMP/ids-1.txt" "$TMP/ids-n.txt" >"$TMP/ids-all.txt"
start ref "$TMP/ref" -listen $REF_ADDR -ids "$TMP/ids-all.txt"
REF_PID=$STARTED
wait_up $REF_ADDR
log "   first poll,  reference: $(poll $REF_ADDR "$ID1")"
log "   first poll,  cibaproxy: $(poll $CIB_ADDR "$ID1")"
log "   second poll, cibaproxy: $(poll $CIB_ADDR "$ID1")"

phase scenarios-1-2
log ""
log "== scenarios 1 and 2: pending polls, reference (ref) and cibaproxy (cib) alternately"
warm ref $REF_ADDR "$TMP/ids-n.txt"
warm cib $CIB_ADDR "$TMP/ids-n.txt"
for r in $(seq "$ROUNDS"); do
	pollround "$r" s "$ID1" "$TMP/ids-n.txt"
done
stop "$CIB_PID"
fi

if want scenario-3; then
phase scenario-3
log ""
log "== scenario 3: POST /bc-authorize, webhook channel to a sink answering 204; a fresh cibaproxy per round"
sink_up
for r in $(seq "$ROUNDS"); do
	mkdir -p "$TMP/data-authz-$r"
	start cibaproxy-authz-$r env BENCH_ADDR=$AUTHZ_ADDR BENCH_DATA="$TMP/data-authz-$r" BENCH_WEBHOOK="http://$SINK_ADDR/hook" "$TMP/cibaproxy" serve --config bench/bench.yaml
	pid=$STARTED
	wait_up $AUTHZ_ADDR
	before=$(curl -s "http://$SINK_ADDR/count")
	load s3 cib "$r" $AUTHZ_ADDR 2 64 "$DUR" BENCH_AUTH="$AUTH" BENCH_PATH=/bc-authorize BENCH_BODY="$AUTHZ_BODY"
	after=$(curl -s "http://$SINK_ADDR/count")
	secs=$(sed 's/s$//' <<<"$DUR")
	created=$(awk -F'\t' -v r="$r" '$1=="s3" && $3==r {print $9}' "$RESULTS")
	printf '           webhooks delivered during the run: %s of %s created (%.0f/s)\n' $((after - before)) "$created" "$(calc "($after - $before)/$secs")"
	printf 's3hook\tcib\t%s\t%s\t%s\n' "$r" $((after - before)) "$created" >>"$RESULTS"
	stop "$pid"
done
fi

if want scenario-5; then
phase scenario-5
log ""
log "== scenario 5: approval -> ping delivered (bench/pinglat: $PING_FLOWS flows, 4 at a time), under scenario 1's load"
for r in $(seq "$ROUNDS"); do
	mkdir -p "$TMP/data-s5-$r"
	pinground s5 "$r" bench/bench.yaml BENCH_DATA="$TMP/data-s5-$r"
done
fi

# redis_up NAME ADDR: start a redis-server on ADDR (AOF, appendfsync
# everysec, data in $TMP/NAME) and wait until it answers; its pid is in
# $STARTED.
redis_up() {
	local i pid
	mkdir -p "$TMP/$1"
	start "$1" redis-server --bind 127.0.0.1 --port "${2#*:}" --dir "$TMP/$1" --save '' --appendonly yes --appendfsync everysec
	pid=$STARTED
	for i in $(seq 100); do
		if (exec 3<>"/dev/tcp/${2%:*}/${2#*:}") 2>/dev/null; then break; fi
		sleep 0.1
	done
	STARTED=$pid
}

if [ "$REDIS" = 1 ] && { want redis-1-2-6 || want redis-6-profile; }; then
	phase redis-1-2-6
	log ""
	log "== redis store: scenarios 1 and 2 again with cibaproxy on a local redis-server (AOF, appendfsync everysec), and scenario 6"
	redis_up redis $REDIS_ADDR
	REDIS_PID=$STARTED
	start cibaproxy-redis env BENCH_ADDR=$CIB_ADDR BENCH_REDIS=$REDIS_ADDR BENCH_WEBHOOK= "$TMP/cibaproxy" serve --config bench/bench-redis.yaml
	RCIB_PID=$STARTED
	wait_up $CIB_ADDR
	start cibaproxy-redis2 env BENCH_ADDR=$CIB2_ADDR BENCH_REDIS=$REDIS_ADDR BENCH_WEBHOOK= "$TMP/cibaproxy" serve --config bench/bench-redis.yaml
	RCIB2_PID=$STARTED
	wait_up $CIB2_ADDR
	"$TMP/seed" -url "http://$CIB_ADDR" -n 1 -c 1 -out "$TMP/rids-1.txt"
	rmem() { command -v redis-cli >/dev/null && redis-cli -h "${REDIS_ADDR%:*}" -p "${REDIS_ADDR#*:}" info memory 2>/dev/null | awk -F: '/^used_memory:/ { print $2 + 0 }'; }
	mem0=$(rmem)
	SEED_START=$(date +%s.%N)
	"$TMP/seed" -url "http://$CIB_ADDR" -n "$N" -c 64 -out "$TMP/rids-n.txt" -timeout 3m
	log "   ($N requests seeded on Redis in $(calc "$(date +%s.%N) - $SEED_START") s)"
	mem1=$(rmem)
	if [ -n "$mem0" ] && [ -n "$mem1" ]; then
		log "   scenario 4 on Redis: used_memory grew by $((mem1 - mem0)) bytes for $N pending requests: $(((mem1 - mem0) / N)) bytes each in Redis"
		printf 'r4\tcib\t1\t%s\n' $(((mem1 - mem0) / N)) >>"$RESULTS"
	fi
	RID1=$(cat "$TMP/rids-1.txt")
	# The reference looks up the same ids as the server it is compared with.
	[ -z "$REF_PID" ] || stop "$REF_PID"
	cat "$TMP/rids-1.txt" "$TMP/rids-n.txt" >"$TMP/rids-all.txt"
	start ref-redis "$TMP/ref" -listen $REF_ADDR -ids "$TMP/rids-all.txt"
	wait_up $REF_ADDR
	log "   first poll,  cibaproxy on redis: $(poll $CIB_ADDR "$RID1")"
	warm ref $REF_ADDR "$TMP/rids-n.txt"
	warm "cib on redis" $CIB_ADDR "$TMP/rids-n.txt"
	warm "second cib on redis" $CIB2_ADDR "$TMP/rids-n.txt"
	# rcmds: the commands Redis has processed so far (empty without
	# redis-cli): their difference over a run, per poll answered, is how
	# much of the polling reaches Redis at all.
	rcmds() { command -v redis-cli >/dev/null && redis-cli -h "${REDIS_ADDR%:*}" -p "${REDIS_ADDR#*:}" info stats 2>/dev/null | awk -F: '/^total_commands_processed:/ { print $2 + 0 }'; }
	# settle_redis waits, at most 15 s, until Redis processes under 100
	# commands in half a second.
	settle_redis() {
		local a b i
		a=$(rcmds) || return 0
		[ -n "$a" ] || return 0
		for i in $(seq 30); do
			sleep 0.5
			b=$(rcmds)
			[ -n "$b" ] && [ $((b - a)) -lt 100 ] && return 0
			a=$b
		done
		log "   (Redis still busy after 15 s of waiting: this run may carry earlier runs' merges)"
	}
	# rcmdrun begin|end SCEN SERVER ROUND: around each run of pollround,
	# print and record the Redis commands per poll answered of cibaproxy's.
	rcmdrun() {
		case $1 in
		begin)
			# Settle first: the grown intervals of the runs before
			# (a round-robin run slows down 100 000 ids on each
			# instance) are merged into Redis over the next seconds,
			# 100 000-200 000 commands that, landing in a measured run,
			# cost it up to 40 % of its polls in either build (an A/B of
			# d72bcdb and 685aa7e showed the same dips). Wait until Redis
			# is quiet (under 100 commands in 0.5 s), at most 15 s.
			settle_redis
			c0=$(rcmds)
			;;
		end)
			c1=$(rcmds)
			if [ "$3" = cib ] && [ -n "$c0" ] && [ -n "$c1" ]; then
				polls=$(awk -F'\t' -v s="$2" -v r="$4" '$1==s && $2=="cib" && $3==r {print $9}' "$RESULTS")
				printf '           Redis commands during the run: %s, %s per poll answered\n' $((c1 - c0)) "$(calc "($c1 - $c0)/$polls")"
				printf 'rcmd\t%s\t%s\t%s\n' "$2" "$4" "$(calc "($c1 - $c0)/$polls")" >>"$RESULTS"
			fi
			;;
		esac
	}
	for r in $(seq "$ROUNDS"); do
		pollround "$r" r "$RID1" "$TMP/rids-n.txt" rcmdrun
		# Scenario 6: the same 64 connections split over two instances
		# (two wrk, one per instance), against all 64 on one instance:
		# the round's r2c64 run on cibaproxy, the same wrk command a few
		# seconds before (it was run again here, identically, until
		# 2026-12-07).
		awk -F'\t' -v r="$r" 'BEGIN { OFS = "\t" } $1 == "r2c64" && $2 == "cib" && $3 == r { $1 = "s6one"; print }' "$RESULTS" >>"$RESULTS"
		printf '  round %s  s6one: the r2c64 cib run above (all 64 connections on one instance)\n' "$r"
		load s6a cib "$r" $CIB_ADDR 1 32 "$DUR" BENCH_AUTH="$AUTH" BENCH_PATH=/token BENCH_IDS="$TMP/rids-n.txt" &
		w1=$!
		load s6b cib "$r" $CIB2_ADDR 1 32 "$DUR" BENCH_AUTH="$AUTH" BENCH_PATH=/token BENCH_IDS="$TMP/rids-n.txt"
		wait $w1
	done
	if [ "$PROFILE" = 1 ]; then
		# Scenario 6 cannot scale on 2 CPUs; what would make it scale is
		# shown instead: where the CPU goes while two instances share the
		# load, what Redis is asked per poll, and a CPU profile of one
		# instance (the same server built with bench/profile/pprof.go).
		phase redis-6-profile
		log ""
		log "== scenario 6 profile: two instances on one Redis, 32 connections each, into bench/profiles/"
		mkdir -p "$PROFILES"
		stop "$RCIB_PID"
		start cibaproxy-redis-pprof env CIBAPROXY_BENCH_PPROF=$PPROF_ADDR BENCH_ADDR=$CIB_ADDR BENCH_REDIS=$REDIS_ADDR BENCH_WEBHOOK= "$TMP/cibaproxy-pprof" serve --config bench/bench-redis.yaml
		RCIB_PID=$STARTED
		wait_up $CIB_ADDR
		warm "cib on redis (profiled)" $CIB_ADDR "$TMP/rids-n.txt"
		busy() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8, $5 + $6}' /proc/stat; }
		a0=$(cpu "$RCIB_PID") b0=$(cpu "$RCIB2_PID") r0=$(cpu "$REDIS_PID") m0=$(busy) c0=$(rcmds)
		curl -s -o "$TMP/s6.pprof" "http://$PPROF_ADDR/debug/pprof/profile?seconds=$PROF_S" &
		cpid=$!
		env BENCH_THREADS=1 BENCH_AUTH="$AUTH" BENCH_PATH=/token BENCH_IDS="$TMP/rids-n.txt" wrk -t1 -c32 -d$((PROF_S + 1))s -s "$ROOT/bench/wrk.lua" "http://$CIB_ADDR" >"$TMP/wrk-s6p-a.txt" 2>&1 &
		w1=$!
		env BENCH_THREADS=1 BENCH_AUTH="$AUTH" BENCH_PATH=/token BENCH_IDS="$TMP/rids-n.txt" wrk -t1 -c32 -d$((PROF_S + 1))s -s "$ROOT/bench/wrk.lua" "http://$CIB2_ADDR" >"$TMP/wrk-s6p-b.txt" 2>&1
		wait $w1 $cpid
		a1=$(cpu "$RCIB_PID") b1=$(cpu "$RCIB2_PID") r1=$(cpu "$REDIS_PID") m1=$(busy) c1=$(rcmds)
		polls=$(($(grep -h '^BENCH ' "$TMP/wrk-s6p-a.txt" "$TMP/wrk-s6p-b.txt" | sed 's/.*requests=\([0-9]*\).*/\1/' | paste -sd+)))
		read -r mb0 mi0 <<<"$m0"
		read -r mb1 mi1 <<<"$m1"
		total=$((mb1 - mb0 + mi1 - mi0))
		{
			echo "# cibaproxy profile: scenario 6, two instances on one Redis, wrk -t1 -c32 -d$((PROF_S + 1))s on each, $N pending requests"
			echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown); made by make bench (bench/run.sh)"
			echo "# wrk, instance A: $(grep '^BENCH ' "$TMP/wrk-s6p-a.txt" | cut -d' ' -f2-3)"
			echo "# wrk, instance B: $(grep '^BENCH ' "$TMP/wrk-s6p-b.txt" | cut -d' ' -f2-3)"
			echo
			echo "## Where the 2 CPUs went during the $((PROF_S + 1)) s (clock ticks; 100 per CPU-second)"
			echo "machine busy:      $((mb1 - mb0)) of $total ($(calc "100*($mb1 - $mb0)/$total")%)"
			echo "cibaproxy A:       $((a1 - a0))"
			echo "cibaproxy B:       $((b1 - b0))"
			echo "redis-server:      $((r1 - r0))"
			echo "the rest (2 wrk, kernel): $((mb1 - mb0 - (a1 - a0) - (b1 - b0) - (r1 - r0)))"
			if [ -n "$c0" ] && [ -n "$c1" ]; then
				echo
				echo "## What Redis was asked"
				echo "commands processed: $((c1 - c0)) for $polls polls answered ($(calc "($c1 - $c0)/$polls") per poll; heartbeats, INFO and merges of grown intervals included)"
			fi
			echo
			echo "## go tool pprof -top -nodecount=30 (instance A)"
			$GO tool pprof -top -nodecount=30 "$TMP/cibaproxy-pprof" "$TMP/s6.pprof" 2>/dev/null
		} >"$PROFILES/scenario6-two-instances.txt"
		log "   $PROFILES/scenario6-two-instances.txt"
	fi
	stop "$RCIB_PID"
	stop "$RCIB2_PID"
	stop "$REDIS_PID"
fi

if [ "$REDIS" = 1 ] && want redis-3-5; then
	phase redis-3-5
	log ""
	log "== scenarios 3 and 5 on Redis: bc-authorize (webhook to the sink) and approval -> ping, a fresh cibaproxy per round,"
	log "   on a redis-server of their own (AOF, appendfsync everysec), emptied (FLUSHALL) after each run with its undelivered webhooks"
	sink_up
	redis_up redis35 $REDIS35_ADDR
	REDIS35_PID=$STARTED
	# flush35: empty that Redis once no instance runs on it, so that no
	# later instance delivers a run's leftover webhook messages (under a
	# later measurement, or to another scenario's receiver). Until
	# 2026-12-07 the runs waited for the sink to have them all instead,
	# 15-19 s a round that measured nothing.
	flush35() {
		local reply
		exec 3<>"/dev/tcp/${REDIS35_ADDR%:*}/${REDIS35_ADDR#*:}"
		printf 'FLUSHALL\r\n' >&3
		read -r reply <&3
		exec 3>&-
		[ "${reply%$'\r'}" = +OK ] || { echo "bench: FLUSHALL answered $reply" >&2; exit 1; }
	}
	for r in $(seq "$ROUNDS"); do
		start cibaproxy-r3-$r env BENCH_ADDR=$AUTHZ_ADDR BENCH_REDIS=$REDIS35_ADDR BENCH_WEBHOOK="http://$SINK_ADDR/hook" "$TMP/cibaproxy" serve --config bench/bench-redis.yaml
		pid=$STARTED
		wait_up $AUTHZ_ADDR
		before=$(curl -s "http://$SINK_ADDR/count")
		load r3 cib "$r" $AUTHZ_ADDR 2 64 "$DUR" BENCH_AUTH="$AUTH" BENCH_PATH=/bc-authorize BENCH_BODY="$AUTHZ_BODY"
		after=$(curl -s "http://$SINK_ADDR/count")
		created=$(awk -F'\t' -v r="$r" '$1=="r3" && $3==r {print $9}' "$RESULTS")
		printf '           webhooks delivered during the run: %s of %s created (the rest are flushed)\n' $((after - before)) "$created"
		stop "$pid"
		flush35
		pinground r5 "$r" bench/bench-redis.yaml BENCH_REDIS=$REDIS35_ADDR
		flush35
	done
	stop "$REDIS35_PID"
fi

if [ "$PROFILE" = 1 ] && want profiles-1-3; then
	phase profiles-1-3
	log ""
	log "== CPU profiles of cibaproxy (the same server built with bench/profile/pprof.go), into bench/profiles/"
	mkdir -p "$PROFILES"
	# profile NAME DESCRIPTION WRK-ARGS...: PROF_S s of CPU profile during a
	# wrk run one second longer.
	profile() {
		local name=$1 what=$2 addr=$3
		shift 3
		curl -s -o "$TMP/$name.pprof" "http://$PPROF_ADDR/debug/pprof/profile?seconds=$PROF_S" &
		local cpid=$!
		sleep 0.2
		env "$@" wrk -t2 -c64 -d$((PROF_S + 1))s -s "$ROOT/bench/wrk.lua" "http://$addr" >"$TMP/wrk-$name.txt" 2>&1
		wait $cpid
		{
			echo "# cibaproxy CPU profile: $what"
			echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown); made by make bench (bench/run.sh)"
			echo "# load: wrk -t2 -c64 -d$((PROF_S + 1))s -s bench/wrk.lua (profile: the middle $PROF_S s); wrk and the server share the 2 CPUs"
			echo "# wrk: $(grep '^BENCH ' "$TMP/wrk-$name.txt" | cut -d' ' -f2-)"
			echo
			echo "## go tool pprof -top -nodecount=30"
			$GO tool pprof -top -nodecount=30 "$TMP/cibaproxy-pprof" "$TMP/$name.pprof" 2>/dev/null
			echo
			echo "## go tool pprof -top -cum -nodecount=60"
			$GO tool pprof -top -cum -nodecount=60 "$TMP/cibaproxy-pprof" "$TMP/$name.pprof" 2>/dev/null
		} >"$PROFILES/$name.txt"
		log "   $PROFILES/$name.txt: $(grep '^BENCH ' "$TMP/wrk-$name.txt" | cut -d' ' -f2-3)"
	}
	# As in the measured runs, the store holds the BENCH_N other requests
	# too: the store file of scenarios 1-2 (the server loads it at start),
	# or, when they did not run, one seeded in-process (bench/seed -config).
	if [ -s "$TMP/data-poll/cibaproxy.db" ] && [ -s "$TMP/ids-1.txt" ]; then
		data1=$TMP/data-poll
		cp "$TMP/ids-1.txt" "$TMP/ids-prof1.txt"
	else
		data1=$TMP/data-prof1
		rm -f "$TMP/ids-prof1.txt" "$TMP/ids-profn.txt"
		BENCH_DATA=$data1 "$TMP/seed" -config bench/bench.yaml -n 1 -c 1 -out "$TMP/ids-prof1.txt" >/dev/null
		BENCH_DATA=$data1 "$TMP/seed" -config bench/bench.yaml -n "$N" -c 4 -out "$TMP/ids-profn.txt" >/dev/null
	fi
	start cibaproxy-prof1 env CIBAPROXY_BENCH_PPROF=$PPROF_ADDR BENCH_ADDR=$CIB_ADDR BENCH_DATA="$data1" BENCH_WEBHOOK= "$TMP/cibaproxy-pprof" serve --config bench/bench.yaml
	pid=$STARTED
	wait_up $CIB_ADDR 60
	profile scenario1-poll "scenario 1, pending polls of one auth_req_id (after the first: slow_down), 64 connections, $N other pending requests in the store" $CIB_ADDR \
		BENCH_THREADS=2 BENCH_AUTH="$AUTH" BENCH_PATH=/token BENCH_BODY="$POLL_PREFIX$(cat "$TMP/ids-prof1.txt")"
	stop "$pid"
	sink_up
	mkdir -p "$TMP/data-prof3"
	start cibaproxy-prof3 env CIBAPROXY_BENCH_PPROF=$PPROF_ADDR BENCH_ADDR=$AUTHZ_ADDR BENCH_DATA="$TMP/data-prof3" BENCH_WEBHOOK="http://$SINK_ADDR/hook" "$TMP/cibaproxy-pprof" serve --config bench/bench.yaml
	pid=$STARTED
	wait_up $AUTHZ_ADDR
	profile scenario3-bc-authorize "scenario 3, POST /bc-authorize with the webhook channel to a 204 sink, 64 connections" $AUTHZ_ADDR \
		BENCH_THREADS=2 BENCH_AUTH="$AUTH" BENCH_PATH=/bc-authorize BENCH_BODY="$AUTHZ_BODY"
	stop "$pid"
fi

if [ "$MEM_N" != 0 ] && want scenario-4-memory; then
	phase scenario-4-memory
	log ""
	log "== scenario 4: memory of $MEM_N pending requests (bench/memfill: the real handler on the in-memory part of the store)"
	env BENCH_DATA="$TMP" "$TMP/memfill" -n "$MEM_N" -config bench/bench.yaml -memprofile "$TMP/mem.pprof" | sed 's/^/   /' | tee "$TMP/mem.txt" || true
	if [ "$PROFILE" = 1 ] && [ -s "$TMP/mem.pprof" ]; then
		{
			echo "# cibaproxy heap profile: scenario 4, $MEM_N pending requests, each polled once, live heap after the fill"
			echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown); made by make bench (bench/run.sh, bench/memfill)"
			sed 's/^ *memfill: /# /' "$TMP/mem.txt"
			echo
			echo "## go tool pprof -top -sample_index=inuse_space -nodecount=30"
			$GO tool pprof -top -sample_index=inuse_space -nodecount=30 "$TMP/memfill" "$TMP/mem.pprof" 2>/dev/null
		} >"$PROFILES/scenario4-memory.txt"
		log "   $PROFILES/scenario4-memory.txt"
	fi
fi

if [ -n "$SWEEP" ] && want sweep; then phase sweep && scenario_sweep; fi
if [ -n "$HELD" ] && want heldpolls; then phase heldpolls && scenario_heldpolls; fi
if [ "$FLOWS" = 1 ] && want flows; then phase flows && scenario_flows; fi
if [ "$CLUSTER" = 1 ] && want cluster; then
	phase cluster
	sink_up
	scenario_cluster
fi

# Issue #20 items 1-2 (BENCH_PEERS=0 / BENCH_IDPLOAD=0 skip them; BENCH_QUICK=1
# makes them small): the peers, node-oidc-provider's poll path beside the
# reference and cibaproxy (bench/peers.sh), and the IdP's load with clients
# polling it directly or through cibaproxy (bench/idpload). TSV in $OUT
# (bench/out, for the charts) and $OUT/raw. Ports: BENCH_PORT+40 .. +42, +50 .. +52.
# Two rounds (BENCH_PEERS_ROUNDS; the other phases' BENCH_ROUNDS with
# BENCH_QUICK): the quiet 3-round run of 2026-12-07 gave ratios within
# 6.4-6.8x and 5.8-6.2x, a spread a third round does not change.
PEERS_ROUNDS=${BENCH_PEERS_ROUNDS:-$ROUNDS}
[ -n "${BENCH_PEERS_ROUNDS:-}" ] || [ "${BENCH_QUICK:-0}" = 1 ] || [ -n "${BENCH_ROUNDS:-}" ] || PEERS_ROUNDS=2
scenario_peers() {
	log "" && log "== peers: poll path of the reference, cibaproxy and node-oidc-provider (bench/peers.sh)"
	BENCH_BIN=$TMP BENCH_OUT=$OUT BENCH_PEERS_PORT=$((PORT + 40)) BENCH_ROUNDS=$PEERS_ROUNDS BENCH_DURATION=$DUR BENCH_DURATION_C1=$DUR1 BENCH_WARMUP=$WARM bench/peers.sh
}
scenario_idpload() {
	local n=${BENCH_IDPLOAD_N:-1000} d="-delay-min 5s -delay-max 20s"
	if [ "${BENCH_QUICK:-0}" = 1 ]; then
		# The ciba relay in poll mode is the slowest mode (cibaproxy polls
		# the IdP at the 5 s interval after each approval): quick skips it.
		n=${BENCH_IDPLOAD_N:-100} d="-delay-min 1s -delay-max 3s -warm 100 -modes ${BENCH_IDPLOAD_MODES:-direct,ciba-ping,oidc}"
	fi
	log "" && log "== IdP load: $n pending requests, clients polling node-oidc-provider directly or through cibaproxy (bench/idpload)"
	[ "${BENCH_QUICK:-0}" = 1 ] && [ -z "${BENCH_IDPLOAD_MODES:-}" ] && log "   BENCH_QUICK: the ciba mode (relay, poll: the slowest) is skipped; a full run has it"
	"$TMP/idpload" -cibaproxy "$TMP/cibaproxy" -n "$n" $d -port $((PORT + 50)) -out "$OUT/idpload.tsv"
}
if command -v node >/dev/null && [ -d test/idp/node_modules ]; then
	if [ "${BENCH_PEERS:-1}" = 1 ] && want peers; then phase peers && scenario_peers; fi
	if [ "${BENCH_IDPLOAD:-1}" = 1 ] && want idpload; then phase idpload && scenario_idpload; fi
else
	log "" && log "== peers and IdP load: skipped (they need node and test/idp/node_modules: cd test/idp && npm ci)"
fi

phase summary
log ""
log "== summary (ranges are min-max over $ROUNDS rounds; a ratio compares cibaproxy with the reference run just before it)"
awk -F'\t' '
function fmt(x) { return sprintf(x >= 100 ? "%.0f" : (x >= 10 ? "%.1f" : "%.3f"), x) }
function range(a, b) { return fmt(a) "-" fmt(b) }
# pollrows(P, PREFIX): the summary rows of scenarios 1 and 2 (P "s") or of
# their Redis variant (P "r"), named with PREFIX.
function pollrows(p, prefix,    s, name, c64, c1) {
	for (s = 1; s <= 2; s++) {
		name = prefix ((s == 1) ? "1 one id" : "2 round-robin")
		c64 = p s "c64"; c1 = p s "c1"
		printf "%-34s %-14s %-14s %-13s %s\n", name ", 64 conn: req/s", range(lo[c64, "ref", "rps"], hi[c64, "ref", "rps"]), range(lo[c64, "cib", "rps"], hi[c64, "cib", "rps"]), range(lo[c64, "tput"], hi[c64, "tput"]), ">= 0.80: " verdict(lo[c64, "tput"] >= 0.80, hi[c64, "tput"] >= 0.80)
		printf "%-34s %-14s %-14s %-13s %s\n", name ", 64 conn: p99 ms", range(lo[c64, "ref", "p99"], hi[c64, "ref", "p99"]), range(lo[c64, "cib", "p99"], hi[c64, "cib", "p99"]), range(lo[c64, "p99r"], hi[c64, "p99r"]), "<= 1.5: " verdict(hi[c64, "p99r"] <= 1.5, lo[c64, "p99r"] <= 1.5)
		printf "%-34s %-14s %-14s %-13s %s\n", name ", 1 conn: p50 ms", range(lo[c1, "ref", "p50"], hi[c1, "ref", "p50"]), range(lo[c1, "cib", "p50"], hi[c1, "cib", "p50"]), range(lo[c1, "p50r"], hi[c1, "p50r"]), "<= 2: " verdict(hi[c1, "p50r"] <= 2, lo[c1, "p50r"] <= 2)
		if (p == "s")
			printf "%-34s %-14s %-14s\n", name ", 1 conn: req/s", range(lo[c1, "ref", "rps"], hi[c1, "ref", "rps"]), range(lo[c1, "cib", "rps"], hi[c1, "cib", "rps"])
		if (("rcmd", c64) in lo)
			printf "%-34s %-14s %-14s\n", name ", Redis commands/poll", "-", range(lo["rcmd", c64], hi["rcmd", c64])
	}
}
function upd(key, v) { if (!(key in lo) || v < lo[key]) lo[key] = v; if (!(key in hi) || v > hi[key]) hi[key] = v }
$1 == "s3hook" { upd("hook", $4); next }
$1 == "rcmd" { upd("rcmd" SUBSEP $2, $4); next }
$1 == "s5" || $1 == "r5" { upd($1 SUBSEP "cib" SUBSEP "p50", $4); upd($1 SUBSEP "cib" SUBSEP "p99", $5); next }
$1 == "r4" { upd("r4", $4); next }
$1 == "s6a" || $1 == "s6b" { s6[$3] += $4; upd($1 SUBSEP "cib" SUBSEP "rps", $4); next }
{
	upd($1 SUBSEP $2 SUBSEP "rps", $4); upd($1 SUBSEP $2 SUBSEP "p50", $5 / 1000); upd($1 SUBSEP $2 SUBSEP "p99", $7 / 1000)
	v[$1, $2, $3, "rps"] = $4; v[$1, $2, $3, "p50"] = $5; v[$1, $2, $3, "p99"] = $7; rounds[$3] = 1
	if ($11 != 0) bad = bad "  " $1 " " $2 " round " $3 ": " $11 " socket errors\n"
	if ($1 !~ /^[src]3/ && $10 != $9) bad = bad "  " $1 " " $2 " round " $3 ": " ($9 - $10) " answers were not 400\n"
	if ($1 ~ /^[src]3/ && $10 != 0) bad = bad "  " $1 " round " $3 ": " $10 " answers were not 2xx\n"
}
END {
	for (r in rounds) for (i = 1; i <= 3; i++) {
		c = (i == 1) ? "c1c64" : (i == 2 ? "c1c1" : "c3")
		if ((c "w1", "cib", r, "rps") in v && (c "w0", "cib", r, "rps") in v) upd(c SUBSEP "wr", v[c "w1", "cib", r, "rps"] / v[c "w0", "cib", r, "rps"])
	}
	for (r in s6) if (("s6one", "cib", r, "rps") in v) { upd("s6sum", s6[r]); upd("s6r", s6[r] / v["s6one", "cib", r, "rps"]) }
	for (r in rounds) for (s = 1; s <= 4; s++) {
		c64 = (s <= 2 ? "s" s : "r" (s - 2)) "c64"; c1 = (s <= 2 ? "s" s : "r" (s - 2)) "c1"
		if ((c64, "ref", r, "rps") in v) {
			upd(c64 SUBSEP "tput", v[c64, "cib", r, "rps"] / v[c64, "ref", r, "rps"])
			upd(c64 SUBSEP "p99r", v[c64, "cib", r, "p99"] / v[c64, "ref", r, "p99"])
		}
		if ((c1, "ref", r, "p50") in v) upd(c1 SUBSEP "p50r", v[c1, "cib", r, "p50"] / v[c1, "ref", r, "p50"])
	}
	printf "%-34s %-14s %-14s %-13s %s\n", "scenario", "reference", "cibaproxy", "ratio", "target"
	if (("s1c64", "cib", "rps") in lo) pollrows("s", "")
	if (("s3", "cib", "rps") in lo) {
	printf "%-34s %-14s %-14s %-13s %s\n", "3 bc-authorize, 64 conn: req/s", "-", range(lo["s3", "cib", "rps"], hi["s3", "cib", "rps"]), "", ">= 5000: " verdict(lo["s3", "cib", "rps"] >= 5000, hi["s3", "cib", "rps"] >= 5000)
	printf "%-34s %-14s %-14s\n", "3 bc-authorize, 64 conn: p50 ms", "-", range(lo["s3", "cib", "p50"], hi["s3", "cib", "p50"])
	printf "%-34s %-14s %-14s\n", "3 bc-authorize, 64 conn: p99 ms", "-", range(lo["s3", "cib", "p99"], hi["s3", "cib", "p99"])
	printf "%-34s %-14s %-14s\n", "3 webhooks sent during a run", "-", range(lo["hook"], hi["hook"])
	}
	if (("s5", "cib", "p99") in lo)
		printf "%-34s %-14s %-14s %-13s %s\n", "5 approval->ping p99 ms (loaded)", "-", range(lo["s5", "cib", "p99"], hi["s5", "cib", "p99"]), "", "<= 50: " verdict(hi["s5", "cib", "p99"] <= 50, lo["s5", "cib", "p99"] <= 50)
	if (("r1c64", "cib", "rps") in lo || ("r3", "cib", "rps") in lo) {
		if (("r1c64", "cib", "rps") in lo) pollrows("r", "redis ")
		if (("r3", "cib", "rps") in lo)
			printf "%-34s %-14s %-14s %-13s %s\n", "redis 3 bc-authorize, 64 conn: req/s", "-", range(lo["r3", "cib", "rps"], hi["r3", "cib", "rps"]), "", ">= 5000: " verdict(lo["r3", "cib", "rps"] >= 5000, hi["r3", "cib", "rps"] >= 5000)
		if ("r4" in lo)
			printf "%-34s %-14s %-14s %-13s %s\n", "redis 4 bytes per request in Redis", "-", fmt(lo["r4"]), "", "<= 2048: " verdict(lo["r4"] <= 2048, lo["r4"] <= 2048)
		if (("r5", "cib", "p99") in lo)
			printf "%-34s %-14s %-14s %-13s %s\n", "redis 5 approval->ping p99 ms", "-", range(lo["r5", "cib", "p99"], hi["r5", "cib", "p99"]), "", "<= 50: " verdict(hi["r5", "cib", "p99"] <= 50, lo["r5", "cib", "p99"] <= 50)
		if ("s6r" in lo)
			printf "%-34s %-14s %-14s %-13s %s\n", "6 two instances / one, req/s", range(lo["s6one", "cib", "rps"], hi["s6one", "cib", "rps"]), range(lo["s6sum"], hi["s6sum"]), range(lo["s6r"], hi["s6r"]), ">= 1.6: " verdict(lo["s6r"] >= 1.6, hi["s6r"] >= 1.6) " (2 CPUs shared by both instances, Redis and wrk)"
	}
	if (("c3w1", "cib", "rps") in lo) {
		printf "%-34s %-14s %-14s %-13s %s\n", "cluster (store.redis.wait_replicas)", "0 (no WAIT)", "1 (default)", "ratio 1/0", ""
		printf "%-34s %-14s %-14s %-13s %s\n", "cluster 1 one id, 64 conn: req/s", range(lo["c1c64w0", "cib", "rps"], hi["c1c64w0", "cib", "rps"]), range(lo["c1c64w1", "cib", "rps"], hi["c1c64w1", "cib", "rps"]), range(lo["c1c64", "wr"], hi["c1c64", "wr"]), ""
		printf "%-34s %-14s %-14s\n", "cluster 1 one id, 64 conn: p99 ms", range(lo["c1c64w0", "cib", "p99"], hi["c1c64w0", "cib", "p99"]), range(lo["c1c64w1", "cib", "p99"], hi["c1c64w1", "cib", "p99"])
		printf "%-34s %-14s %-14s\n", "cluster 1 one id, 1 conn: p50 ms", range(lo["c1c1w0", "cib", "p50"], hi["c1c1w0", "cib", "p50"]), range(lo["c1c1w1", "cib", "p50"], hi["c1c1w1", "cib", "p50"])
		printf "%-34s %-14s %-14s %-13s %s\n", "cluster 3 bc-authorize: req/s", range(lo["c3w0", "cib", "rps"], hi["c3w0", "cib", "rps"]), range(lo["c3w1", "cib", "rps"], hi["c3w1", "cib", "rps"]), range(lo["c3", "wr"], hi["c3", "wr"]), "(the cost of the durability WAIT; >= 5000 req/s: " verdict(lo["c3w1", "cib", "rps"] >= 5000, hi["c3w1", "cib", "rps"] >= 5000) ")"
		printf "%-34s %-14s %-14s\n", "cluster 3 bc-authorize: p50 ms", range(lo["c3w0", "cib", "p50"], hi["c3w0", "cib", "p50"]), range(lo["c3w1", "cib", "p50"], hi["c3w1", "cib", "p50"])
		printf "%-34s %-14s %-14s\n", "cluster 3 bc-authorize: p99 ms", range(lo["c3w0", "cib", "p99"], hi["c3w0", "cib", "p99"]), range(lo["c3w1", "cib", "p99"], hi["c3w1", "cib", "p99"])
	}
	if (bad != "") printf "\nANOMALIES:\n%s", bad
}
function verdict(all, some) { return all ? "met" : (some ? "met in some rounds" : "NOT met") }
' "$RESULTS"
[ -f "$TMP/mem.txt" ] && grep -E 'bytes per request|objects per request|marking per request' "$TMP/mem.txt" | sed 's/^ *memfill: /4 memory: /'
phase charts
draw_charts
phase
log ""
log "phases (s):$PHASE_LIST"
log "bench: done in ${SECONDS}s"
