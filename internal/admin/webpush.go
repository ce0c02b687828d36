package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"text/tabwriter"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/webpush"
)

// The Web Push subscriptions of the local users, for `cibaproxy users
// webpush list|remove`. On the admin socket:
//
//	GET  /v1/users/{name}/webpush               {"subscriptions": [WebPushInfo…]}
//	POST /v1/users/{name}/webpush/{id}/remove   {"removed": WebPushInfo}
//	POST /v1/users/{name}/webpush/remove-all    {"count": N}
//
// with not_found for an unknown user or subscription. No answer holds an
// endpoint's path or a key: the path is the browser's capability.

// WebPushInfo is one Web Push subscription as operators see it: its short
// id, the push service's host, and when the browser subscribed.
type WebPushInfo struct {
	// ID is the short id (webpush.Subscription.ID): 12 hex digits of a
	// hash of the endpoint.
	ID string `json:"id"`
	// Host is the push service's host, without the endpoint's path.
	Host string `json:"push_service"`
	// Created is when the browser subscribed.
	Created time.Time `json:"created"`
}

func webPushInfo(s *webpush.Subscription) WebPushInfo {
	return WebPushInfo{ID: s.ID(), Host: s.Host(), Created: s.Created}
}

func (l *LocalUsers) subscriptions() *webpush.Subscriptions {
	return &webpush.Subscriptions{Records: l.Store}
}

// ListWebPush implements [Users].
func (l *LocalUsers) ListWebPush(ctx context.Context, username string) ([]WebPushInfo, error) {
	u, err := l.user(username)
	if err != nil {
		return nil, err
	}
	list, err := l.subscriptions().List(ctx, subjectOf(u))
	if err != nil {
		return nil, err
	}
	out := make([]WebPushInfo, 0, len(list))
	for i := range list {
		out = append(out, webPushInfo(&list[i]))
	}
	return out, nil
}

// RemoveWebPush implements [Users].
func (l *LocalUsers) RemoveWebPush(ctx context.Context, username, id string) (WebPushInfo, error) {
	u, err := l.user(username)
	if err != nil {
		return WebPushInfo{}, err
	}
	removed, err := l.subscriptions().RemoveID(ctx, subjectOf(u), id)
	if errors.Is(err, webpush.ErrNotFound) {
		return WebPushInfo{}, fmt.Errorf("%w: %w", ErrNoUser, err)
	}
	if err != nil {
		return WebPushInfo{}, err
	}
	return webPushInfo(&removed), nil
}

// RemoveAllWebPush implements [Users].
func (l *LocalUsers) RemoveAllWebPush(ctx context.Context, username string) (int, error) {
	u, err := l.user(username)
	if err != nil {
		return 0, err
	}
	return l.subscriptions().RemoveAll(ctx, subjectOf(u))
}

// webPushRoutes adds the Web Push routes of UsersHandler to mux.
func webPushRoutes(mux *http.ServeMux, users Users, log *slog.Logger) {
	mux.HandleFunc("GET /v1/users/{name}/webpush", func(w http.ResponseWriter, r *http.Request) {
		list, err := users.ListWebPush(r.Context(), r.PathValue("name"))
		answer(w, webPushBody{Subscriptions: list}, err)
	})
	mux.HandleFunc("POST /v1/users/{name}/webpush/{id}/remove", func(w http.ResponseWriter, r *http.Request) {
		s, err := users.RemoveWebPush(r.Context(), r.PathValue("name"), r.PathValue("id"))
		if err == nil {
			log.LogAttrs(r.Context(), slog.LevelInfo, "Web Push subscription removed by an operator",
				slog.String("username", r.PathValue("name")), slog.String("subscription_id", s.ID), slog.String("push_service", s.Host))
		}
		answer(w, webPushRemovedBody{Removed: s}, err)
	})
	mux.HandleFunc("POST /v1/users/{name}/webpush/remove-all", func(w http.ResponseWriter, r *http.Request) {
		n, err := users.RemoveAllWebPush(r.Context(), r.PathValue("name"))
		if err == nil {
			log.LogAttrs(r.Context(), slog.LevelInfo, "every Web Push subscription of a user removed by an operator",
				slog.String("username", r.PathValue("name")), slog.Int("count", n))
		}
		answer(w, countBody{Count: n}, err)
	})
}

type webPushBody struct {
	Subscriptions []WebPushInfo `json:"subscriptions"`
}

type webPushRemovedBody struct {
	Removed WebPushInfo `json:"removed"`
}

type countBody struct {
	Count int `json:"count"`
}

// WebPushJSON is the JSON of `users webpush list --json`.
func WebPushJSON(list []WebPushInfo) any { return webPushBody{Subscriptions: list} }

// ListWebPush implements [Users] through the socket.
func (c *Client) ListWebPush(ctx context.Context, username string) ([]WebPushInfo, error) {
	var b webPushBody
	if err := c.do(ctx, http.MethodGet, "/v1/users/"+url.PathEscape(username)+"/webpush", &b); err != nil {
		return nil, err
	}
	return b.Subscriptions, nil
}

// RemoveWebPush implements [Users] through the socket.
func (c *Client) RemoveWebPush(ctx context.Context, username, id string) (WebPushInfo, error) {
	var b webPushRemovedBody
	err := c.do(ctx, http.MethodPost, "/v1/users/"+url.PathEscape(username)+"/webpush/"+url.PathEscape(id)+"/remove", &b)
	return b.Removed, err
}

// RemoveAllWebPush implements [Users] through the socket.
func (c *Client) RemoveAllWebPush(ctx context.Context, username string) (int, error) {
	var b countBody
	err := c.do(ctx, http.MethodPost, "/v1/users/"+url.PathEscape(username)+"/webpush/remove-all", &b)
	return b.Count, err
}

// WriteWebPush prints a user's subscriptions as a table: short id, push
// service host, when the browser subscribed.
func WriteWebPush(w io.Writer, list []WebPushInfo) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tPUSH SERVICE\tSUBSCRIBED")
	for _, s := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", clean(s.ID), clean(s.Host), at(s.Created))
	}
	return writeErr(tw.Flush())
}
