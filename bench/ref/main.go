// Command ref is the benchmark's reference: the bare net/http handler the
// performance issue compares cibaproxy's poll path with. It does what a poll
// needs and nothing else: parse the form POST with HTTP Basic client
// credentials, look the auth_req_id up in a map, and answer 400 with the
// 33-byte {"error":"authorization_pending"} body and the same headers
// cibaproxy sends (Content-Type, Content-Length, Cache-Control, Pragma).
//
//	go run ./bench/ref -listen 127.0.0.1:18090 -ids ids.txt
//
// ids.txt holds one auth_req_id per line (what bench/seed writes).
package main

import (
	"bufio"
	"crypto/subtle"
	"flag"
	"io"
	"log"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
)

var (
	pending = []byte(`{"error":"authorization_pending"}`)
	unknown = []byte(`{"error":"invalid_grant"}`)
	denied  = []byte(`{"error":"invalid_client"}`)
	badReq  = []byte(`{"error":"invalid_request"}`)
)

func main() {
	listen := flag.String("listen", "127.0.0.1:18090", "address to listen on")
	idsFile := flag.String("ids", "", "file of auth_req_ids, one per line")
	clientID := flag.String("client", "bench-poll", "client_id")
	secret := flag.String("secret", "bench-poll-secret", "client secret")
	flag.Parse()

	ids := map[string]struct{}{}
	if *idsFile != "" {
		f, err := os.Open(*idsFile)
		if err != nil {
			log.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if id := sc.Text(); id != "" {
				ids[id] = struct{}{}
			}
		}
		if err := sc.Err(); err != nil {
			log.Fatal(err)
		}
		_ = f.Close()
	}
	wantID, wantSecret := []byte(*clientID), []byte(*secret)

	answer := func(w http.ResponseWriter, status int, body []byte) {
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Content-Length", strconv.Itoa(len(body)))
		h.Set("Cache-Control", "no-store")
		h.Set("Pragma", "no-cache")
		w.WriteHeader(status)
		_, _ = w.Write(body)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/x-www-form-urlencoded" {
			answer(w, http.StatusBadRequest, badReq)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
		if err != nil {
			answer(w, http.StatusBadRequest, badReq)
			return
		}
		form, err := url.ParseQuery(string(body))
		if err != nil || form.Get("grant_type") != "urn:openid:params:grant-type:ciba" {
			answer(w, http.StatusBadRequest, badReq)
			return
		}
		id, sec, ok := r.BasicAuth()
		if !ok || subtle.ConstantTimeCompare([]byte(id), wantID)&subtle.ConstantTimeCompare([]byte(sec), wantSecret) != 1 {
			answer(w, http.StatusUnauthorized, denied)
			return
		}
		if _, ok := ids[form.Get("auth_req_id")]; !ok {
			answer(w, http.StatusBadRequest, unknown)
			return
		}
		answer(w, http.StatusBadRequest, pending)
	})
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("ref: %d auth_req_ids, listening on %s", len(ids), ln.Addr())
	log.Fatal(http.Serve(ln, mux))
}
