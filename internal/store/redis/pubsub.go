package redisstore

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/redis/go-redis/v9"
)

// Subscribe returns a channel that receives a value after request id is
// changed by UpdateRequest or DeleteRequest through any Store on the same
// Redis and KeyPrefix, and a function to stop listening, which may be called
// more than once. The channel holds one value (changes coalesce) and is
// never closed. Registration is local, without a round trip: the Store's one
// pub/sub connection already receives every change. When that connection is
// lost and re-established, every subscriber is woken once, since changes
// made meanwhile were not heard. After Close the channel never fires.
func (s *Store) Subscribe(id string) (<-chan struct{}, func()) {
	if s.closed.Load() {
		return make(chan struct{}, 1), func() {}
	}
	return s.hub.Subscribe(id)
}

// subscribe opens a pub/sub connection on the change channel and waits
// until Redis confirmed the subscription.
func (s *Store) subscribe(ctx context.Context) (*redis.PubSub, error) {
	ps := s.c.Subscribe(ctx, s.channel)
	for {
		msg, err := ps.Receive(ctx)
		if err != nil {
			_ = ps.Close() // the receive error is the one to report
			return nil, err
		}
		if sub, ok := msg.(*redis.Subscription); ok && sub.Kind == "subscribe" {
			return ps, nil
		}
	}
}

// listen receives change messages until ctx is done. It pings a silent
// connection and replaces a broken one, with a growing delay while Redis is
// unreachable; each new connection wakes every subscriber.
func (s *Store) listen(ctx context.Context, ps *redis.PubSub) {
	defer close(s.listenDone)
	delay := minBackoff
	pinged := false
	for ctx.Err() == nil {
		msg, err := ps.ReceiveTimeout(ctx, idleCheck)
		if err == nil {
			pinged, delay = false, minBackoff
			switch m := msg.(type) {
			case *redis.Message:
				if s.hearHeartbeat(m.Payload) {
					continue
				}
				s.forget(m.Payload)
				s.hub.Wake(m.Payload)
			case *redis.Subscription:
				if m.Kind == "subscribe" {
					s.setCacheLive(true)
					s.hub.WakeAll()
				}
			}
			continue
		}
		if ctx.Err() != nil {
			return
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() && !pinged {
			pinged = true
			if ps.Ping(ctx) == nil {
				continue
			}
		}
		// The connection is broken, or silent after a ping: replace it.
		// Changes may be missed until it is: the poll cache forgets and
		// learns nothing meanwhile.
		s.setCacheLive(false)
		_ = ps.Close() // already broken; nothing to report
		if !sleep(ctx, delay) {
			return
		}
		delay = min(2*delay, maxBackoff)
		pinged = false
		s.psMu.Lock()
		if ctx.Err() != nil {
			s.psMu.Unlock()
			return
		}
		// The first message on the new connection is its subscription
		// confirmation, which wakes everyone (above).
		ps = s.c.Subscribe(ctx, s.channel)
		s.ps = ps
		s.psMu.Unlock()
	}
}

// sleep waits d or until ctx is done; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// setCacheLive turns the poll cache on or off, if there is one.
func (s *Store) setCacheLive(live bool) {
	if s.cache != nil {
		s.cache.setLive(live)
	}
}

// SubscribeFunc is Subscribe with a function called on each change instead
// of a channel (wakeup.Hub.SubscribeFunc: f must return at once). After
// Close it is never called.
func (s *Store) SubscribeFunc(id string, f func()) func() {
	if s.closed.Load() {
		return func() {}
	}
	return s.hub.SubscribeFunc(id, f)
}
