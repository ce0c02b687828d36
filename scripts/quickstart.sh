#!/usr/bin/env bash
# The quick start: cibaproxy on 127.0.0.1:$PORT (default 8080, metrics on
# $METRICS_PORT, default 9464) with examples/quickstart.yaml, and a demo
# authentication device and notification endpoint on 127.0.0.1:$DEMO_PORT
# (default 9090). Ctrl-C stops both.
#
#   make run                          # or: scripts/quickstart.sh bin/cibaproxy
#   make run PORT=8081 DEMO_PORT=9091 METRICS_PORT=9465   # when a port is taken
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-bin/cibaproxy}
port=${PORT:-8080}
demo_port=${DEMO_PORT:-9090}
metrics_port=${METRICS_PORT:-9464}
for p in "$port" "$demo_port" "$metrics_port"; do
	if ! [[ $p =~ ^[0-9]+$ ]] || ((p < 1 || p > 65535)); then
		echo "quickstart: PORT, DEMO_PORT and METRICS_PORT must be port numbers, got '$p'" >&2
		exit 2
	fi
done
export CIBAPROXY_LISTEN=${CIBAPROXY_LISTEN:-127.0.0.1:$port}
export CIBAPROXY_METRICS_LISTEN=${CIBAPROXY_METRICS_LISTEN:-127.0.0.1:$metrics_port}
export CIBAPROXY_ISSUER=${CIBAPROXY_ISSUER:-http://127.0.0.1:$port}
export CIBAPROXY_WEBHOOK_URL=${CIBAPROXY_WEBHOOK_URL:-http://127.0.0.1:$demo_port/webhook}
export CIBAPROXY_DEMO_NOTIFY_URL=${CIBAPROXY_DEMO_NOTIFY_URL:-http://127.0.0.1:$demo_port/notify}
export CIBAPROXY_DATA=${CIBAPROXY_DATA:-./data}

pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT

"$bin" demo-device --listen "127.0.0.1:$demo_port" &
pids+=($!)

cat <<EOT

cibaproxy quick start — issuer $CIBAPROXY_ISSUER, metrics on http://$CIBAPROXY_METRICS_LISTEN/metrics, data in $CIBAPROXY_DATA
Users: alice / alice-password (user_code 1234), bob / bob-password.
Clients: demo-poll / demo-poll-secret (poll), demo-ping / demo-ping-secret (ping), demo-push / demo-push-secret (push);
         demo-device (device flow, public: no secret).

Next, in another terminal:
  1. start a login for alice:
     curl -s -u demo-poll:demo-poll-secret -d scope=openid -d login_hint=alice \\
          -d 'binding_message=Code 1234' $CIBAPROXY_ISSUER/bc-authorize
  2. approve it: run the curl command the demo device prints below, or open the
     approval link it prints and sign in as alice (alice-password)
  3. fetch the tokens (the poll is held open until the approval lands):
     curl -s -u demo-poll:demo-poll-secret -d grant_type=urn:openid:params:grant-type:ciba \\
          -d auth_req_id=AUTH_REQ_ID $CIBAPROXY_ISSUER/token
alice can be asked ${CIBAPROXY_REQUESTS_PER_USER:-10} times per 10 minutes (CIBAPROXY_REQUESTS_PER_USER raises it).

Passkeys (docs/passkeys.md): WebAuthn needs a domain name, so start with
  CIBAPROXY_ISSUER=http://localhost:$port make run
then enrol alice's passkey with the one-time link this prints (open it in a browser):
  $bin users enroll alice --config examples/quickstart.yaml
and approve step 1's next request with "Approve with passkey" on the approval page.
See README.md for ping, push, the device flow and signed requests.

EOT
"$bin" serve --config examples/quickstart.yaml &
pids+=($!)

# Whichever stops first (a port in use, Ctrl-C) stops the other.
status=0
wait -n || status=$?
if ((status != 0 && status != 130)); then
	echo "quickstart: stopped (exit $status). If a port is in use: make run PORT=8081 DEMO_PORT=9091 METRICS_PORT=9465;" >&2
	echo "            if $CIBAPROXY_DATA is locked by another quick start: stop it, or CIBAPROXY_DATA=./data2 make run …" >&2
fi
exit "$status"
