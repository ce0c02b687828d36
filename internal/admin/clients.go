package admin

import (
	"net/url"
	"slices"

	"github.com/cibaproxy/cibaproxy/internal/config"
)

// ClientInfo is the operator's view of a registered client: its
// registration without secrets. The notification endpoint is reduced to its
// host, as its path or query may hold a secret of the client's.
type ClientInfo struct {
	ID          string   `json:"client_id"`
	Name        string   `json:"client_name"`
	Mode        string   `json:"backchannel_token_delivery_mode"`
	AuthMethods []string `json:"token_endpoint_auth_methods"`
	// NotificationHost is the host (and port) of
	// backchannel_client_notification_endpoint; empty for poll clients.
	NotificationHost string `json:"notification_host,omitempty"`
	// Scopes are the scopes the client may request; empty means any.
	Scopes []string `json:"scopes"`
}

// Clients returns the operator's view of the configured clients, in the
// order of the configuration.
func Clients(cs []config.Client) []ClientInfo {
	out := make([]ClientInfo, 0, len(cs))
	for _, c := range cs {
		ci := ClientInfo{
			ID:          c.ID,
			Name:        c.Name,
			Mode:        c.DeliveryMode,
			AuthMethods: slices.Clone(c.TokenEndpointAuthMethods),
			Scopes:      slices.Clone(c.Scopes),
		}
		if ci.Name == "" {
			ci.Name = c.ID
		}
		if ci.AuthMethods == nil {
			ci.AuthMethods = []string{}
		}
		if ci.Scopes == nil {
			ci.Scopes = []string{}
		}
		if u, err := url.Parse(c.NotificationEndpoint); err == nil {
			ci.NotificationHost = u.Host // never the user info, path or query
		}
		out = append(out, ci)
	}
	return out
}

// ClientsJSON is the JSON of `clients list --json`.
func ClientsJSON(list []ClientInfo) any {
	return struct {
		Clients []ClientInfo `json:"clients"`
	}{list}
}
