# shellcheck shell=bash
# The scale scenarios of the benchmark (issue #20 items 3-5), sourced by
# bench/run.sh, which provides (from bench/lib.sh) ports_free, start, stop,
# wait_up, log, calc, rss, and poll, $TMP, $ROOT, $GO, $PORT, $PROFILE, $PROFILES, $AUTH and $POLL_PREFIX. Each scenario
# writes its results, a header line and tab-separated rows, into
# bench/out/NAME.tsv (replaced each run), from which draw_charts draws
# bench/charts/*.svg, with whatever other TSV files the other scenarios left
# in bench/out.
#
#   scenario_sweep      poll throughput, p99 and the server's RSS by pending
#                       count: one embedded store file, seeded up to each
#                       count of BENCH_SWEEP in turn (bench/seed -config: the
#                       server's handler in-process, written straight to the
#                       file, as HTTP seeding of a million takes minutes), a
#                       cibaproxy started on it per count, round-robin polls
#                       over all of them (wrk -t2 -c64 -d$BENCH_SWEEP_DURATION)
#                       -> bench/out/sweep.tsv
#   scenario_heldpolls  N held long polls on one instance for each N of
#                       BENCH_HELD (bench/heldpolls): memory per held poll
#                       and approval -> held poll answered, p99
#                       -> bench/out/heldpolls.tsv
#   scenario_flows      complete flows per second, bc-authorize -> approval
#                       -> token with a signed ID token (bench/flows), on the
#                       embedded store (RS256, and ES256 with an EC key) and
#                       on Redis -> bench/out/flows.tsv
#   draw_charts         bench/draw: bench/out/*.tsv -> bench/charts/*.svg
#
# Knobs (environment): BENCH_SWEEP ("1 1000 10000 100000 1000000"; "" skips),
# BENCH_SWEEP_DURATION (4s), BENCH_HELD ("10000 50000 100000"; "" skips: a
# count above what the open-file limit allows is skipped, and the largest
# count it allows is measured instead), BENCH_HELD_SAMPLE (200 approvals
# timed), BENCH_FLOWS (1; 0 skips), BENCH_FLOWS_DURATION (4s; 6s until 2026-12-07), BENCH_CHARTS (1; 0 skips), and BENCH_QUICK=1
# for small sizes. Ports: BENCH_PORT+20 .. BENCH_PORT+24.

SCALE_QUICK=${BENCH_QUICK:-0}
if [ "$SCALE_QUICK" = 1 ]; then
	SWEEP=${BENCH_SWEEP-1 1000 5000}
	SWEEP_DUR=${BENCH_SWEEP_DURATION:-2s}
	HELD=${BENCH_HELD-2000}
	HELD_SAMPLE=${BENCH_HELD_SAMPLE:-100}
	FLOWS_DUR=${BENCH_FLOWS_DURATION:-2s}
else
	SWEEP=${BENCH_SWEEP-1 1000 10000 100000 1000000}
	SWEEP_DUR=${BENCH_SWEEP_DURATION:-4s}
	HELD=${BENCH_HELD-10000 50000 100000}
	HELD_SAMPLE=${BENCH_HELD_SAMPLE:-200}
	FLOWS_DUR=${BENCH_FLOWS_DURATION:-4s}
fi
FLOWS=${BENCH_FLOWS:-1}
CHARTS=${BENCH_CHARTS:-1}
OUT=$ROOT/bench/out
SCALE_ADDR=127.0.0.1:$((PORT + 20))    # cibaproxy under the scale scenarios
SCALE_METRICS=127.0.0.1:$((PORT + 21)) # its metrics listener
SCALE_HOOK=127.0.0.1:$((PORT + 22))    # the drivers' webhook receiver
SCALE_PPROF=127.0.0.1:$((PORT + 23))   # its pprof (the profiled build)
SCALE_REDIS=127.0.0.1:$((PORT + 24))   # redis-server for the Redis flows

# scale_build builds the drivers; scale_free checks that the scale
# scenarios' ports are free.
scale_build() {
	local t
	for t in heldpolls flows seed; do [ -x "$TMP/$t" ] || $GO build -trimpath -o "$TMP/$t" "./bench/$t"; done
}
scale_free() {
	ports_free BENCH_PORT $SCALE_ADDR $SCALE_METRICS $SCALE_HOOK $SCALE_PPROF $SCALE_REDIS || return 1
	mkdir -p "$OUT"
}

