package redisstore

import (
	"context"
	"sync"

	"github.com/redis/go-redis/v9"
)

// Polls are the one path that reaches Redis at the rate clients choose, and
// a poll is one script call: sent alone, each costs a write and a read
// system call in cibaproxy and in Redis for a few microseconds of work. The
// poll batcher sends the polls that arrive while others are on the way as
// one pipeline ("auto-pipelining"): under load a round trip carries tens of
// polls, while a lone poll still goes out at once, as no timer waits for
// company. Each poll stays its own atomic script call; only the transport
// is shared.

const (
	// pollPipelines is how many pipelines may be on the way at once, so
	// that one slow round trip does not hold up every poll.
	pollPipelines = 4
	// maxPollBatch bounds the polls of one pipeline.
	maxPollBatch = 128
	// pollQueue is the depth of the queue of polls waiting for a pipeline.
	pollQueue = 1024
)

// pollArgs is the number of arguments of the poll script.
const pollArgs = 9

// pollCall is one poll script call waiting for its pipeline.
type pollCall struct {
	key  string
	args [pollArgs]any
	// res and err are the script's answer, set before done is closed.
	res  []any
	err  error
	done chan struct{}
}

// pollCalls recycles pollCalls (and their channels) between polls.
type pollCalls struct{ sync.Pool }

func (p *pollCalls) get() *pollCall {
	if c, ok := p.Get().(*pollCall); ok {
		return c
	}
	return &pollCall{done: make(chan struct{}, 1)}
}

// put returns c once its answer was read.
func (p *pollCalls) put(c *pollCall) {
	c.res, c.err = nil, nil
	p.Put(c)
}

// pollBatcher queues poll script calls and sends them in pipelines.
type pollBatcher struct {
	c     redis.UniversalClient
	calls chan *pollCall
	pool  pollCalls
	// quit is closed when the store closes; the pipelines then stop.
	quit <-chan struct{}
}

// newPollBatcher starts the pipelines of c; they run until ctx is done.
func newPollBatcher(ctx context.Context, c redis.UniversalClient) *pollBatcher {
	b := &pollBatcher{c: c, calls: make(chan *pollCall, pollQueue), quit: ctx.Done()}
	for range pollPipelines {
		go b.run(ctx)
	}
	return b
}

// do runs the poll script on key with args and returns its answer, like
// pollScript.Run(ctx, c, []string{key}, args...).Slice(). A caller whose
// ctx ends first gets ctx's error; its call is still made.
func (b *pollBatcher) do(ctx context.Context, key string, args [pollArgs]any) ([]any, error) {
	c := b.pool.get()
	c.key, c.args = key, args
	select {
	case b.calls <- c:
	case <-ctx.Done():
		b.pool.put(c)
		return nil, ctx.Err()
	case <-b.quit:
		b.pool.put(c)
		return nil, errClosed
	}
	select {
	case <-c.done:
		res, err := c.res, c.err
		b.pool.put(c)
		return res, err
	case <-ctx.Done():
		// The pipeline still answers into c, which is then dropped.
		return nil, ctx.Err()
	case <-b.quit:
		return nil, errClosed
	}
}

// run sends pipelines: it waits for a first call, takes every call queued
// behind it (up to maxPollBatch), sends them together and hands out the
// answers.
func (b *pollBatcher) run(ctx context.Context) {
	batch := make([]*pollCall, 0, maxPollBatch)
	cmds := make([]*redis.Cmd, maxPollBatch)
	keys := make([][]string, maxPollBatch)
	for i := range keys {
		keys[i] = make([]string, 1)
	}
	for {
		batch = batch[:0]
		select {
		case <-ctx.Done():
			return
		case c := <-b.calls:
			batch = append(batch, c)
		}
	more:
		for len(batch) < maxPollBatch {
			select {
			case c := <-b.calls:
				batch = append(batch, c)
			default:
				break more
			}
		}
		// The context of the pipeline is the store's: a caller that gave
		// up must not cancel the others' polls. The client's read and
		// write timeouts bound the round trip.
		_, _ = b.c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, c := range batch {
				keys[i][0] = c.key
				cmds[i] = pollScript.EvalSha(ctx, p, keys[i], c.args[:]...)
			}
			return nil
		})
		for i, c := range batch {
			c.res, c.err = cmds[i].Slice()
			if c.err != nil && redis.HasErrorPrefix(c.err, "NOSCRIPT") {
				// Redis lost its script cache (a restart): Run loads
				// the script again.
				c.res, c.err = pollScript.Run(ctx, b.c, keys[i], c.args[:]...).Slice()
			}
			c.done <- struct{}{}
			cmds[i] = nil
		}
	}
}
