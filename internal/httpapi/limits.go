package httpapi

import (
	"context"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/limit"
)

// Limits are the abuse limits of the endpoints and the consumption-device
// policy of bc-authorize. Each limiter may be nil (no limit); the nil
// *Limits limits nothing. The per-user limit ("push bombing") is the ciba
// service's, as only it knows the user. The limit.Keyed ones may be shared
// by all instances (in Redis); a decision one of them fails to make allows
// the request, with a warning (limit.FailOpen normally takes the error
// first).
type Limits struct {
	// BCAuthorize limits each client's backchannel authentication
	// requests; over it the client gets HTTP 429 with Retry-After and
	// {"error":"slow_down"} (CIBA has no code for it).
	BCAuthorize limit.Keyed
	// DeviceAuthorization limits, per public client and client address,
	// the device authorizations (RFC 8628 §3.1) of public clients, whose
	// client_id is no secret: it is one address's share of the client's
	// BCAuthorize bucket, taken first (see admitDeviceAuthorization). Over
	// it the address gets HTTP 429 with Retry-After and
	// {"error":"slow_down"}; the client's bucket is not touched.
	DeviceAuthorization limit.Keyed
	// Token limits each client's token requests; over it the client gets
	// slow_down (CIBA Core §11), with Retry-After. It is in memory, per
	// instance: the poll path pays no round trip for it.
	Token *limit.Limiter
	// Introspect limits each client's token introspection requests (RFC
	// 7662), once it is authenticated; over it the client gets HTTP 429
	// with Retry-After and {"error":"slow_down"}, as at bc-authorize.
	// Revocation is counted in Token.
	Introspect limit.Keyed
	// ApprovalFailures counts the failed (4xx) answers of the approval
	// pages per client address; once it is used up the address gets HTTP
	// 429 there until it refills.
	ApprovalFailures limit.Keyed
	// CallbackFailures is the same for POST /ciba/callback.
	CallbackFailures limit.Keyed
	// PasswordFailuresPerUser counts the wrong passwords typed for one
	// username on the approval and device pages together, from every
	// address: once it is used up the password is not checked for that
	// username (HTTP 429, even for the right password) until it refills,
	// whichever page is used. PasswordFailuresPerUserIP counts them per
	// username and client address, and is reserved first: one address
	// that uses up its share takes nothing more from the user's bucket,
	// so it cannot keep the user locked out alone (see
	// Approval.checkPassword).
	PasswordFailuresPerUser, PasswordFailuresPerUserIP limit.Keyed

	// ClientNetworks are, by client_id, the networks a client's
	// backchannel authentication requests may come from (the seed's
	// consumption-device validation); a client not in the map may send
	// from anywhere.
	ClientNetworks map[string][]netip.Prefix

	// TrustedProxies are the networks whose ClientIPHeader is believed.
	TrustedProxies []netip.Prefix
	// ClientIPHeader carries the client address from a trusted proxy:
	// X-Forwarded-For (the rightmost address not of a trusted proxy is
	// the client's) or a one-address header like X-Real-Ip.
	ClientIPHeader string
}

// ClientIP is the address of the party that sent r: the TCP peer, or, when
// the peer is a trusted proxy, the address it forwards in ClientIPHeader.
// An IPv4-mapped address is returned as IPv4. The zero Addr when unknown.
func (l *Limits) ClientIP(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	peer := ap.Addr().Unmap().WithZone("")
	if l == nil || l.ClientIPHeader == "" || !contains(l.TrustedProxies, peer) {
		return peer
	}
	values := r.Header.Values(l.ClientIPHeader)
	if len(values) == 0 {
		return peer
	}
	if !strings.EqualFold(l.ClientIPHeader, "X-Forwarded-For") {
		if a, err := netip.ParseAddr(strings.TrimSpace(values[len(values)-1])); err == nil {
			return a.Unmap().WithZone("")
		}
		return peer
	}
	// Each proxy appends the address it received from; only the ones our
	// trusted proxies appended can be believed, so walk from the right.
	hops := strings.Split(strings.Join(values, ","), ",")
	client := peer
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break
		}
		client = a.Unmap().WithZone("")
		if !contains(l.TrustedProxies, client) {
			break
		}
	}
	return client
}