scenario_sweep() {
	[ -n "$SWEEP" ] || return 0
	log ""
	log "== sweep: pending polls round-robin over 1 .. $(echo $SWEEP | awk '{print $NF}') pending requests (wrk -t2 -c64 -d$SWEEP_DUR)"
	log "   one embedded store file, seeded up to each count in turn by bench/seed -config (the server's bc-authorize handler in-process,"
	log "   written in sorted transactions: no server runs meanwhile), then cibaproxy started on it (it loads every request, as after a restart)"
	scale_free || return 1
	rm -f "$OUT/sweep.tsv"
	mkdir -p "$TMP/data-sweep"
	local pid have=0 k line out t0 up rss0= rss first last
	: >"$TMP/sweep-ids.txt"
	printf 'pending\treq_per_s\tp50_ms\tp99_ms\trss_mib\n' >"$OUT/sweep.tsv"
	for k in $SWEEP; do
		if [ "$k" -gt "$have" ]; then
			BENCH_DATA="$TMP/data-sweep" "$TMP/seed" -config bench/bench.yaml -n $((k - have)) -c 4 -out "$TMP/sweep-ids.txt" -timeout 5m | sed 's/^/   /'
			have=$k
		fi
		t0=$(date +%s.%N)
		start cibaproxy-sweep-$k env BENCH_ADDR=$SCALE_ADDR BENCH_DATA="$TMP/data-sweep" BENCH_WEBHOOK= "$TMP/cibaproxy" serve --config bench/bench.yaml
		pid=$STARTED
		wait_up $SCALE_ADDR 120
		up=$(calc "$(date +%s.%N) - $t0")
		# Every seeded request must be there: an unknown id answers 400
		# as a pending one does, so wrk's counts would not tell.
		first=$(head -1 "$TMP/sweep-ids.txt") last=$(tail -1 "$TMP/sweep-ids.txt")
		for id in "$first" "$last"; do
			case $(poll $SCALE_ADDR "$id") in
			'{"error":"authorization_pending"}' | '{"error":"slow_down"'*) ;;
			*) log "sweep: $id is not pending after the restart: $(poll $SCALE_ADDR "$id")"; stop "$pid"; return 1 ;;
			esac
		done
		out=$TMP/wrk-sweep-$k.txt
		env BENCH_THREADS=2 BENCH_AUTH="$AUTH" BENCH_PATH=/token BENCH_IDS="$TMP/sweep-ids.txt" \
			wrk -t2 -c64 -d"$SWEEP_DUR" -s "$ROOT/bench/wrk.lua" "http://$SCALE_ADDR" >"$out" 2>&1 || { cat "$out" >&2; stop "$pid"; return 1; }
		rss=$(rss "$pid")
		stop "$pid"
		line=$(grep '^BENCH ' "$out") || { cat "$out" >&2; return 1; }
		# BENCH rps=… p50_us=… p90_us=… p99_us=… …
		set -- $(sed 's/[a-z0-9_]*=//g' <<<"${line#BENCH }")
		printf '%s\t%s\t%s\t%s\t%s\n' "$k" "$1" "$(calc "$2/1000")" "$(calc "$4/1000")" "$(calc "$rss/1024")" >>"$OUT/sweep.tsv"
		[ -n "$rss0" ] || rss0=$rss
		printf '  %8s pending  %9.0f req/s  p50 %6.3f ms  p99 %6.2f ms  RSS %7.1f MiB%s  (up in %.1f s; %s polls, %s not 400, %s socket errors)\n' \
			"$k" "$1" "$(calc "$2/1000")" "$(calc "$4/1000")" "$(calc "$rss/1024")" \
			"$([ "$k" -gt 1 ] && printf ', %.0f bytes per pending request over the first point' "$(calc "1024 * ($rss - $rss0) / ($k - 1)")")" \
			"$up" "$6" "$(($6 - $7))" "$8"
	done
}

