// Command sink is the benchmark's webhook receiver: it answers every POST
// with 204 after reading the body, and counts them. GET /count returns the
// number of POSTs received so far; any other GET answers 200.
//
//	go run ./bench/sink -listen 127.0.0.1:18091
package main

import (
	"flag"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:18091", "address to listen on")
	flag.Parse()
	var n atomic.Int64
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			if r.URL.Path == "/count" {
				_, _ = io.WriteString(w, strconv.FormatInt(n.Load(), 10)+"\n")
			}
			return
		}
		_, _ = io.Copy(io.Discard, r.Body)
		n.Add(1)
		w.WriteHeader(http.StatusNoContent)
	})
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("sink: listening on %s", ln.Addr())
	log.Fatal(http.Serve(ln, h))
}
