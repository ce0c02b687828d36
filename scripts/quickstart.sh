#!/usr/bin/env bash
# The quick start: a demo authentication device and notification endpoint on
# 127.0.0.1:9090, and cibaproxy on 127.0.0.1:8080 with examples/quickstart.yaml.
# Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-bin/cibaproxy}
export CIBAPROXY_ISSUER=${CIBAPROXY_ISSUER:-http://127.0.0.1:8080}
export CIBAPROXY_WEBHOOK_URL=${CIBAPROXY_WEBHOOK_URL:-http://127.0.0.1:9090/webhook}
export CIBAPROXY_DEMO_NOTIFY_URL=${CIBAPROXY_DEMO_NOTIFY_URL:-http://127.0.0.1:9090/notify}
export CIBAPROXY_DATA=${CIBAPROXY_DATA:-./data}

"$bin" demo-device --listen 127.0.0.1:9090 &
device=$!
trap 'kill "$device" 2>/dev/null || true' EXIT

cat <<EOT

cibaproxy quick start — issuer $CIBAPROXY_ISSUER, data in $CIBAPROXY_DATA
Users: alice / alice-password (user_code 1234), bob / bob-password.
Clients: demo-poll / demo-poll-secret (poll), demo-ping / demo-ping-secret (ping), demo-push / demo-push-secret (push).

Next, in another terminal:
  1. start a login for alice:
     curl -s -u demo-poll:demo-poll-secret -d scope=openid -d login_hint=alice \\
          -d 'binding_message=Code 1234' $CIBAPROXY_ISSUER/bc-authorize
  2. approve it: run the curl command the demo device prints below, or open the
     approval link it prints and sign in as alice (alice-password)
  3. fetch the tokens (the poll is held open until the approval lands):
     curl -s -u demo-poll:demo-poll-secret -d grant_type=urn:openid:params:grant-type:ciba \\
          -d auth_req_id=AUTH_REQ_ID $CIBAPROXY_ISSUER/token
See README.md for ping, push and signed requests.

EOT
"$bin" serve --config examples/quickstart.yaml
