package operator_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"vetvault/identity"
	"vetvault/services/audit"
	"vetvault/services/mail"
	"vetvault/services/operator"
	"vetvault/tenants/tenanttest"
)

// These tests run against the real Kratos admin API, mailpit and a fresh
// PostgreSQL database, as `go tool task test` starts them.

type fixture struct {
	admin  *identity.Admin
	sender *mail.Sender
	db     *tenanttest.Database
	audit  *audit.Store
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	sender, err := mail.NewSender(envOr("VETVAULT_SMTP_URL", "smtp://127.0.0.1:1025"), "no-reply@vetvault.test")
	if err != nil {
		t.Fatalf("new mail sender: %v", err)
	}
	db := tenanttest.New(t)
	return fixture{
		admin:  identity.NewAdmin(envOr("VETVAULT_KRATOS_ADMIN_URL", "http://127.0.0.1:4434"), client),
		sender: sender,
		db:     db,
		audit:  audit.NewStore(db.App, time.Now),
	}
}

func (f fixture) service(lifetime time.Duration) *operator.Service {
	return operator.NewService(f.admin, f.sender, f.audit, lifetime)
}

// newEmail returns an address no identity has yet, and deletes whatever
// identity the test creates for it.
func (f fixture) newEmail(t *testing.T, prefix string) string {
	t.Helper()
	email := prefix + "-" + strings.ToLower(rand.Text()[:10]) + "@vetvault.test"
	t.Cleanup(func() {
		if found, err := f.admin.FindByEmail(context.Background(), email); err == nil {
			_ = f.admin.Delete(context.Background(), found.ID)
		}
	})
	return email
}

func TestCreateOperator(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	email := f.newEmail(t, "operator")
	creator := uuid.New()
	before := time.Now()

	created, err := f.service(0).Create(ctx, operator.Request{
		Email:     "  " + strings.ToUpper(email) + " ",
		CreatedBy: creator,
		IP:        "127.0.0.1",
		UserAgent: "operator-test",
	})
	if err != nil {
		t.Fatalf("create operator: %v", err)
	}

	stored, err := f.admin.FindByEmail(ctx, email)
	if err != nil {
		t.Fatalf("find the new operator by email: %v", err)
	}
	if stored.ID != created.Operator.ID {
		t.Errorf("identity found by email %s, want %s", stored.ID, created.Operator.ID)
	}
	if stored.SchemaID != identity.SchemaOperator {
		t.Errorf("schema %q, want %q", stored.SchemaID, identity.SchemaOperator)
	}
	if stored.Email != email {
		t.Errorf("stored email %q, want the normalised %q", stored.Email, email)
	}

	code := created.RecoveryCode
	if code.Code == "" || code.Link == "" {
		t.Fatalf("recovery code %q, link %q; want both set", code.Code, code.Link)
	}
	wantExpiry := before.Add(operator.DefaultCodeLifetime)
	if code.ExpiresAt.Before(wantExpiry.Add(-time.Minute)) || code.ExpiresAt.After(wantExpiry.Add(time.Minute)) {
		t.Errorf("code expires at %s, want about %s (default lifetime)", code.ExpiresAt, wantExpiry)
	}

	message := waitForMail(t, email)
	if message.Subject != "Your VetVault operator account" {
		t.Errorf("subject %q, want %q", message.Subject, "Your VetVault operator account")
	}
	if !strings.Contains(message.Text, code.Link) {
		t.Errorf("mail body %q does not contain the recovery link %q", message.Text, code.Link)
	}
	if !strings.Contains(message.Text, "Code: "+code.Code) {
		t.Errorf("mail body %q does not contain the recovery code", message.Text)
	}

	events := securityEvents(t, f.db, created.Operator.ID)
	if len(events) != 1 {
		t.Fatalf("%d security events for the new operator, want 1: %+v", len(events), events)
	}
	got := events[0]
	if got.Action != string(identity.ActionOperatorCreated) {
		t.Errorf("action %q, want %q", got.Action, identity.ActionOperatorCreated)
	}
	if got.ActorID == nil || *got.ActorID != creator {
		t.Errorf("actor %v, want %s", got.ActorID, creator)
	}
	if got.IP != "127.0.0.1" || got.UserAgent != "operator-test" {
		t.Errorf("ip %q, user agent %q; want 127.0.0.1 and operator-test", got.IP, got.UserAgent)
	}
	if strings.Contains(got.Detail, "@") {
		t.Errorf("event detail %s contains an email", got.Detail)
	}
}

