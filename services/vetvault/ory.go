package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"

	"vetvault/tenants"
)

// kratosPrefix is the path under which the server exposes Kratos's public
// API. Serving it from the app's own origin keeps the session cookie
// first-party for the browser.
const kratosPrefix = "/.ory"

func newKratosProxy(publicURL string, log *slog.Logger) (http.Handler, error) {
	target, err := url.Parse(publicURL)
	if err != nil {
		return nil, fmt.Errorf("parse Kratos public URL: %w", err)
	}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.URL.Path = strings.TrimPrefix(r.In.URL.Path, kratosPrefix)
			r.Out.URL.RawPath = ""
			r.SetXForwarded()
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			log.ErrorContext(r.Context(), "kratos proxy failed", "err", err)
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusBadGateway)
			_, _ = w.Write([]byte(`{"title":"Bad Gateway","status":502,"detail":"sign-in service unavailable: try again shortly"}`))
		},
	}
	return proxy, nil
}

func healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
}

// readyz answers 200 only when PostgreSQL, Kratos and Keto all answer, so a
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