func contains(nets []netip.Prefix, a netip.Addr) bool {
	for _, n := range nets {
		if n.Contains(a) {
			return true
		}
	}
	return false
}

// AddrKey is the per-address limit key of the party that sent r (see
// ClientIP): its IPv4 address, or its IPv6 /64. The failed client
// authentication limit (clientauth.Guard) keys by it, as the approval-page
// and callback limits do.
func (l *Limits) AddrKey(r *http.Request) string { return addrKey(l.ClientIP(r)) }

// addrKey is the limiter key of a client address: the address for IPv4,
// its /64 for IPv6 (one subscriber usually holds a whole /64).
func addrKey(a netip.Addr) string {
	switch {
	case !a.IsValid():
		return "unknown"
	case a.Is6():
		p, _ := a.Prefix(64)
		return p.String()
	default:
		return a.String()
	}
}

// retryAfter sets Retry-After to d rounded up to whole seconds, at least 1
// (a refusal that says "retry now" would only invite the same refusal).
func retryAfter(w http.ResponseWriter, d time.Duration) {
	w.Header().Set("Retry-After", strconv.FormatInt(max(int64((d+time.Second-1)/time.Second), 1), 10))
}

// admitBCAuthorize applies the consumption-device policy and the
// per-client rate to a backchannel authentication request of the
// authenticated client c. It answers and returns false when the request
// must not go on.
func (s *Server) admitBCAuthorize(w http.ResponseWriter, r *http.Request, c *ciba.Client) bool {
	l := s.Limits
	if l == nil {
		return true
	}
	if nets, ok := l.ClientNetworks[c.ID]; ok {
		if a := l.ClientIP(r); !contains(nets, a) {
			s.Logger.WarnContext(r.Context(), "bc-authorize from a network the client may not use",
				"client_id", c.ID, "address", a.String())
			writeError(w, ciba.Errorf(ciba.CodeUnauthorizedClient, "client %q may not send backchannel authentication requests from this network (allowed_networks)", c.ID))
			return false
		}
	}
	return s.admitClient(w, r, l.BCAuthorize, "bc_authorize_per_client", c.ID, "backchannel authentication requests")
}

// admitDeviceAuthorization applies the per-client rate to a device
// authorization of client c, and, when c is public (it authenticated with
// its client_id alone, which anyone may know), the per-address share of
// it first: a token is reserved in the bucket of c and the client address
// (an IPv6 /64), then one taken from c's. An address whose share is used
// up is refused without touching c's bucket, so it cannot use up the
// client's budget alone; a request c's bucket refuses gives the address's
// token back. It answers and returns false when the request must not go
// on.
func (s *Server) admitDeviceAuthorization(w http.ResponseWriter, r *http.Request, c *ciba.Client, public bool) bool {
	l := s.Limits
	if l == nil {
		return true
	}
	const what = "requests that start an authentication"
	if !public || l.DeviceAuthorization == nil {
		return s.admitClient(w, r, l.BCAuthorize, "bc_authorize_per_client", c.ID, what)
	}
	// A client id has no NUL: the pair cannot be confused with another.
	ok, wait, settle, err := limit.Reserve(r.Context(), l.DeviceAuthorization, c.ID+"\x00"+l.AddrKey(r), s.Now)
	if err != nil {
		s.limitUnavailable(r.Context(), "device_authorization_per_ip", err)
	}
	if !ok {
		retryAfter(w, wait)
		writeError(w, &ciba.Error{Code: ciba.CodeSlowDown, Status: http.StatusTooManyRequests,
			Description: "too many " + what + " for client " + c.ID + " from this address; retry after the time in Retry-After"})
		return false
	}
	admitted := s.admitClient(w, r, l.BCAuthorize, "bc_authorize_per_client", c.ID, what)
	settle(admitted)
	return admitted
}

// admitIntrospect applies the per-client rate to an introspection request
// of the authenticated client c.
func (s *Server) admitIntrospect(w http.ResponseWriter, r *http.Request, c *ciba.Client) bool {
	if s.Limits == nil {
		return true
	}
	return s.admitClient(w, r, s.Limits.Introspect, "introspect_per_client", c.ID, "introspection requests")
}

