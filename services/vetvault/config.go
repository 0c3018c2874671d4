package main

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"vetvault/identity/sessioncache"
)

// config is the server's configuration, read once from the environment.
// The defaults are the development stack that `go tool task up` starts.
type config struct {
	Env                  string // "dev" allows the development secrets below
	Addr                 string
	DatabaseURL          string // runtime role: no table ownership, no BYPASSRLS
	MigrationDatabaseURL string // migration owner role
	KratosPublicURL      string
	KratosAdminURL       string
	KetoReadURL          string
	KetoWriteURL         string
	// PrivilegedWindow is the maximum age of a sign-in for privileged
	// changes such as granting a role.
	PrivilegedWindow time.Duration
	// AppURL is the address browsers use, written into emails.
	AppURL   string
	SMTPURL  string
	MailFrom string
	// InvitationLifetime is how long an invitation's one-time code works.
	InvitationLifetime time.Duration
	// OperatorCodeLifetime is how long a new operator's one-time recovery
	// code works.
	OperatorCodeLifetime time.Duration
	// SessionCacheTTL is the time a verified session is served without a
	// Kratos call, so also the longest a revocation made in Kratos directly
	// goes unseen. Zero turns the cache off.
	SessionCacheTTL time.Duration
	// ReconcileInterval is how often pending relationship changes are
	// retried and drift between Keto and the database is repaired, so the
	// longest a grant whose first apply failed waits.
	ReconcileInterval time.Duration
}

// maxSessionCacheTTL caps VETVAULT_SESSION_CACHE_TTL, because the TTL is
// how long a session revoked in Kratos directly keeps working.
const maxSessionCacheTTL = 5 * time.Minute

// devSecretMarker appears in every development password and secret, so a
// production start can recognise and reject them.
const devSecretMarker = "dev-only"

func loadConfig() (config, error) {
	cfg := config{
		Env:                  env("VETVAULT_ENV", "production"),
		Addr:                 env("VETVAULT_ADDR", "127.0.0.1:8080"),
		DatabaseURL:          env("VETVAULT_DATABASE_URL", "postgres://vetvault_app:dev-only-app@127.0.0.1:5432/vetvault?sslmode=disable"),
		MigrationDatabaseURL: env("VETVAULT_MIGRATION_DATABASE_URL", "postgres://vetvault_owner:dev-only-owner@127.0.0.1:5432/vetvault?sslmode=disable"),
		KratosPublicURL:      env("VETVAULT_KRATOS_PUBLIC_URL", "http://127.0.0.1:4433"),
		KratosAdminURL:       env("VETVAULT_KRATOS_ADMIN_URL", "http://127.0.0.1:4434"),
		KetoReadURL:          env("VETVAULT_KETO_READ_URL", "http://127.0.0.1:4466"),
		KetoWriteURL:         env("VETVAULT_KETO_WRITE_URL", "http://127.0.0.1:4467"),
	}
	window, err := time.ParseDuration(env("VETVAULT_PRIVILEGED_WINDOW", "15m"))
	if err != nil || window <= 0 {
		return cfg, fmt.Errorf("VETVAULT_PRIVILEGED_WINDOW %q is invalid: use a positive duration such as 15m", os.Getenv("VETVAULT_PRIVILEGED_WINDOW"))
	}
	cfg.PrivilegedWindow = window
	// localhost rather than the bound 127.0.0.1, because Kratos's WebAuthn
	// relying party is localhost (infra/kratos/kratos.yml).
	cfg.AppURL = env("VETVAULT_APP_URL", "http://localhost:8080")
	cfg.SMTPURL = env("VETVAULT_SMTP_URL", "smtp://127.0.0.1:1025")
	cfg.MailFrom = env("VETVAULT_MAIL_FROM", "no-reply@vetvault.test")
	lifetime, err := time.ParseDuration(env("VETVAULT_INVITATION_LIFETIME", "72h"))
	if err != nil || lifetime <= 0 {
		return cfg, fmt.Errorf("VETVAULT_INVITATION_LIFETIME %q is invalid: use a positive duration such as 72h", os.Getenv("VETVAULT_INVITATION_LIFETIME"))
	}
	cfg.InvitationLifetime = lifetime
	operatorCodeLifetime, err := time.ParseDuration(env("VETVAULT_OPERATOR_CODE_LIFETIME", "24h"))
	if err != nil || operatorCodeLifetime <= 0 {
		return cfg, fmt.Errorf("VETVAULT_OPERATOR_CODE_LIFETIME %q is invalid: use a positive duration such as 24h", os.Getenv("VETVAULT_OPERATOR_CODE_LIFETIME"))
	}
	cfg.OperatorCodeLifetime = operatorCodeLifetime
	sessionCacheTTL, err := time.ParseDuration(env("VETVAULT_SESSION_CACHE_TTL", sessioncache.DefaultTTL.String()))
	if err != nil || sessionCacheTTL < 0 || sessionCacheTTL > maxSessionCacheTTL {
		return cfg, fmt.Errorf("VETVAULT_SESSION_CACHE_TTL %q is invalid: use a duration from 0s (cache off) to %s", os.Getenv("VETVAULT_SESSION_CACHE_TTL"), maxSessionCacheTTL)
	}
	cfg.SessionCacheTTL = sessionCacheTTL
	reconcileInterval, err := time.ParseDuration(env("VETVAULT_RECONCILE_INTERVAL", "30s"))
	if err != nil || reconcileInterval < time.Second {
		return cfg, fmt.Errorf("VETVAULT_RECONCILE_INTERVAL %q is invalid: use a duration of at least 1s, such as 30s", os.Getenv("VETVAULT_RECONCILE_INTERVAL"))
	}
	cfg.ReconcileInterval = reconcileInterval
	return cfg, cfg.validate()
}

