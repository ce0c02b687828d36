#!/usr/bin/env bash
# Peers scenario of the cibaproxy benchmark (issue #20 item 1), called by
# bench/run.sh (BENCH_PEERS=1, the default) or on its own:
#
#   bench/peers.sh                 # builds what it needs into a temp dir
#
# The CIBA poll path of three servers, with the same wrk script
# (bench/wrk.lua), in interleaved rounds (ref, cibaproxy, oidc-provider,
# ref, …), with 64 connections (wrk -t2 -c64 -d$BENCH_DURATION) and then
# with 1 (wrk -t1 -c1 -d$BENCH_DURATION_C1):
#   ref  bench/ref, the bare net/http handler of scenarios 1-2
#   cib  cibaproxy on bench/bench.yaml (embedded store, long polling off)
#   op   node-oidc-provider (test/idp/server.mjs, its CIBA feature on, as
#        the relay tests run it; in-memory store)
# each polled for one pending auth_req_id of its own by the same client
# (bench-poll, client_secret_basic). Per run: throughput, p50, p99, the
# server's CPU per poll (utime+stime from /proc/PID/stat, before and after)
# and its RSS after the run. Prints the ratios against the targets
# (cibaproxy >= 5x oidc-provider's throughput, <= 1/5 of its CPU per poll)
# and writes one TSV line per run to $BENCH_OUT/raw/peers.tsv and, for
# the charts (bench/draw), the 64-connection means per server to
# $BENCH_OUT/peers.tsv.
#
# Knobs: BENCH_BIN (a directory holding cibaproxy, ref and seed already
# built; else they are built here), BENCH_ROUNDS (3), BENCH_DURATION (10s),
# BENCH_DURATION_C1 (5s), BENCH_WARMUP (5s, one unmeasured run per server first;
# node-oidc-provider gets 1-connection passes before, until it answered
# BENCH_PEERS_WARM_MIN, 5000), BENCH_QUICK=1
# (defaults of 1 round of 5s and 3s, 2s warm-up, 1000 polls), BENCH_PEERS_PORT (18120: uses it .. +2),
# BENCH_OUT (bench/out). Everything listens on 127.0.0.1; every load is
# bounded by wrk -d; only the processes started here are stopped.
set -euo pipefail

cd "$(dirname "$0")/.."
BENCH_WHO=peers
# log, calc, ports_free, make_tmp, start, stop, wait_up, cpu, rss.
source bench/lib.sh
ROOT=$PWD
GO=${GO:-go}
ROUNDS=${BENCH_ROUNDS:-3}
DUR=${BENCH_DURATION:-10s}
DUR1=${BENCH_DURATION_C1:-5s}
WARM=${BENCH_WARMUP:-5s}
if [ "${BENCH_QUICK:-0}" = 1 ]; then
	ROUNDS=${BENCH_ROUNDS:-1}
	DUR=${BENCH_DURATION:-5s}
	DUR1=${BENCH_DURATION_C1:-3s}
	WARM=${BENCH_WARMUP:-2s}
	: "${BENCH_PEERS_WARM_MIN:=1000}"
fi
PORT=${BENCH_PEERS_PORT:-18120}
OUT=${BENCH_OUT:-$ROOT/bench/out}
CIB_ADDR=127.0.0.1:$PORT
REF_ADDR=127.0.0.1:$((PORT + 1))
OP_ADDR=127.0.0.1:$((PORT + 2))

command -v wrk >/dev/null || { echo "peers: wrk is not installed" >&2; exit 1; }
command -v node >/dev/null || { echo "peers: node is not installed" >&2; exit 1; }
[ -d test/idp/node_modules ] || { echo "peers: test/idp/node_modules is missing: cd test/idp && npm ci" >&2; exit 1; }
ports_free BENCH_PEERS_PORT $CIB_ADDR $REF_ADDR $OP_ADDR
make_tmp peers 0
TICK=$(getconf CLK_TCK)

