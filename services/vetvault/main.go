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
	"net/url"
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
	"vetvault/services/pet"
	"vetvault/services/role"
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

	reconcileCtx, stopReconciling := context.WithCancel(ctx)
	reconcilerDone := make(chan struct{})
	go func() {
		defer close(reconcilerDone)
		newReconciler(cfg, db, log).Run(reconcileCtx, cfg.ReconcileInterval)
	}()
	defer func() {
		stopReconciling()
		<-reconcilerDone
	}()

	sweepCtx, stopSweeping := context.WithCancel(ctx)
	sweeperDone := make(chan struct{})
	go func() {
		defer close(sweeperDone)
		newReferrals(cfg, db, &http.Client{Timeout: 10 * time.Second}, log).Run(sweepCtx, referralSweepInterval)
	}()
	defer func() {
		stopSweeping()
		<-sweeperDone
	}()

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

// referralSweepInterval is how often the server ends expired referrals.
// Reads of clinical records check the expiry themselves, so this bounds only
// how long an expired relationship stays in Keto.
const referralSweepInterval = 5 * time.Second

// newReferrals returns the referral service, which the API and the sweeper
// both use.
func newReferrals(cfg config, db *tenants.DB, client *http.Client, log *slog.Logger) *pet.Referrals {
	permissions := identity.NewPermissions(cfg.KetoReadURL, cfg.KetoWriteURL, client)
	return pet.NewReferrals(db, tenants.NewOutbox(db, permissions, log), permissions,
		identity.NewAdmin(cfg.KratosAdminURL, client), time.Now, log)
}

// newReconciler returns the reconciler that retries pending relationship
// changes and repairs drift between Keto and the database.
func newReconciler(cfg config, db *tenants.DB, log *slog.Logger) *tenants.Reconciler {
	permissions := identity.NewPermissions(cfg.KetoReadURL, cfg.KetoWriteURL, &http.Client{Timeout: 10 * time.Second})
	return tenants.NewReconciler(db, permissions, audit.Append, time.Now, log)
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
	// outbox carries membership, branch and custom role changes to Keto.
	outbox := tenants.NewOutbox(db, permissions, log)
	staffService := staff.NewService(db, outbox, admin, permissions, mailer, sessionInvalidator,
		staff.Config{AppURL: cfg.AppURL, InvitationLifetime: cfg.InvitationLifetime}, time.Now, log)
	operators := newOperatorService(admin, mailer, db, cfg.OperatorCodeLifetime)

	mux := http.NewServeMux()
	api.New(mux, api.Deps{
		Sessions:         sessions,
		Permissions:      permissions,
		Clinics:          tenants.NewClinics(db, outbox),
		Appointments:     appointment.NewStore(db),
		Staff:            staffService,
		Roles:            role.NewService(db, outbox, time.Now),
		Audit:            audit.NewStore(db, time.Now),
		Operators:        operators,
		Pets:             pet.NewRegistry(db, outbox, time.Now),
		Records:          pet.NewRecords(db, permissions, time.Now),
		Referrals:        newReferrals(cfg, db, client, log),
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
	mux.Handle("/", canonicalHost(cfg, web.Handler()))
	return api.WithRequestID(log, mux), nil
}

// canonicalHost sends browsers that open the listen address itself (such as
// http://127.0.0.1:8080) to the same page at VETVAULT_APP_URL. Kratos's
// cookies and WebAuthn are bound to that URL's host, so sign-in only works
// there.
func canonicalHost(cfg config, next http.Handler) http.Handler {
	app, err := url.Parse(cfg.AppURL)
	if err != nil || app.Host == cfg.Addr {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Host == cfg.Addr && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			target := *app
			target.Path = r.URL.Path
			target.RawQuery = r.URL.RawQuery
			http.Redirect(w, r, target.String(), http.StatusFound)
			return
		}
		next.ServeHTTP(w, r)
	})
}
