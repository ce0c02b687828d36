# shellcheck shell=bash
# The Redis Cluster variant of scenarios 1 and 3 (issue #22), sourced by
# bench/run.sh, which provides ports_free, start, stop, wait_up, log, calc
# (from bench/lib.sh), load, $TMP, $ROOT, $PORT, $ROUNDS, $DUR, $DUR1, $AUTH, $POLL_PREFIX, $AUTHZ_BODY,
# poll, $CIB_ADDR, $AUTHZ_ADDR and $SINK_ADDR (the webhook
# sink, running).
#
#   scenario_cluster   a Redis Cluster of three masters with one replica each
#                      (redis-server --cluster-enabled yes, one temp dir per
#                      node, AOF with appendfsync everysec as the standalone
#                      Redis of the other scenarios; redis-cli --cluster
#                      create --cluster-replicas 1), then, per round and for
#                      store.redis.wait_replicas 1 (the default with a
#                      Cluster: each acknowledged write waits until a
#                      replica holds it) and 0, a fresh cibaproxy
#                      (bench/bench-cluster.yaml) measured under scenario 1
#                      (pending polls of one auth_req_id, 64 connections and
#                      1) and scenario 3 (POST /bc-authorize, webhook to the
#                      sink; the Cluster is emptied, FLUSHALL on each
#                      master, after each such run, with the webhook
#                      messages not yet delivered). Results go to $RESULTS as c1c64w1, c1c1w1,
#                      c3w1 (and w0); the summary prints the ratio
#                      wait_replicas 1 / 0, the cost of the durability WAIT.
#
# Knob: BENCH_CLUSTER (1 when redis-server and redis-cli are installed; 0
# skips). Ports: BENCH_PORT+30 .. +35 (nodes) and BENCH_PORT+10030 ..
# +10035 (their cluster bus). The nodes are stopped when the scenario ends
# (and by run.sh's trap on an early exit): only the pids started here.

CLUSTER=${BENCH_CLUSTER:-1}
{ command -v redis-server && command -v redis-cli; } >/dev/null || CLUSTER=0
CLUSTER_PORTS=$(seq $((PORT + 30)) $((PORT + 35)))

# cluster_free checks that the nodes' ports and bus ports are free.
cluster_free() {
	local p addrs=()
	for p in $CLUSTER_PORTS; do addrs+=(127.0.0.1:$p 127.0.0.1:$((p + 10000))); done
	ports_free BENCH_PORT "${addrs[@]}"
}

# cluster_up starts the six nodes, creates the Cluster and waits until
# every node says cluster_state:ok and every replica's link is up (at most
# 60 s). The node pids are in CLUSTER_PIDS.
cluster_up() {
	local p i ok info addrs=()
	CLUSTER_PIDS=()
	for p in $CLUSTER_PORTS; do
		mkdir -p "$TMP/cluster/$p"
		start redis-cluster-$p redis-server --bind 127.0.0.1 --port "$p" --dir "$TMP/cluster/$p" \
			--cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 5000 \
			--save '' --appendonly yes --appendfsync everysec --repl-diskless-sync-delay 0
		CLUSTER_PIDS+=("$STARTED")
		addrs+=("127.0.0.1:$p")
	done
	for p in $CLUSTER_PORTS; do
		for i in $(seq 300); do
			[ "$(redis-cli -p "$p" ping 2>/dev/null)" = PONG ] && break
			sleep 0.1
		done
		if [ "$(redis-cli -p "$p" ping 2>/dev/null)" != PONG ]; then
			echo "bench: the Redis Cluster node on port $p did not answer in 30 s; its log:" >&2
			tail -20 "$TMP/redis-cluster-$p.log" >&2
			return 1
		fi
	done
	redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >"$TMP/cluster-create.txt" 2>&1 || {
		cat "$TMP/cluster-create.txt" >&2
		return 1
	}
	for i in $(seq 600); do
		ok=1
		for p in $CLUSTER_PORTS; do
			[[ $(redis-cli -p "$p" cluster info 2>/dev/null) == *cluster_state:ok* ]] || ok=0
			info=$(redis-cli -p "$p" info replication 2>/dev/null | tr -d '\r') || true
			case $info in
			*role:slave*) [[ $info == *master_link_status:up* ]] || ok=0 ;;
			esac
		done
		[ "$ok" = 1 ] && return 0
		sleep 0.1
	done
	echo "bench: the Redis Cluster did not become ready in 60 s" >&2
	return 1
}

# cluster_flush ADDR...: FLUSHALL on each master (their replicas follow).
cluster_flush() {
	local a reply
	for a in "$@"; do
		exec 3<>"/dev/tcp/${a%:*}/${a#*:}"
		printf 'FLUSHALL\r\n' >&3
		read -r reply <&3
		exec 3>&-
		[ "${reply%$'\r'}" = +OK ] || { echo "bench: FLUSHALL on $a answered $reply" >&2; return 1; }
	done
}

# cluster_down stops the nodes.
cluster_down() {
	local p a
	for p in "${CLUSTER_PIDS[@]}"; do stop "$p"; done
	CLUSTER_PIDS=()
}

