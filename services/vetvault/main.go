// Command vetvault runs the VetVault server and its maintenance commands:
//
//	vetvault serve     serve the API, docs, web UI and the Kratos proxy
//	vetvault migrate   apply database migrations as the migration owner
//	vetvault demo      book a sample clinic day through the public API
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"vetvault/identity"
	"vetvault/services/api"
	"vetvault/services/appointment"
	"vetvault/tenants"
	"vetvault/web"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	slog.SetDefault(log)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if err := run(ctx, log, os.Args[1:]); err != nil {
		log.Error("vetvault failed", "err", err)
		os.Exit(1)
	}
}

const usage = "usage: vetvault serve | migrate | demo [flags]"

func run(ctx context.Context, log *slog.Logger, args []string) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	switch args[0] {
	case "demo":
		return runDemo(ctx, args[1:], os.Stdout)
	case "serve", "migrate":
	default:
		return fmt.Errorf("unknown command %q: %s", args[0], usage)
	}

	cfg, err := loadConfig()
	if err != nil {
		return fmt.Errorf("load config: %w", err)
	}
	if args[0] == "migrate" {
		if err := tenants.Migrate(ctx, cfg.MigrationDatabaseURL); err != nil {
			return err
		}
		log.Info("migrations applied")
		return nil
	}
	return serve(ctx, log, cfg)
}

func serve(ctx context.Context, log *slog.Logger, cfg config) error {
	log.Info("starting", "config", cfg.String())

	db, err := tenants.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer db.Close()

	handler, err := newHandler(cfg, db, log)
	if err != nil {
		return err
	}
	server := &http.Server{
		Addr:              cfg.Addr,
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}

	errs := make(chan error, 1)
	go func() { errs <- server.ListenAndServe() }()
	log.Info("listening", "addr", cfg.Addr)

	select {
	case err := <-errs:
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	case <-ctx.Done():
	}
	log.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := server.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shut down: %w", err)
	}
	return nil
}

// newHandler wires every part of the server onto one handler.
func newHandler(cfg config, db *tenants.DB, log *slog.Logger) (http.Handler, error) {
	client := &http.Client{Timeout: 10 * time.Second}
	sessions := identity.NewSessions(cfg.KratosPublicURL, client)
	permissions := identity.NewPermissions(cfg.KetoReadURL, cfg.KetoWriteURL, client)

	mux := http.NewServeMux()
	api.New(mux, api.Deps{
		Sessions:         sessions,
		Permissions:      permissions,
		Clinics:          tenants.NewClinics(db, permissions, log),
		Appointments:     appointment.NewStore(db),
		Log:              log,
		PrivilegedWindow: cfg.PrivilegedWindow,
		Now:              time.Now,
	})

	proxy, err := newKratosProxy(cfg.KratosPublicURL, log)
	if err != nil {
		return nil, err
	}
	mux.Handle("/.ory/", proxy)
	mux.Handle("GET /healthz", http.HandlerFunc(healthz))
	mux.Handle("GET /readyz", readyz(log, client, db, cfg))
	mux.Handle("/", web.Handler())
	return api.WithRequestID(log, mux), nil
}
