// Package notify delivers CIBA results to ping and push clients over HTTP
// (CIBA §10.2, §10.3). Retries and exactly-once bookkeeping are the ciba
// service's; this package makes one attempt per call.
package notify

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/cibaproxy/cibaproxy/internal/outbound"
)

// HTTP implements ciba.Notifier with an outbound client.
type HTTP struct {
	Client *outbound.Client
}

// Ping POSTs {"auth_req_id": id} with the client_notification_token as
// bearer (CIBA §10.2). Any 2xx answer counts as delivered (the spec asks
// clients for 204 and servers to accept 200).
func (h HTTP) Ping(ctx context.Context, endpoint, bearer, authReqID string) error {
	body, err := json.Marshal(map[string]string{"auth_req_id": authReqID})
	if err != nil {
		return fmt.Errorf("notify: ping body: %w", err)
	}
	return h.Client.PostJSON(ctx, endpoint, bearer, body)
}

// Push POSTs a push-mode body (token response or push error, each with
// auth_req_id) with the client_notification_token as bearer (CIBA §10.3).
func (h HTTP) Push(ctx context.Context, endpoint, bearer string, body []byte) error {
	return h.Client.PostJSON(ctx, endpoint, bearer, body)
}
