package testutil

import (
	"net/http"
	"time"
)

// scheme is https when the server serves TLS (o.TLS is set), else http.
func (o Options) scheme() string {
	if o.TLS != nil {
		return "https"
	}
	return "http"
}

// healthClient is the client that polls /healthz: HTTP, or one trusting
// the server's certificate when it serves TLS.
func (o Options) healthClient() *http.Client {
	if o.TLS == nil {
		return HTTP
	}
	return &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{Proxy: nil, TLSClientConfig: o.TLS.Clone(), DisableKeepAlives: true},
	}
}
