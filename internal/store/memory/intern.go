package memory

import (
	"strings"
	"sync"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
)

// maxInterned bounds each interner table: values past it are kept as they
// are, so a client inventing scope sets cannot grow the tables without end.
const maxInterned = 4096

// interner shares the values that many resident requests hold alike — the
// client id, mode, state and kind, the scope and ACR lists, the client
// certificate thumbprint — so that a million pending requests are not a
// million copies of "openid email".
// Each shared value is one heap object instead of one per request, which
// the garbage collector then marks once per cycle rather than once per
// request. Shared values are never modified: stored requests are immutable
// snapshots, and the copies GetRequest hands out are deep.
type interner struct {
	mu    sync.RWMutex
	strs  map[string]string
	lists map[string][]string
}

func newInterner() *interner {
	return &interner{strs: make(map[string]string), lists: make(map[string][]string)}
}

// str returns the shared copy of s.
func (in *interner) str(s string) string {
	if s == "" {
		return s
	}
	in.mu.RLock()
	v, ok := in.strs[s]
	in.mu.RUnlock()
	if ok {
		return v
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if v, ok := in.strs[s]; ok {
		return v
	}
	if len(in.strs) >= maxInterned {
		return s
	}
	in.strs[s] = s
	return s
}

// list returns the shared copy of l (nil stays nil).
func (in *interner) list(l []string) []string {
	if len(l) == 0 {
		return l
	}
	key := strings.Join(l, "\x00")
	in.mu.RLock()
	v, ok := in.lists[key]
	in.mu.RUnlock()
	if ok {
		return v
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if v, ok := in.lists[key]; ok {
		return v
	}
	if len(in.lists) >= maxInterned {
		return l
	}
	shared := make([]string, len(l))
	for i, s := range l {
		shared[i] = s
		if v, ok := in.strs[s]; ok {
			shared[i] = v
		}
	}
	// Full slice expression: an append to a shared list must copy.
	shared = shared[:len(shared):len(shared)]
	in.lists[key] = shared
	return shared
}

// request replaces r's common values by their shared copies. r must be a
// fresh copy that nobody else holds yet.
func (in *interner) request(r *ciba.AuthRequest) {
	r.ClientID = in.str(r.ClientID)
	r.Mode = ciba.DeliveryMode(in.str(string(r.Mode)))
	r.Status = ciba.Status(in.str(string(r.Status)))
	r.Kind = ciba.Kind(in.str(string(r.Kind)))
	// A client's requests all carry its one certificate's thumbprint.
	r.CertThumbprint = in.str(r.CertThumbprint)
	r.Scopes = in.list(r.Scopes)
	r.ACRValues = in.list(r.ACRValues)
}
