package redisstore

import (
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/store/redis/redistest"
)

// BenchmarkPollScript measures one poll through the poll script (the
// current state, never the cache): one round trip to a local Redis.
func BenchmarkPollScript(b *testing.B) {
	srv := redistest.Start(b)
	st, err := Open(b.Context(), Config{Addrs: []string{srv.Addr()}, KeyPrefix: newPrefix()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close() })
	r := cibaRequest()
	if err := st.CreateRequest(b.Context(), r); err != nil {
		b.Fatal(err)
	}
	q := ciba.PollQuery{ClientID: r.ClientID, Kind: r.Kind, Cert: r.CertThumbprint, Current: true,
		Rule: ciba.PaceRule{Now: time.Now(), Step: 5 * time.Second}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := st.Poll(b.Context(), r.ID, q); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	info, err := st.c.Info(b.Context(), "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	if m := regexp.MustCompile(`cmdstat_evalsha:calls=\d+,usec=\d+,usec_per_call=([\d.]+)`).FindStringSubmatch(info); m != nil {
		us, _ := strconv.ParseFloat(m[1], 64)
		b.ReportMetric(us, "redis-us/poll")
	}
}