scenario_heldpolls() {
	[ -n "$HELD" ] || return 0
	log ""
	log "== held polls: N held long polls (long_poll 60s) on one cibaproxy, from 127.0.0.2, 127.0.0.3, ... (bench/heldpolls); $HELD_SAMPLE approvals timed to their held poll's answer"
	scale_free || return 1
	rm -f "$OUT/heldpolls.tsv"
	# Each held poll is an open file in cibaproxy and in the driver: both
	# run with the soft limit raised to the hard one (the Go runtime does
	# that itself at start since Go 1.19; the limits line below shows it),
	# so the hard limit caps N.
	local hard n ns=() fit bin=$TMP/cibaproxy pidx
	hard=$(ulimit -Hn)
	[ "$hard" = unlimited ] && hard=1048576
	fit=$(((hard - 1000) / 1000 * 1000))
	for n in $HELD; do
		if [ "$n" -le "$fit" ]; then ns+=("$n"); else log "   N=$n skipped: the hard open-file limit is $hard (raising it needs CAP_SYS_RESOURCE)"; fi
	done
	if [ "${#ns[@]}" -lt "$(wc -w <<<"$HELD")" ] && [ "$fit" -gt 0 ] && ! printf '%s\n' "${ns[@]}" | grep -qx "$fit"; then
		log "   N=$fit measured instead: the most this limit allows"
		ns+=("$fit")
	fi
	[ "$PROFILE" = 1 ] && [ -x "$TMP/cibaproxy-pprof" ] && bin=$TMP/cibaproxy-pprof
	local last=${ns[${#ns[@]}-1]}
	for n in "${ns[@]}"; do
		mkdir -p "$TMP/data-held-$n"
		start cibaproxy-held-$n env CIBAPROXY_BENCH_PPROF=$SCALE_PPROF BENCH_ADDR=$SCALE_ADDR BENCH_METRICS=$SCALE_METRICS BENCH_DATA="$TMP/data-held-$n" \
			BENCH_WEBHOOK="http://$SCALE_HOOK/hook" "$bin" serve --config bench/bench-hold.yaml
		pidx=$STARTED
		wait_up $SCALE_ADDR
		local prof=()
		if [ "$bin" != "$TMP/cibaproxy" ] && [ "$n" = "$last" ]; then prof=(-pprof "http://$SCALE_PPROF" -pprof-out "$TMP/held-$n"); fi
		"$TMP/heldpolls" -url "http://$SCALE_ADDR" -metrics "http://$SCALE_METRICS/metrics" -listen $SCALE_HOOK \
			-n "$n" -per-source 10000 -sample "$HELD_SAMPLE" -c 4 -tsv "$OUT/heldpolls.tsv" "${prof[@]}" 2>&1 | tee "$TMP/held-$n.txt" | sed 's/^/   /'
		log "   open-file limit of cibaproxy: $(awk '/open files/ {print $4 " (soft), " $5 " (hard)"}' "/proc/$pidx/limits" 2>/dev/null)"
		stop "$pidx"
	done
	if [ -s "$TMP/held-$last.heap.pprof" ]; then
		mkdir -p "$PROFILES"
		{
			echo "# cibaproxy heap and goroutine profiles: $last held long polls on one instance (bench/heldpolls), after a forced GC"
			echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown); made by make bench (bench/run.sh, bench/scale.sh)"
			grep '^HELD ' "$TMP/held-$last.txt" | sed 's/^/# /'
			echo
			echo "## go tool pprof -top -sample_index=inuse_space -nodecount=30"
			$GO tool pprof -top -sample_index=inuse_space -nodecount=30 "$bin" "$TMP/held-$last.heap.pprof" 2>/dev/null
			echo
			echo "## goroutines (pprof goroutine?debug=1, the three largest groups)"
			awk '/^goroutine profile/ {print; next} /^[0-9]+ @/ {g++} g >= 1 && g <= 3' "$TMP/held-$last.goroutine.txt"
		} >"$PROFILES/heldpolls-memory.txt"
		log "   $PROFILES/heldpolls-memory.txt"
	fi
}

scenario_flows() {
	[ "$FLOWS" = 1 ] || return 0
	log ""
	log "== complete flows: bc-authorize -> webhook -> approval -> token with a signed ID token (bench/flows, 32 at a time, $FLOWS_DUR)"
	scale_free || return 1
	rm -f "$OUT/flows.tsv"
	local pid rpid
	mkdir -p "$TMP/data-flows"
	start cibaproxy-flows env BENCH_ADDR=$SCALE_ADDR BENCH_DATA="$TMP/data-flows" BENCH_WEBHOOK="http://$SCALE_HOOK/hook" "$TMP/cibaproxy" serve --config bench/bench.yaml
	pid=$STARTED
	wait_up $SCALE_ADDR
	"$TMP/flows" -url "http://$SCALE_ADDR" -listen $SCALE_HOOK -c 32 -d "$FLOWS_DUR" -label embedded -tsv "$OUT/flows.tsv" | sed 's/^/   /'
	stop "$pid"
	if command -v openssl >/dev/null; then
		# The same with an EC P-256 key (ES256) instead of the generated
		# RSA 2048 one: what the signing algorithm costs a flow.
		openssl ecparam -name prime256v1 -genkey -noout -out "$TMP/es256.pem" 2>/dev/null
		mkdir -p "$TMP/data-flows-es256"
		start cibaproxy-flows-es256 env BENCH_ADDR=$SCALE_ADDR BENCH_DATA="$TMP/data-flows-es256" BENCH_SIGNING_KEY="$TMP/es256.pem" BENCH_WEBHOOK="http://$SCALE_HOOK/hook" "$TMP/cibaproxy" serve --config bench/bench.yaml
		pid=$STARTED
		wait_up $SCALE_ADDR
		"$TMP/flows" -url "http://$SCALE_ADDR" -listen $SCALE_HOOK -c 32 -d "$FLOWS_DUR" -label embedded-es256 -tsv "$OUT/flows.tsv" | sed 's/^/   /'
		stop "$pid"
	fi
	if command -v redis-server >/dev/null && [ "${BENCH_REDIS:-1}" = 1 ]; then
		start redis-flows redis-server --bind 127.0.0.1 --port "${SCALE_REDIS#*:}" --save '' --appendonly no
		rpid=$STARTED
		local i
		for i in $(seq 50); do redis-cli -p "${SCALE_REDIS#*:}" ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
		start cibaproxy-flows-redis env BENCH_ADDR=$SCALE_ADDR BENCH_REDIS=$SCALE_REDIS BENCH_WEBHOOK="http://$SCALE_HOOK/hook" "$TMP/cibaproxy" serve --config bench/bench-redis.yaml
		pid=$STARTED
		wait_up $SCALE_ADDR
		"$TMP/flows" -url "http://$SCALE_ADDR" -listen $SCALE_HOOK -c 32 -d "$FLOWS_DUR" -label redis -tsv "$OUT/flows.tsv" | sed 's/^/   /'
		stop "$pid"
		stop "$rpid"
	fi
	if [ "$PROFILE" = 1 ] && [ -x "$TMP/cibaproxy-pprof" ]; then
		# Where a flow's CPU goes, and the signing algorithm's share of it.
		mkdir -p "$TMP/data-flows-prof" "$PROFILES"
		start cibaproxy-flows-prof env CIBAPROXY_BENCH_PPROF=$SCALE_PPROF BENCH_ADDR=$SCALE_ADDR BENCH_DATA="$TMP/data-flows-prof" BENCH_WEBHOOK="http://$SCALE_HOOK/hook" "$TMP/cibaproxy-pprof" serve --config bench/bench.yaml
		pid=$STARTED
		wait_up $SCALE_ADDR
		curl -s -o "$TMP/flows.pprof" "http://$SCALE_PPROF/debug/pprof/profile?seconds=$PROF_S" &
		local cpid=$!
		sleep 0.2
		"$TMP/flows" -url "http://$SCALE_ADDR" -listen $SCALE_HOOK -c 32 -d $((PROF_S + 1))s -label embedded-profiled >"$TMP/flows-prof.txt" 2>&1 || true
		wait $cpid
		stop "$pid"
		local top sign
		top=$($GO tool pprof -top -cum -nodecount=200 "$TMP/cibaproxy-pprof" "$TMP/flows.pprof" 2>/dev/null)
		sign=$(awk '/internal\/keys\.\(\*Manager\)\.Sign$/ {print $5; exit}' <<<"$top")
		{
			echo "# cibaproxy CPU profile: complete flows (bench/flows -c 32 -d $((PROF_S + 1))s: bc-authorize, webhook, approval, token), embedded store, generated RS256 key"
			echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown); made by make bench (bench/run.sh, bench/scale.sh)"
			echo "# $(grep '^FLOWS ' "$TMP/flows-prof.txt")"
			echo "# signing (keys.(*Manager).Sign, cumulative): ${sign:-?} of cibaproxy's CPU samples"
			echo
			echo "## go tool pprof -top -nodecount=30"
			$GO tool pprof -top -nodecount=30 "$TMP/cibaproxy-pprof" "$TMP/flows.pprof" 2>/dev/null
			echo
			echo "## go tool pprof -top -cum -nodecount=60"
			head -n 66 <<<"$top"
		} >"$PROFILES/flows.txt"
		log "   profiled run: $(grep '^FLOWS ' "$TMP/flows-prof.txt" | cut -d' ' -f2-); signing ${sign:-?} of cibaproxy's CPU -> $PROFILES/flows.txt"
	fi
}

draw_charts() {
	[ "$CHARTS" = 1 ] || return 0
	log ""
	# A BENCH_QUICK run's figures are no results: its charts go beside
	# its TSV files, not over the recorded bench/charts.
	local charts=$ROOT/bench/charts
	[ "$SCALE_QUICK" = 1 ] && charts=$OUT/charts
	log "== charts: bench/out/*.tsv -> ${charts#"$ROOT"/}/*.svg (bench/draw, gonum/plot)"
	(cd "$ROOT/bench/draw" && $GO run . -in "$OUT" -out "$charts") | sed 's/^/   /'
}