func TestCreateOperatorCodeLifetime(t *testing.T) {
	f := newFixture(t)
	before := time.Now()

	created, err := f.service(10*time.Minute).Create(context.Background(), operator.Request{Email: f.newEmail(t, "short-lived")})
	if err != nil {
		t.Fatalf("create operator: %v", err)
	}

	want := before.Add(10 * time.Minute)
	if got := created.RecoveryCode.ExpiresAt; got.Before(want.Add(-time.Minute)) || got.After(want.Add(time.Minute)) {
		t.Errorf("code expires at %s, want about %s", got, want)
	}
	events := securityEvents(t, f.db, created.Operator.ID)
	if len(events) != 1 {
		t.Fatalf("%d security events for the new operator, want 1: %+v", len(events), events)
	}
	if events[0].ActorID != nil {
		t.Errorf("actor %s, want none for a request without a creator (bootstrap)", events[0].ActorID)
	}
}

func TestCreateOperatorEmailTaken(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	service := f.service(0)

	staffEmail := f.newEmail(t, "staff")
	staffMember, err := f.admin.Create(ctx, identity.SchemaStaff, staffEmail)
	if err != nil {
		t.Fatalf("create staff identity: %v", err)
	}
	operatorEmail := f.newEmail(t, "operator")
	existing, err := service.Create(ctx, operator.Request{Email: operatorEmail})
	if err != nil {
		t.Fatalf("create first operator: %v", err)
	}

	tests := []struct {
		name       string
		email      string
		owner      uuid.UUID
		wantSchema string
	}{
		{"staff member's email", staffEmail, staffMember.ID, identity.SchemaStaff},
		{"staff member's email in capitals", strings.ToUpper(staffEmail), staffMember.ID, identity.SchemaStaff},
		{"operator's email", operatorEmail, existing.Operator.ID, identity.SchemaOperator},
		{"operator's email with spaces", " " + operatorEmail + " ", existing.Operator.ID, identity.SchemaOperator},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := service.Create(ctx, operator.Request{Email: tt.email})
			if !errors.Is(err, operator.ErrEmailTaken) {
				t.Fatalf("error %v, want ErrEmailTaken", err)
			}
			found, err := f.admin.FindByEmail(ctx, tt.email)
			if err != nil {
				t.Fatalf("find identity: %v", err)
			}
			if found.ID != tt.owner || found.SchemaID != tt.wantSchema {
				t.Errorf("identity %s of schema %q, want the unchanged %s of schema %q", found.ID, found.SchemaID, tt.owner, tt.wantSchema)
			}
			if events := securityEvents(t, f.db, tt.owner); len(events) > 1 {
				t.Errorf("%d events for the existing identity, want at most its own creation", len(events))
			}
		})
	}
}

func TestCreateOperatorInvalidEmail(t *testing.T) {
	f := newFixture(t)
	service := f.service(0)

	tests := []struct {
		name  string
		email string
	}{
		{"empty", ""},
		{"only spaces", "   "},
		{"no at sign", "operator.vetvault.test"},
		{"display name", "Asha Rao <asha@vetvault.test>"},
		{"angle brackets", "<asha@vetvault.test>"},
		{"two addresses", "a@vetvault.test, b@vetvault.test"},
		{"header injection", "a@vetvault.test\r\nBcc: b@vetvault.test"},
		{"longer than 254 characters", strings.Repeat("a", 60) + "@" + strings.Repeat("b", 60) + "." + strings.Repeat("c", 60) + "." + strings.Repeat("d", 60) + ".vetvault.test"},
		{"local part longer than 64 characters", strings.Repeat("a", 65) + "@vetvault.test"},
		{"domain label starting with a hyphen", "asha@-vetvault.test"},
		{"underscore in the domain", "asha@vet_vault.test"},
		{"empty domain label", "asha@vetvault..test"},
		{"non-ASCII domain", "asha@vetvault.भारत"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := service.Create(context.Background(), operator.Request{Email: tt.email})
			var invalid *operator.InvalidEmailError
			if !errors.As(err, &invalid) {
				t.Fatalf("error %v, want InvalidEmailError", err)
			}
			if invalid.Reason == "" {
				t.Errorf("InvalidEmailError has no reason")
			}
		})
	}
	if count := countSecurityEvents(t, f.db); count != 0 {
		t.Errorf("%d security events after only invalid requests, want 0", count)
	}
}

