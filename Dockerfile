# cibaproxy container image: a static binary on an empty base, running as a
# non-root user. Build: docker build -t cibaproxy:VERSION --build-arg VERSION=VERSION .
#
# The image holds no configuration: mount it (e.g. /etc/cibaproxy/config.yaml)
# and pass secrets as environment variables the config refers to (${VAR}).
# With the embedded store, mount a writable volume at the store.path's
# directory (default /var/lib/cibaproxy); with Redis the root file system can
# stay read-only.

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/cibaproxy ./cmd/cibaproxy \
 && mkdir -p /out/var/lib/cibaproxy

FROM scratch
# CA roots for https to the upstream provider, Redis TLS and notification endpoints.
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/cibaproxy /cibaproxy
COPY --from=build --chown=65532:65532 /out/var/lib/cibaproxy /var/lib/cibaproxy
USER 65532:65532
EXPOSE 8080
VOLUME ["/var/lib/cibaproxy"]
ENTRYPOINT ["/cibaproxy"]
CMD ["serve", "--config", "/etc/cibaproxy/config.yaml"]
