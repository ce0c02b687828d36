package admin

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
)

// Output of the commands: tables for people, JSON for scripts. The table
// output shortens auth_req_ids to ShortLen characters unless full is set,
// which is enough to tell requests apart and to pass to show and cancel
// (which take a unique prefix), and keeps whole ids out of screen shares
// and pasted terminal output. The JSON output always has whole ids, since
// scripts pass them on and a prefix unique today may not be tomorrow.
//
// Text that clients chose (binding message, login hint, errors) is printed
// with control characters replaced, so it cannot drive the terminal.

// WriteJSON writes v as indented JSON.
func WriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("write JSON: %w", err)
	}
	return nil
}

// ListJSON is the JSON of `requests list --json`, the shape the admin socket
// answers too.
func ListJSON(list []Request) any { return listBody{Requests: list} }

// WriteList writes requests as a table, one per line.
func WriteList(w io.Writer, list []Request, full bool) error {
	if len(list) == 0 {
		_, err := fmt.Fprintln(w, "no requests")
		return writeErr(err)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "AUTH_REQ_ID\tCLIENT\tUSER\tMODE\tSTATE\tAGE\tEXPIRES_IN")
	for _, r := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			id(r.ID, full), clean(r.ClientID), clean(user(r)), clean(mode(&r)), r.State,
			since(r.Now, r.CreatedAt), until(r.Now, r.ExpiresAt))
	}
	return writeErr(tw.Flush())
}

// mode is the request's delivery mode, or "device" for a device
// authorization request: its client polls, but it is no CIBA request.
func mode(r *Request) string {
	if r.Kind == string(ciba.KindDevice) {
		return "device"
	}
	return r.Mode
}

// WriteRequest writes one request, a field per line.
func WriteRequest(w io.Writer, r *Request, full bool) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	line := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
	line("auth_req_id", id(r.ID, full))
	line("client", clean(r.ClientID))
	line("mode", clean(mode(r)))
	line("subject", clean(r.Subject))
	if r.LoginHint != "" {
		line("login_hint", clean(r.LoginHint))
	}
	line("scopes", clean(strings.Join(r.Scopes, " ")))
	if len(r.ACRValues) > 0 {
		line("acr_values", clean(strings.Join(r.ACRValues, " ")))
	}
	if r.BindingMessage != "" {
		line("binding_message", strconv.Quote(r.BindingMessage))
	}
	if len(r.AuthorizationDetails) > 0 {
		line("authorization_details", clean(string(r.AuthorizationDetails)))
		line("details_digest", r.DetailsDigest)
	}
	if r.ApprovedDetails != "" {
		line("approved_details", r.ApprovedDetails)
	}
	if r.Actor != "" {
		line("acting_client", clean(r.Actor))
	}
	line("user_code", yesNo(r.UserCode))
	state := string(r.State)
	if r.Status != r.State {
		state += " (stored: " + string(r.Status) + ")"
	}
	line("state", state)
	line("created", at(r.CreatedAt)+" ("+since(r.Now, r.CreatedAt)+" ago)")
	expires := at(r.ExpiresAt)
	if d := r.ExpiresAt.Sub(r.Now); d > 0 {
		expires += " (in " + round(d) + ")"
	} else {
		expires += " (" + round(-d) + " ago)"
	}
	line("expires", expires)
	line("interval", round(time.Duration(r.IntervalSeconds*float64(time.Second))))
	if !r.DecidedAt.IsZero() {
		line("decided", at(r.DecidedAt))
	}
	if !r.AuthTime.IsZero() {
		line("auth_time", at(r.AuthTime))
	}
	if r.DenyReason != "" {
		line("deny_reason", clean(r.DenyReason))
	}
	line("tokens_held", yesNo(r.TokensHeld))
	line("channel_notice", deliveryText(r.ChannelNotice))
	for _, t := range r.ChannelNotice.Tries {
		s := at(t.At) + " " + clean(t.Channel) + " " + clean(t.Outcome)
		if t.Error != "" {
			s += ": " + clean(t.Error)
		}
		line("  channel_try", s)
	}
	line("client_notice", deliveryText(r.ClientNotice))
	if rl := r.Relay; rl != nil {
		s := fmt.Sprintf("%d polls, %d failures, interval %s", rl.Polls, rl.Failures,
			round(time.Duration(rl.IntervalSeconds*float64(time.Second))))
		if rl.Ping {
			s += ", upstream pings"
		}
		if !rl.NextPoll.IsZero() {
			s += ", next poll " + at(rl.NextPoll)
		}
		if rl.LastError != "" {
			s += ", last error: " + clean(rl.LastError)
		}
		line("relay", s)
	}
	if a := r.Approval; a != nil {
		if a.Claims == nil {
			line("approval_record", "present, but it does not decode")
		} else {
			c := a.Claims
			line("approved_with", "passkey "+clean(c.CredentialID)+" (user verified: "+yesNo(c.UserVerified)+")")
			line("approved_by", clean(c.Subject)+" at "+at(time.Unix(c.ApprovedAt, 0)))
			if c.DetailsDigest != "" {
				line("approved_details", "sha256 "+clean(c.DetailsDigest))
			}
			line("approval_record", "signed by key "+clean(a.KeyID)+" ("+clean(a.Alg)+"), "+strconv.Itoa(len(a.JWS))+" bytes; --json shows it")
		}
	}
	return writeErr(tw.Flush())
}

// deliveryText describes the state of an outbound message.
func deliveryText(d Delivery) string {
	var s string
	switch {
	case !d.Due:
		return "none"
	case d.Done:
		s = "done"
	default:
		s = "pending"
	}
	if d.Attempts == 1 {
		s += ", 1 attempt"
	} else {
		s += fmt.Sprintf(", %d attempts", d.Attempts)
	}
	if !d.Done && !d.NextAttempt.IsZero() {
		s += ", next " + at(d.NextAttempt)
	}
	if d.LastError != "" {
		s += ", last error: " + clean(d.LastError)
	}
	return s
}

// WriteClients writes clients as a table, one per line.
func WriteClients(w io.Writer, list []ClientInfo) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CLIENT_ID\tNAME\tMODE\tAUTH_METHODS\tNOTIFICATION_HOST\tSCOPES")
	for _, c := range list {
		scopes := "(any)"
		if len(c.Scopes) > 0 {
			scopes = strings.Join(c.Scopes, " ")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", clean(c.ID), clean(c.Name), clean(c.Mode),
			clean(strings.Join(c.AuthMethods, ",")), dash(clean(c.NotificationHost)), clean(scopes))
	}
	return writeErr(tw.Flush())
}

func writeErr(err error) error {
	if err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

func id(s string, full bool) string {
	if full {
		return clean(s)
	}
	return clean(short(s))
}

// user is the USER column: the subject, and the login hint when it differs.
func user(r Request) string {
	if r.LoginHint != "" && r.LoginHint != r.Subject {
		return r.Subject + " (" + r.LoginHint + ")"
	}
	return r.Subject
}

func since(now, t time.Time) string { return round(now.Sub(t)) }

// until is the EXPIRES_IN column: "-" once past.
func until(now, t time.Time) string {
	if d := t.Sub(now); d > 0 {
		return round(d)
	}
	return "-"
}

func round(d time.Duration) string { return d.Round(time.Second).String() }

func at(t time.Time) string { return t.Local().Format("2006-01-02 15:04:05 MST") }

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// clean replaces characters that are not graphic (control characters, tabs,
// escapes) so client-chosen text cannot drive the terminal or the table.
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		if r == ' ' || unicode.IsGraphic(r) {
			return r
		}
		return '?'
	}, s)
}
