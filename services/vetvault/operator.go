package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"time"

	"vetvault/identity"
	"vetvault/services/audit"
	"vetvault/services/mail"
	"vetvault/services/operator"
	"vetvault/tenants"
)

const operatorUsage = "usage: vetvault operator create --email EMAIL [--code-lifetime DURATION]"

// runOperator runs `vetvault operator create`, the bootstrap command: it
// creates a platform operator directly through the Kratos admin API, with no
// session, so it is the only way to create the first operator. It needs the
// server's configuration and so runs on a host that reaches the Kratos admin
// API and the database. The new operator's one-time code is emailed and also
// printed to out. Like the API, the command creates nothing when the email
// cannot be sent.
func runOperator(ctx context.Context, args []string, out io.Writer) error {
	if len(args) == 0 || args[0] != "create" {
		return errors.New(operatorUsage)
	}
	cfg, err := loadConfig()
	if err != nil {
		return fmt.Errorf("load config: %w", err)
	}

	flags := flag.NewFlagSet("operator create", flag.ContinueOnError)
	flags.SetOutput(out)
	email := flags.String("email", "", "email of the new operator (required)")
	lifetime := flags.Duration("code-lifetime", cfg.OperatorCodeLifetime, "how long the one-time code works, such as 24h")
	if err := flags.Parse(args[1:]); err != nil {
		return fmt.Errorf("%w: %s", err, operatorUsage)
	}
	if *email == "" || flags.NArg() > 0 {
		return errors.New(operatorUsage)
	}
	if *lifetime <= 0 {
		return fmt.Errorf("invalid --code-lifetime %s: use a positive duration such as 24h", *lifetime)
	}

	db, err := tenants.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer db.Close()
	client := &http.Client{Timeout: 10 * time.Second}
	sender, err := mail.NewSender(cfg.SMTPURL, cfg.MailFrom)
	if err != nil {
		return err
	}
	service := newOperatorService(identity.NewAdmin(cfg.KratosAdminURL, client), sender, db, *lifetime)

	created, err := service.Create(ctx, operator.Request{Email: *email})
	var invalid *operator.InvalidEmailError
	switch {
	case errors.As(err, &invalid):
		return fmt.Errorf("invalid --email: %s", invalid.Reason)
	case errors.Is(err, operator.ErrEmailTaken):
		return errors.New("the email already belongs to a staff member or operator: use another email")
	case err != nil:
		return err
	}

	code := created.RecoveryCode
	fmt.Fprintf(out, "Created platform operator %s and emailed them a one-time code.\n", created.Operator.ID)
	fmt.Fprintf(out, "To set a password and an authenticator app, they open the link and enter the code:\n\n")
	fmt.Fprintf(out, "  Link: %s\n  Code: %s\n\n", code.Link, code.Code)
	fmt.Fprintf(out, "The code works once and expires at %s.\n", code.ExpiresAt.UTC().Format(time.RFC3339))
	return nil
}

// newOperatorService builds the operator service that both the bootstrap
// command and the API use.
func newOperatorService(admin *identity.Admin, sender *mail.Sender, db *tenants.DB, codeLifetime time.Duration) *operator.Service {
	return operator.NewService(admin, sender, audit.NewStore(db, time.Now), codeLifetime)
}