BIN=${BENCH_BIN:-}
if [ -z "$BIN" ]; then
	BIN=$TMP
	$GO build -trimpath -o "$BIN/cibaproxy" ./cmd/cibaproxy
	for t in ref seed; do $GO build -trimpath -o "$BIN/$t" "./bench/$t"; done
fi

AUTH=$(printf '%s' bench-poll:bench-poll-secret | base64 -w0)
POLL_PREFIX='grant_type=urn%3Aopenid%3Aparams%3Agrant-type%3Aciba&auth_req_id='

mkdir -p "$TMP/data"
start cibaproxy env BENCH_ADDR=$CIB_ADDR BENCH_DATA="$TMP/data" BENCH_WEBHOOK= "$BIN/cibaproxy" serve --config bench/bench.yaml
CIB_PID=$STARTED
wait_up $CIB_ADDR 30
"$BIN/seed" -url "http://$CIB_ADDR" -n 1 -c 1 -out "$TMP/ids-cib.txt" >/dev/null
start ref "$BIN/ref" -listen $REF_ADDR -ids "$TMP/ids-cib.txt"
REF_PID=$STARTED
wait_up $REF_ADDR 30

# node-oidc-provider: the same client, CIBA poll mode, no data_dir (its
# store stays in memory: no file rewritten per change).
cat >"$TMP/op.json" <<EOF
{"port": ${OP_ADDR#*:}, "issuer": "http://$OP_ADDR",
 "clients": [{"client_id": "bench-poll", "client_secret": "bench-poll-secret",
              "grant_types": ["urn:openid:params:grant-type:ciba"], "backchannel_token_delivery_mode": "poll"}],
 "accounts": [{"account_id": "alice", "email": "alice@example.com"}]}
EOF
start op node test/idp/server.mjs "$TMP/op.json"
OP_PID=$STARTED
wait_up $OP_ADDR 30
OP_ID=$(curl -s -u bench-poll:bench-poll-secret -d scope=openid -d login_hint=alice "http://$OP_ADDR/backchannel" |
	sed -n 's/.*"auth_req_id":"\([^"]*\)".*/\1/p')
[ -n "$OP_ID" ] || { echo "peers: oidc-provider gave no auth_req_id" >&2; exit 1; }
CIB_ID=$(cat "$TMP/ids-cib.txt")
poll() { curl -s -u bench-poll:bench-poll-secret -d grant_type=urn:openid:params:grant-type:ciba -d "auth_req_id=$2" "http://$1/token"; }
echo "   first poll, reference:     $(poll $REF_ADDR "$CIB_ID")"
echo "   first poll, cibaproxy:     $(poll $CIB_ADDR "$CIB_ID")"
echo "   first poll, oidc-provider: $(poll $OP_ADDR "$OP_ID") ($(node -p 'require("./test/idp/node_modules/oidc-provider/package.json").version' 2>/dev/null || echo '?'), node $(node --version))"

# Unmeasured passes first, so that each server is measured in its steady
# state: one 64-connection pass each; node-oidc-provider first gets
# 1-connection passes until it has answered WARM_MIN polls (at most 8), as
# its JIT compiler needs some thousands of polls before the poll path is
# compiled (a cold node spends several times the CPU per poll), and with 64
# connections a cold node answers too few of them.
WARM_MIN=${BENCH_PEERS_WARM_MIN:-5000}
# warmpass NAME ADDR ID THREADS CONNS: one pass; prints its request count.
warmpass() {
	env BENCH_THREADS=$4 BENCH_AUTH="$AUTH" BENCH_PATH=/token BENCH_BODY="$POLL_PREFIX$3" \
		wrk -t"$4" -c"$5" -d"$WARM" -s "$ROOT/bench/wrk.lua" "http://$2" >"$TMP/warm-$1.txt" 2>&1 || { cat "$TMP/warm-$1.txt" >&2; exit 1; }
	sed -n 's/^BENCH .*requests=\([0-9]*\).*/\1/p' "$TMP/warm-$1.txt"
}
n=0 pass=0
while [ "$pass" -lt 8 ] && [ "$n" -lt "$WARM_MIN" ]; do
	n=$((n + $(warmpass op $OP_ADDR "$OP_ID" 1 1)))
	pass=$((pass + 1))
done
printf '   warm-up op   %s 1-connection passes, %s polls (not counted)\n' "$pass" "$n"
for srv in ref:$REF_ADDR:$CIB_ID cib:$CIB_ADDR:$CIB_ID op:$OP_ADDR:$OP_ID; do
	IFS=: read -r name host port id <<<"$srv"
	n=$(warmpass "$name" "$host:$port" "$id" 2 64)
	printf '   warm-up %-4s %s polls, %s (not counted)\n' "$name" "$n" "$(grep '^BENCH ' "$TMP/warm-$name.txt" | cut -d' ' -f2-4)"
done

mkdir -p "$OUT/raw"
TSV=$OUT/raw/peers.tsv # every run; $OUT/peers.tsv is the chart's summary
printf 'scenario\tserver\tround\tconns\trps\tp50_us\tp99_us\trequests\tnon400\terrors\tcpu_s\tcpu_us_per_poll\trss_kib\n' >"$TSV"
for r in $(seq "$ROUNDS"); do
	for conns in 64 1; do
	for srv in ref cib op; do
		case $srv in
		ref) addr=$REF_ADDR pid=$REF_PID id=$CIB_ID ;;
		cib) addr=$CIB_ADDR pid=$CIB_PID id=$CIB_ID ;;
		op) addr=$OP_ADDR pid=$OP_PID id=$OP_ID ;;
		esac
		out=$TMP/wrk-$srv-$r-$conns.txt
		t=2 d=$DUR
		[ "$conns" = 1 ] && t=1 d=$DUR1
		c0=$(cpu $pid)
		env BENCH_THREADS=$t BENCH_AUTH="$AUTH" BENCH_PATH=/token BENCH_BODY="$POLL_PREFIX$id" \
			wrk -t$t -c$conns -d"$d" -s "$ROOT/bench/wrk.lua" "http://$addr" >"$out" 2>&1 || { cat "$out" >&2; exit 1; }
		c1=$(cpu $pid)
		line=$(grep '^BENCH ' "$out") || { cat "$out" >&2; exit 1; }
		# BENCH rps=… p50_us=… p90_us=… p99_us=… max_us=… requests=… non2xx=… errors=…
		set -- $(sed 's/[a-z0-9_]*=//g' <<<"${line#BENCH }")
		cpus=$(calc "($c1 - $c0) / $TICK")
		perpoll=$(calc "1e6 * ($c1 - $c0) / $TICK / ($6 > 0 ? $6 : 1)")
		printf 'peers\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' $srv "$r" "$conns" "$1" "$2" "$4" "$6" "$7" "$8" "$cpus" "$perpoll" "$(rss $pid)" >>"$TSV"
		printf '  round %s  peers c%-2s %-4s %9.0f req/s  p50 %6.3f ms  p99 %7.2f ms  CPU %6.1f us/poll  RSS %6.1f MiB  (%s requests, %s non-2xx, %s socket errors)\n' \
			"$r" "$conns" $srv "$1" "$(calc "$2/1000")" "$(calc "$4/1000")" "$perpoll" "$(calc "$(rss $pid)/1024")" "$6" "$7" "$8"
	done
	done