func TestCreateOperatorUndoesOnFailure(t *testing.T) {
	ctx := context.Background()

	t.Run("mail not delivered", func(t *testing.T) {
		f := newFixture(t)
		email := f.newEmail(t, "undelivered")
		unreachable, err := mail.NewSender("smtp://"+closedPort(t), "no-reply@vetvault.test")
		if err != nil {
			t.Fatalf("new mail sender: %v", err)
		}

		_, err = operator.NewService(f.admin, unreachable, f.audit, 0).Create(ctx, operator.Request{Email: email})
		if err == nil {
			t.Fatal("create succeeded with an unreachable SMTP server, want an error")
		}
		if _, err := f.admin.FindByEmail(ctx, email); !errors.Is(err, identity.ErrIdentityNotFound) {
			t.Errorf("find identity after failed create: error %v, want ErrIdentityNotFound", err)
		}
		if count := countSecurityEvents(t, f.db); count != 0 {
			t.Errorf("%d security events after failed create, want 0", count)
		}

		// With mail working again the same email can be created.
		if _, err := f.service(0).Create(ctx, operator.Request{Email: email}); err != nil {
			t.Errorf("retry after failed create: %v", err)
		}
	})

	t.Run("recipient rejected", func(t *testing.T) {
		f := newFixture(t)
		email := f.newEmail(t, "rejected")
		rejecting, err := mail.NewSender("smtp://"+rejectingSMTPServer(t), "no-reply@vetvault.test")
		if err != nil {
			t.Fatalf("new mail sender: %v", err)
		}

		_, err = operator.NewService(f.admin, rejecting, f.audit, 0).Create(ctx, operator.Request{Email: email})
		if err == nil {
			t.Fatal("create succeeded although the SMTP server rejected the recipient, want an error")
		}
		if !strings.Contains(err.Error(), "Recipient address rejected") {
			t.Errorf("error %q, want the SMTP server's reply", err)
		}
		if strings.Contains(err.Error(), email) {
			t.Errorf("error %q contains the recipient's email, which must not reach logs", err)
		}
		if _, err := f.admin.FindByEmail(ctx, email); !errors.Is(err, identity.ErrIdentityNotFound) {
			t.Errorf("find identity after failed create: error %v, want ErrIdentityNotFound", err)
		}
	})

	t.Run("audit trail unavailable", func(t *testing.T) {
		f := newFixture(t)
		email := f.newEmail(t, "unaudited")
		f.db.App.Close()

		_, err := f.service(0).Create(ctx, operator.Request{Email: email})
		if err == nil {
			t.Fatal("create succeeded without an audit trail, want an error")
		}
		if _, err := f.admin.FindByEmail(ctx, email); !errors.Is(err, identity.ErrIdentityNotFound) {
			t.Errorf("find identity after failed create: error %v, want ErrIdentityNotFound", err)
		}
	})
}

// closedPort returns a loopback address where nothing listens: a port this
// test opened and closed again.
func closedPort(t *testing.T) string {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	addr := listener.Addr().String()
	listener.Close()
	return addr
}