// admitClient takes a token of the per-client limit lim (named name in
// the logs; nil is no limit) for client id. Over it the client is answered
// HTTP 429 with Retry-After and slow_down, the description saying too
// many what, and false is returned. A decision lim cannot make allows the
// request.
func (s *Server) admitClient(w http.ResponseWriter, r *http.Request, lim limit.Keyed, name, id, what string) bool {
	if lim == nil {
		return true
	}
	ok, wait, err := lim.Allow(r.Context(), id, s.Now())
	if err != nil {
		s.limitUnavailable(r.Context(), name, err)
		return true
	}
	if !ok {
		retryAfter(w, wait)
		writeError(w, &ciba.Error{Code: ciba.CodeSlowDown, Status: http.StatusTooManyRequests,
			Description: "too many " + what + " from client " + id + "; retry after the time in Retry-After"})
		return false
	}
	return true
}

// admitToken applies the per-client rate to a token request of the
// authenticated client c.
func (s *Server) admitToken(w http.ResponseWriter, c *ciba.Client) bool {
	if s.Limits == nil {
		return true
	}
	// In memory: no I/O, nothing to cancel, never an error.
	if ok, wait, _ := s.Limits.Token.Allow(context.Background(), c.ID, s.Now()); !ok {
		retryAfter(w, wait)
		writeError(w, ciba.Errorf(ciba.CodeSlowDown, "too many token requests from client %q; slow down", c.ID))
		return false
	}
	return true
}

// statusWriter records the status of an answer, for handlers not under
// observe.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// limitFailures puts the per-address failure limits in front of the
// approval pages, the device verification page and the callback: an
// address whose failures (4xx answers: unknown link, wrong password or
// user code, bad callback token …) used up its bucket is answered 429 with
// Retry-After until the bucket refills. A 429 is no failure: it is the
// refusal of another limit, which checked nothing.
// Successes cost nothing, so users sharing an address (carrier NAT) and the
// authentication-device service, which makes every callback, are not held
// back by their own traffic. A request's token is reserved before it is
// handled and given back after a success (limit.Reserve), so N requests in
// flight at once need N tokens: a burst cannot pass the limit together.
func (s *Server) limitFailures(next http.Handler) http.Handler {
	if s.Limits == nil || s.Limits.ApprovalFailures == nil && s.Limits.CallbackFailures == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var lim limit.Keyed
		approval := strings.HasPrefix(r.URL.Path, PathApprove) || r.URL.Path == PathDevice
		switch {
		case approval:
			lim = s.Limits.ApprovalFailures
		case r.URL.Path == PathCallback:
			lim = s.Limits.CallbackFailures
		}
		if lim == nil {
			next.ServeHTTP(w, r)
			return
		}
		key := addrKey(s.Limits.ClientIP(r))
		// Reserved before the work (a password check costs a bcrypt), so
		// that requests in flight at once are all counted; given back
		// below unless the answer is a failure.
		ok, wait, settle, err := limit.Reserve(r.Context(), lim, key, s.Now)
		if err != nil {
			s.limitUnavailable(r.Context(), "failures_per_ip", err)
		}
		if !ok {
			retryAfter(w, wait)
			if approval && s.Approval != nil {
				s.Approval.render(w, http.StatusTooManyRequests, page{Title: "Too many attempts",
					Message: "There were too many failed attempts from your network. Wait a few minutes, then try again."})
				return
			}
			writeError(w, &ciba.Error{Code: ciba.CodeSlowDown, Status: http.StatusTooManyRequests,
				Description: "too many failed requests from this address; retry after the time in Retry-After"})
			return
		}
		status := 0
		if x, ok := w.(*exchange); ok {
			next.ServeHTTP(w, r)
			status = x.status
		} else {
			sw := &statusWriter{ResponseWriter: w}
			next.ServeHTTP(sw, r)
			status = sw.status
		}
		settle(status >= 400 && status < 500 && status != http.StatusTooManyRequests)
	})
}

// limitUnavailable logs a limit decision that could not be made: the
// request was allowed (fail open).
func (s *Server) limitUnavailable(ctx context.Context, which string, err error) {
	s.Logger.WarnContext(ctx, "abuse limit unavailable; request allowed", "limit", which, "error", err)
}
