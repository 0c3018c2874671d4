package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"vetvault/identity"
	"vetvault/identity/oryproxy"
	"vetvault/services/audit"
	"vetvault/tenants"
)

// newKratosProxy serves Kratos's public API under oryproxy.Prefix, guarded
// against brute force and account enumeration, with its events written to
// the audit trail.
func newKratosProxy(cfg config, db *tenants.DB, client *http.Client, sessions oryproxy.SessionInvalidator, log *slog.Logger) (http.Handler, error) {
	proxy, err := oryproxy.New(oryproxy.Deps{
		KratosPublicURL: cfg.KratosPublicURL,
		DB:              db,
		Admin:           identity.NewAdmin(cfg.KratosAdminURL, client),
		Sessions:        identity.NewSessions(cfg.KratosPublicURL, client),
		Events:          audit.NewStore(db, time.Now),
		Invalidator:     sessions,
		Log:             log,
	})
	if err != nil {
		return nil, fmt.Errorf("build Kratos proxy: %w", err)
	}
	return proxy, nil
}

func healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
}

// readyz responds 200 only when PostgreSQL, Kratos and Keto all respond, so a
// load balancer sends no traffic to an instance that would deny everything.
func readyz(log *slog.Logger, client *http.Client, db *tenants.DB, cfg config) http.Handler {
	checks := []struct {
		name  string
		check func(context.Context) error
	}{
		{"postgres", db.Ping},
		{"kratos", httpReady(client, cfg.KratosPublicURL+"/health/ready")},
		{"keto", httpReady(client, cfg.KetoReadURL+"/health/ready")},
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		defer cancel()

		var report strings.Builder
		ready := true
		for _, c := range checks {
			if err := c.check(ctx); err != nil {
				ready = false
				log.WarnContext(ctx, "dependency not ready", "dependency", c.name, "err", err)
				fmt.Fprintf(&report, "%s: not ready\n", c.name)
				continue
			}
			fmt.Fprintf(&report, "%s: ok\n", c.name)
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_, _ = w.Write([]byte(report.String()))
	})
}

func httpReady(client *http.Client, url string) func(context.Context) error {
	return func(ctx context.Context) error {
		request, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		response, err := client.Do(request)
		if err != nil {
			return err
		}
		response.Body.Close()
		if response.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: status %d", url, response.StatusCode)
		}
		return nil
	}
}