scenario_cluster() {
	[ "$CLUSTER" = 1 ] || return 0
	log ""
	log "== Redis Cluster (3 masters, 1 replica each, AOF everysec): scenarios 1 and 3 with store.redis.wait_replicas 1 (default) and 0, a fresh cibaproxy per run"
	log "   (the Cluster is emptied, FLUSHALL on each master, after each bc-authorize run)"
	cluster_free || return 1
	local t0=$SECONDS
	cluster_up || { cluster_down; return 1; }
	local masters= p role
	for p in $CLUSTER_PORTS; do
		role=$(redis-cli -p "$p" info replication | tr -d '\r' | sed -n 's/^role://p')
		[ "$role" = master ] && masters="$masters 127.0.0.1:$p"
	done
	masters=${masters# }
	log "   cluster ready in $((SECONDS - t0)) s; masters: $masters"
	set -- $masters
	local seeds=(BENCH_REDIS="$1" BENCH_REDIS2="$2" BENCH_REDIS3="$3")
	sed 's/^\(    wait_replicas:\) 1$/\1 0/' bench/bench-cluster.yaml >"$TMP/bench-cluster-w0.yaml"
	grep -q '^    wait_replicas: 0$' "$TMP/bench-cluster-w0.yaml" || { echo "bench: no wait_replicas line in bench/bench-cluster.yaml" >&2; return 1; }
	local r w cfg pid id before after
	for r in $(seq "$ROUNDS"); do
		for w in 1 0; do
			cfg=bench/bench-cluster.yaml
			[ "$w" = 0 ] && cfg=$TMP/bench-cluster-w0.yaml
			start cibaproxy-cluster-$r-w$w env BENCH_ADDR=$CIB_ADDR BENCH_WEBHOOK= "${seeds[@]}" "$TMP/cibaproxy" serve --config "$cfg"
			pid=$STARTED
			wait_up $CIB_ADDR
			"$TMP/seed" -url "http://$CIB_ADDR" -n 1 -c 1 -out "$TMP/cids-$r-$w.txt" >/dev/null
			id=$(cat "$TMP/cids-$r-$w.txt")
			# The first polls (the read that fills the instance's
			# knowledge of the request) are not measured.
			poll $CIB_ADDR "$id" >/dev/null
			poll $CIB_ADDR "$id" >/dev/null
			load c1c64w$w cib "$r" $CIB_ADDR 2 64 "$DUR" BENCH_AUTH="$AUTH" BENCH_PATH=/token BENCH_BODY="$POLL_PREFIX$id"
			load c1c1w$w cib "$r" $CIB_ADDR 1 1 "$DUR1" BENCH_AUTH="$AUTH" BENCH_PATH=/token BENCH_BODY="$POLL_PREFIX$id"
			stop "$pid"
			start cibaproxy-cluster3-$r-w$w env BENCH_ADDR=$AUTHZ_ADDR BENCH_WEBHOOK="http://$SINK_ADDR/hook" "${seeds[@]}" "$TMP/cibaproxy" serve --config "$cfg"
			pid=$STARTED
			wait_up $AUTHZ_ADDR
			before=$(curl -s "http://$SINK_ADDR/count")
			load c3w$w cib "$r" $AUTHZ_ADDR 2 64 "$DUR" BENCH_AUTH="$AUTH" BENCH_PATH=/bc-authorize BENCH_BODY="$AUTHZ_BODY"
			after=$(curl -s "http://$SINK_ADDR/count")
			printf '           webhooks delivered during the run: %s of %s created (the rest are flushed)\n' $((after - before)) \
				"$(awk -F'\t' -v s="c3w$w" -v r="$r" '$1==s && $3==r {print $9}' "$RESULTS")"
			stop "$pid"
			# No later instance may deliver this run's leftover webhook
			# messages (under a later measurement): the Cluster is
			# emptied. Until 2026-12-07 the run waited for the sink to
			# have them all instead, 11-14 s a run that measured nothing.
			cluster_flush $masters || return 1
		done
	done
	cluster_down
	cluster_tsv
}

# cluster_tsv writes $OUT/cluster.tsv from $RESULTS, one row per round and
# wait_replicas setting, for bench/draw's chart of what the durability WAIT
# costs (throughput by run, and p99 by run).
cluster_tsv() {
	local f=$OUT/cluster.tsv r w c64 c1 c3
	printf 'run\tpolls_64c_per_s\tpolls_1c_per_s\tbc_authorize_per_s\tpolls_64c_p99_ms\tbc_authorize_p99_ms\n' >"$f"
	for r in $(seq "$ROUNDS"); do
		for w in 1 0; do
			c64=$(awk -F'\t' -v s="c1c64w$w" -v r="$r" '$1==s && $3==r {print $4 "\t" $7}' "$RESULTS")
			c1=$(awk -F'\t' -v s="c1c1w$w" -v r="$r" '$1==s && $3==r {print $4}' "$RESULTS")
			c3=$(awk -F'\t' -v s="c3w$w" -v r="$r" '$1==s && $3==r {print $4 "\t" $7}' "$RESULTS")
			[ -n "$c64" ] && [ -n "$c1" ] && [ -n "$c3" ] || continue
			printf 'wait %s r%s\t%s\t%s\t%s\t%s\t%s\n' "$w" "$r" "${c64%%$'\t'*}" "$c1" "${c3%%$'\t'*}" \
				"$(calc "${c64#*$'\t'}/1000")" "$(calc "${c3#*$'\t'}/1000")" >>"$f"
		done
	done
}
