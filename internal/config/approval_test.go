package config

import (
	"strings"
	"testing"
	"time"
)

func TestApprovalDefaultsToEither(t *testing.T) {
	c := mustParse(t, doc(nil), noEnv)
	if c.Approval.Method != ApprovalEither || c.Approval.Passkeys.EnrollmentTTL != 24*time.Hour {
		t.Fatalf("approval = %+v, want either with 24h links", c.Approval)
	}
	if got := c.MethodFor("alice"); got != ApprovalEither {
		t.Fatalf("MethodFor(alice) = %q", got)
	}
}

func TestApprovalMethodPerUser(t *testing.T) {
	data := doc(map[string]string{
		"upstream": "upstream:\n  local:\n    users:\n" +
			"      - username: alice\n        password_hash: \"" + hashAlicePassword + "\"\n        approval_method: passkey\n" +
			"      - username: bob\n        password_hash: \"" + hashBobPassword + "\"\n",
	}) + "approval:\n  method: password\n  passkeys:\n    enrollment_ttl: 1h\n"
	c := mustParse(t, data, noEnv)
	if c.MethodFor("alice") != ApprovalPasskey || c.MethodFor("bob") != ApprovalPassword || c.Approval.Passkeys.EnrollmentTTL != time.Hour {
		t.Fatalf("alice %q, bob %q, ttl %v", c.MethodFor("alice"), c.MethodFor("bob"), c.Approval.Passkeys.EnrollmentTTL)
	}
}

func TestApprovalProblems(t *testing.T) {
	for _, tc := range []struct {
		name, extra, issuer, want string
	}{
		{"unknown method", "approval:\n  method: fingerprint\n", "", `approval.method: must be passkey, password or either, got "fingerprint"`},
		{"link lifetime too long", "approval:\n  passkeys:\n    enrollment_ttl: 9000h\n", "", "approval.passkeys.enrollment_ttl: must be between"},
		{"rp_id not a suffix of the issuer's host", "approval:\n  passkeys:\n    rp_id: example.org\n", "", `must be the issuer's host name "ciba.example.com" or a suffix of it`},
		{"rp_id an IP address", "approval:\n  passkeys:\n    rp_id: 10.0.0.1\n", "", "must be a domain name, not an IP address"},
		{"passkey required with an IP issuer", "approval:\n  method: passkey\n", "issuer: http://127.0.0.1:8080", "the issuer's host 127.0.0.1 is an IP address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			over := map[string]string{}
			if tc.issuer != "" {
				over["issuer"] = tc.issuer
			}
			ps := problemsOf(t, doc(over)+tc.extra, noEnv)
			if !strings.Contains(ps.Error(), tc.want) {
				t.Fatalf("problems:\n%v\nwant one containing %q", ps, tc.want)
			}
		})
	}
	t.Run("rp_id a suffix of the issuer's host", func(t *testing.T) {
		c := mustParse(t, doc(nil)+"approval:\n  method: passkey\n  passkeys:\n    rp_id: example.com\n", noEnv)
		if c.Approval.Passkeys.RPID != "example.com" {
			t.Fatal(c.Approval.Passkeys.RPID)
		}
	})
}

func TestSelfEnrollment(t *testing.T) {
	if c := mustParse(t, doc(nil), noEnv); c.Approval.Passkeys.SelfEnrollment {
		t.Fatal("self_enrollment is on by default, want off")
	}
	c := mustParse(t, doc(nil)+"approval:\n  passkeys:\n    self_enrollment: true\n", noEnv)
	if !c.Approval.Passkeys.SelfEnrollment {
		t.Fatal("self_enrollment: true not read")
	}
	oidc := map[string]string{"upstream": "upstream:\n  type: oidc\n  oidc:\n    issuer: https://idp.example.com"}
	ps := problemsOf(t, doc(oidc)+"approval:\n  passkeys:\n    self_enrollment: true\n", noEnv)
	if want := "approval.passkeys.self_enrollment: applies to the local upstream only"; !strings.Contains(ps.Error(), want) {
		t.Fatalf("problems:\n%v\nwant one containing %q", ps, want)
	}
}
