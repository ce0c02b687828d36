package redisstore

import (
	"context"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
)

// readAndPace polls request id through the poll script, never the cache,
// as its own client over its own certificate would (the query is made from
// the stored request), and returns the request the script read and
// whether the poll was early. An unknown id is an error wrapping
// ciba.ErrNotFound.
func (s *Store) readAndPace(ctx context.Context, id string, rule ciba.PaceRule) (*ciba.AuthRequest, bool, error) {
	r, err := s.GetRequest(ctx, id)
	if err != nil {
		return nil, false, err
	}
	q := ciba.PollQuery{ClientID: r.ClientID, Kind: r.Kind, Cert: r.CertThumbprint, Rule: rule}
	res, got, err := s.pollStore(ctx, id, &q)
	if err != nil {
		return nil, false, err
	}
	if got == nil {
		return nil, false, errRequestNotFound
	}
	return got, res.Outcome == ciba.PollSlow, nil
}

// cachedPoll is what this instance knows of request id (pollCache.CachedPoll).
func (s *Store) cachedPoll(id string) (ciba.PollView, bool) {
	if s.cache == nil {
		return ciba.PollView{}, false
	}
	return s.cache.CachedPoll(id)
}

// paceCached paces request id by this instance's knowledge
// (pollCache.PaceCached).
func (s *Store) paceCached(id string, rule ciba.PaceRule) (slow, answered bool) {
	if s.cache == nil {
		return false, false
	}
	slow, answered, _ = s.cache.PaceCached(id, rule)
	return slow, answered
}