func env(name, fallback string) string {
	if value, ok := os.LookupEnv(name); ok && value != "" {
		return value
	}
	return fallback
}

// dev reports whether the server runs in development mode.
func (c config) dev() bool {
	return c.Env == "dev"
}

func (c config) validate() error {
	var problems []error
	if c.Env != "dev" && c.Env != "production" {
		problems = append(problems, fmt.Errorf("VETVAULT_ENV %q is invalid: use dev or production", c.Env))
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		problems = append(problems, fmt.Errorf("VETVAULT_ADDR %q is invalid: %w", c.Addr, err))
	}
	urls := map[string]string{
		"VETVAULT_DATABASE_URL":           c.DatabaseURL,
		"VETVAULT_MIGRATION_DATABASE_URL": c.MigrationDatabaseURL,
		"VETVAULT_KRATOS_PUBLIC_URL":      c.KratosPublicURL,
		"VETVAULT_KRATOS_ADMIN_URL":       c.KratosAdminURL,
		"VETVAULT_KETO_READ_URL":          c.KetoReadURL,
		"VETVAULT_KETO_WRITE_URL":         c.KetoWriteURL,
		"VETVAULT_APP_URL":                c.AppURL,
		"VETVAULT_SMTP_URL":               c.SMTPURL,
	}
	for name, value := range urls {
		parsed, err := url.Parse(value)
		if err != nil || parsed.Scheme == "" || parsed.Host == "" {
			problems = append(problems, fmt.Errorf("%s is not a valid URL: set scheme and host", name))
			continue
		}
		if !c.dev() && strings.Contains(value, devSecretMarker) {
			problems = append(problems, fmt.Errorf("%s contains a development secret: set a real one, or VETVAULT_ENV=dev for local work", name))
		}
	}
	return errors.Join(problems...)
}

// String prints the configuration with passwords masked.
func (c config) String() string {
	return fmt.Sprintf("env=%s addr=%s database=%s kratos=%s keto=%s",
		c.Env, c.Addr, redact(c.DatabaseURL), c.KratosPublicURL, c.KetoReadURL)
}

func redact(raw string) string {
	parsed, err := url.Parse(raw)
	if err != nil {
		return "(invalid URL)"
	}
	return parsed.Redacted()
}