done

echo "   (results: $TSV, and $OUT/peers.tsv for the charts)"
echo "   summary (min-max over $ROUNDS rounds; ratios per round, cibaproxy against the oidc-provider run of the same round)"
awk -F'\t' '
function fmt(x) { return sprintf(x >= 100 ? "%.0f" : (x >= 10 ? "%.1f" : "%.3f"), x) }
function range(k) { return fmt(lo[k]) "-" fmt(hi[k]) }
function upd(k, v) { if (!(k in lo) || v < lo[k]) lo[k] = v; if (!(k in hi) || v > hi[k]) hi[k] = v }
function row(name, what, c) { printf "   %-30s %-16s %-16s %-16s\n", name, range("ref" SUBSEP c SUBSEP what), range("cib" SUBSEP c SUBSEP what), range("op" SUBSEP c SUBSEP what) }
NR == 1 { next }
{
	k = $2 SUBSEP $4
	upd(k SUBSEP "rps", $5); upd(k SUBSEP "p50", $6 / 1000); upd(k SUBSEP "p99", $7 / 1000)
	upd(k SUBSEP "cpu", $12); upd(k SUBSEP "rss", $13 / 1024)
	cnt[k]++; sum[k, "rps"] += $5; sum[k, "p50"] += $6 / 1000; sum[k, "p99"] += $7 / 1000; sum[k, "cpu"] += $12; sum[k, "rss"] += $13 / 1024
	v[$2, $3, $4, "rps"] = $5; v[$2, $3, $4, "cpu"] = $12; rounds[$3] = 1
	if ($10 != 0) bad = bad "  " $2 " c" $4 " round " $3 ": " $10 " socket errors\n"
	if ($9 != $8) bad = bad "  " $2 " c" $4 " round " $3 ": " ($8 - $9) " answers were not 4xx/5xx\n"
}
END {
	for (r in rounds) for (c = 1; c <= 64; c += 63) if (v["op", r, c, "rps"] > 0 && v["cib", r, c, "cpu"] > 0) {
		upd("tput" c, v["cib", r, c, "rps"] / v["op", r, c, "rps"]); upd("cpur" c, v["op", r, c, "cpu"] / v["cib", r, c, "cpu"])
		upd("reft" c, v["ref", r, c, "rps"] / v["op", r, c, "rps"])
	}
	printf "   %-30s %-16s %-16s %-16s\n", "", "reference", "cibaproxy", "oidc-provider"
	row("64 conn: req/s", "rps", 64); row("64 conn: p50 ms", "p50", 64); row("64 conn: p99 ms", "p99", 64)
	row("64 conn: server CPU us/poll", "cpu", 64); row("64 conn: server RSS MiB", "rss", 64)
	row("1 conn: req/s", "rps", 1); row("1 conn: p50 ms", "p50", 1); row("1 conn: p99 ms", "p99", 1); row("1 conn: server CPU us/poll", "cpu", 1)
	printf "   throughput, 64 conn, cibaproxy / oidc-provider: %s (target >= 5: %s); reference / oidc-provider: %s\n", range("tput64"), verdict(lo["tput64"] >= 5, hi["tput64"] >= 5), range("reft64")
	printf "   CPU per poll, 64 conn, oidc-provider / cibaproxy: %s (target >= 5, i.e. cibaproxy <= 1/5: %s)\n", range("cpur64"), verdict(lo["cpur64"] >= 5, hi["cpur64"] >= 5)
	printf "   CPU per poll, 1 conn, oidc-provider / cibaproxy: %s; throughput, 1 conn, cibaproxy / oidc-provider: %s\n", range("cpur1"), range("tput1")
	if (bad != "") printf "   ANOMALIES:\n%s", bad
	# The chart (bench/draw): one row per server, means over the rounds
	# of the 64-connection runs.
	chart = out "/peers.tsv"
	printf "server\tpolls_per_s\tp50_ms\tp99_ms\tcpu_per_poll_us\trss_mib\n" > chart
	split("ref cib op", srv, " "); split("reference cibaproxy oidc-provider", label, " ")
	for (i = 1; i <= 3; i++) {
		k = srv[i] SUBSEP 64
		printf "%s\t%.1f\t%.3f\t%.3f\t%.1f\t%.1f\n", label[i], sum[k, "rps"] / cnt[k], sum[k, "p50"] / cnt[k], sum[k, "p99"] / cnt[k], sum[k, "cpu"] / cnt[k], sum[k, "rss"] / cnt[k] > chart
	}
}
function verdict(all, some) { return all ? "met" : (some ? "met in some rounds" : "NOT met") }
' out="$OUT" "$TSV"