// rejectingSMTPServer starts an SMTP server on loopback that rejects every
// recipient, echoing the address as many servers do, and returns its address.
func rejectingSMTPServer(t *testing.T) string {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { listener.Close() })
	go func() {
		for {
			conn, err := listener.Accept()
			if err != nil {
				return
			}
			go serveRejectingSMTP(conn)
		}
	}()
	return listener.Addr().String()
}

func serveRejectingSMTP(conn net.Conn) {
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	text := textproto.NewConn(conn)
	_ = text.PrintfLine("220 rejecting.test ESMTP")
	for {
		line, err := text.ReadLine()
		if err != nil {
			return
		}
		command := strings.ToUpper(line)
		switch {
		case strings.HasPrefix(command, "EHLO"), strings.HasPrefix(command, "HELO"):
			_ = text.PrintfLine("250 rejecting.test")
		case strings.HasPrefix(command, "MAIL FROM"):
			_ = text.PrintfLine("250 2.1.0 Ok")
		case strings.HasPrefix(command, "RCPT TO:"):
			_ = text.PrintfLine("550 5.1.1 %s: Recipient address rejected", strings.TrimSpace(line[len("RCPT TO:"):]))
		case strings.HasPrefix(command, "QUIT"):
			_ = text.PrintfLine("221 2.0.0 Bye")
			return
		default:
			_ = text.PrintfLine("502 5.5.2 Command not recognised")
		}
	}
}

type securityEvent struct {
	Action    string
	ActorID   *uuid.UUID
	IP        string
	UserAgent string
	Detail    string
}

// securityEvents reads, as the migration owner, the platform audit events
// whose target is target.
func securityEvents(t *testing.T, db *tenanttest.Database, target uuid.UUID) []securityEvent {
	t.Helper()
	rows, err := db.Owner.Query(context.Background(),
		`SELECT action, actor_id, ip, user_agent, detail::text FROM security_events WHERE target_id = $1 ORDER BY id`, target)
	if err != nil {
		t.Fatalf("query security events: %v", err)
	}
	defer rows.Close()
	var events []securityEvent
	for rows.Next() {
		var e securityEvent
		if err := rows.Scan(&e.Action, &e.ActorID, &e.IP, &e.UserAgent, &e.Detail); err != nil {
			t.Fatalf("scan security event: %v", err)
		}
		events = append(events, e)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("read security events: %v", err)
	}
	return events
}

func countSecurityEvents(t *testing.T, db *tenanttest.Database) int {
	t.Helper()
	var count int
	if err := db.Owner.QueryRow(context.Background(), `SELECT count(*) FROM security_events`).Scan(&count); err != nil {
		t.Fatalf("count security events: %v", err)
	}
	return count
}

type mailMessage struct {
	Subject string
	Text    string
}

// waitForMail polls mailpit's API for the newest message to recipient and
// returns its subject and plain-text body.
func waitForMail(t *testing.T, recipient string) mailMessage {
	t.Helper()
	base := envOr("VETVAULT_MAILPIT_URL", "http://127.0.0.1:8025")
	client := &http.Client{Timeout: 5 * time.Second}
	query := url.Values{"query": {`to:"` + recipient + `"`}, "limit": {"1"}}

	deadline := time.Now().Add(10 * time.Second)
	for {
		var found struct {
			Messages []struct {
				ID string `json:"ID"`
			} `json:"messages"`
		}
		getJSON(t, client, base+"/api/v1/search?"+query.Encode(), &found)
		if len(found.Messages) > 0 {
			var message mailMessage
			getJSON(t, client, base+"/api/v1/message/"+found.Messages[0].ID, &message)
			return message
		}
		if time.Now().After(deadline) {
			t.Fatalf("no mail to %s in mailpit after 10s", recipient)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func getJSON(t *testing.T, client *http.Client, url string, into any) {
	t.Helper()
	response, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer response.Body.Close()
	if response.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d, want 200", url, response.StatusCode)
	}
	if err := json.NewDecoder(response.Body).Decode(into); err != nil {
		t.Fatalf("decode %s: %v", url, err)
	}
}

func envOr(name, fallback string) string {
	if value := os.Getenv(name); value != "" {
		return value
	}
	return fallback
}
