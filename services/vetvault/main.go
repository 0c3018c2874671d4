// Command vetvault runs the VetVault server and its maintenance commands:
//
//	vetvault serve     serve the API, docs, web UI and the Kratos proxy
//	vetvault migrate   apply database migrations as the migration owner
//	vetvault demo      book a sample clinic day through the public API
//	vetvault operator create --email EMAIL
//	                   create a platform operator and print their one-time code
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
	"vetvault/identity/sessioncache"
	"vetvault/services/api"
	"vetvault/services/appointment"
	"vetvault/services/audit"
	"vetvault/services/mail"
	"vetvault/services/staff"
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

const usage = "usage: vetvault serve | migrate | demo | operator create --email EMAIL [flags]"

func run(ctx context.Context, log *slog.Logger, args []string) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	switch args[0] {
	case "demo":
		return runDemo(ctx, args[1:], os.Stdout)
	case "operator":
		return runOperator(ctx, args[1:], os.Stdout)
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

	sessions := newSessionCache(cfg, db, log)
	listenCtx, stopListening := context.WithCancel(ctx)
	listenerDone := make(chan struct{})
	go func() {
		defer close(listenerDone)
		if err := sessions.Run(listenCtx); err != nil {
			log.Error("session cache listener failed; every request now calls Kratos", "err", err)
		}
	}()
	defer func() {
		stopListening()
		<-listenerDone
	}()

	handler, err := newHandler(cfg, db, sessions, log)
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

// newSessionCache returns the session cache in front of Kratos's whoami.
// It serves nothing from memory until its Run is listening, so a server
// whose listener never runs calls Kratos on every request.
func newSessionCache(cfg config, db *tenants.DB, log *slog.Logger) *sessioncache.Cache {
	client := &http.Client{Timeout: 10 * time.Second}
	return sessioncache.New(identity.NewSessions(cfg.KratosPublicURL, client), sessioncache.Config{
		DatabaseURL: cfg.DatabaseURL,
		DB:          db,
		TTL:         cfg.SessionCacheTTL,
		Log:         log,
	})
}

// newHandler wires every part of the server onto one handler.
func newHandler(cfg config, db *tenants.DB, sessions *sessioncache.Cache, log *slog.Logger) (http.Handler, error) {
	client := &http.Client{Timeout: 10 * time.Second}
	permissions := identity.NewPermissions(cfg.KetoReadURL, cfg.KetoWriteURL, client)

	admin := identity.NewAdmin(cfg.KratosAdminURL, client)
	mailer, err := mail.NewSender(cfg.SMTPURL, cfg.MailFrom)
	if err != nil {
		return nil, err
	}
	// sessionInvalidator drops cached sessions after a revocation.
	var sessionInvalidator staff.SessionInvalidator = sessions
	staffService := staff.NewService(db, admin, permissions, mailer, sessionInvalidator,
		staff.Config{AppURL: cfg.AppURL, InvitationLifetime: cfg.InvitationLifetime}, time.Now, log)
	operators := newOperatorService(admin, mailer, db, cfg.OperatorCodeLifetime)

	mux := http.NewServeMux()
	api.New(mux, api.Deps{
		Sessions:         sessions,
		Permissions:      permissions,
		Clinics:          tenants.NewClinics(db, permissions, log),
		Appointments:     appointment.NewStore(db),
		Staff:            staffService,
		Audit:            audit.NewStore(db, time.Now),
		Operators:        operators,
		Log:              log,
		PrivilegedWindow: cfg.PrivilegedWindow,
		Now:              time.Now,
	})

	proxy, err := newKratosProxy(cfg, db, client, sessions, log)
	if err != nil {
		return nil, err
	}
	mux.Handle("/v1/", api.Unmatched(mux))
	mux.Handle("/.ory/", proxy)
	mux.Handle("GET /healthz", http.HandlerFunc(healthz))
	mux.Handle("GET /readyz", readyz(log, client, db, cfg))
	mux.Handle("/", web.Handler())
	return api.WithRequestID(log, mux), nil
}
