// Package operator creates platform operators: the people at VetVault who
// onboard clinics and manage plans. An operator is a Kratos identity of the
// operator schema. It is never a clinic member, and the API refuses operator
// sessions on every clinic operation.
//
// Kratos self-service registration only creates staff identities, so this
// package, through the Kratos admin API, is the only way operators come to
// exist: the bootstrap command creates the first, and operators create the rest.
package operator

import (
	"context"
	"errors"
	"fmt"
	netmail "net/mail"
	"strings"
	"time"

	"github.com/google/uuid"

	"vetvault/identity"
	"vetvault/services/mail"
)

// ErrEmailTaken is returned when the email already belongs to an identity,
// staff or operator. An existing identity is never turned into an operator,
// nor an operator into staff: one person who needs both uses two emails.
//
// NOTE: this includes an operator whose code expired before they set a
// password, so VetVault cannot send them a new code. Until a resend issues a
// fresh recovery code to an operator without a password, delete the identity
// through the Kratos admin API and create the operator again.
var ErrEmailTaken = errors.New("an identity with this email already exists")

// InvalidEmailError is returned for an email that cannot be an operator's
// login identifier. Reason is safe to show to the caller.
type InvalidEmailError struct {
	Reason string
}

func (e *InvalidEmailError) Error() string {
	return "invalid email: " + e.Reason
}

// DefaultCodeLifetime is how long a new operator's recovery code stays valid
// unless the service is given another lifetime.
const DefaultCodeLifetime = 24 * time.Hour

// Limits of the "email" format check that Kratos v1.3.1 applies to the
// email trait (github.com/ory/jsonschema/v3 v3.0.8, isEmail). Kratos would
// reject an address past them, so it is rejected here first, as invalid
// input rather than as a Kratos failure.
const (
	maxEmailLength       = 254
	maxLocalPartLength   = 64
	maxDomainLength      = 253
	maxDomainLabelLength = 63
)

// IdentityAdmin is the part of the Kratos admin API (identity.Admin) that
// creating an operator needs.
type IdentityAdmin interface {
	FindByEmail(ctx context.Context, email string) (identity.Identity, error)
	Create(ctx context.Context, schemaID, email string) (identity.Identity, error)
	CreateRecoveryCode(ctx context.Context, id uuid.UUID, lifetime time.Duration) (identity.RecoveryCode, error)
	Delete(ctx context.Context, id uuid.UUID) error
}

// MailSender delivers one email (mail.Sender).
type MailSender interface {
	Send(ctx context.Context, message mail.Message) error
}

// Service creates operators.
type Service struct {
	admin        IdentityAdmin
	mail         MailSender
	audit        identity.EventRecorder
	codeLifetime time.Duration
}

// NewService returns a service that creates identities through admin, mails
// recovery codes through sender and records each creation in audit. Recovery
// codes expire after codeLifetime, or DefaultCodeLifetime when it is zero or
// negative.
func NewService(admin IdentityAdmin, sender MailSender, audit identity.EventRecorder, codeLifetime time.Duration) *Service {
	if codeLifetime <= 0 {
		codeLifetime = DefaultCodeLifetime
	}
	return &Service{admin: admin, mail: sender, audit: audit, codeLifetime: codeLifetime}
}

// Request describes the operator to create and who requested it.
type Request struct {
	Email string
	// CreatedBy is the operator who sent the request, or uuid.Nil for the
	// bootstrap command, which runs on the server host without a session.
	CreatedBy uuid.UUID
	// IP and UserAgent describe the request for the audit trail; both are
	// empty for the bootstrap command.
	IP        string
	UserAgent string
}

// Created is a new operator and the recovery code that was mailed to them.
// The code is a credential: only the bootstrap command shows it, on the
// terminal of the person who ran it, and the HTTP API never returns it.
type Created struct {
	Operator     identity.Identity
	RecoveryCode identity.RecoveryCode
}

// Create creates an operator identity for request.Email with no credentials,
// issues a one-time recovery code, mails it with its link, and records
// operator.created in the audit trail. The new operator opens the link, enters
// the code, and then sets a password and enrols a second factor.
//
// Create succeeds entirely or leaves no operator behind: when the code, the
// email or the audit record fails, it deletes the new identity again, so the
// same email can be retried. An audit failure comes after the email went
// out, so the recipient then holds a code for a deleted identity, which
// Kratos rejects.
func (s *Service) Create(ctx context.Context, request Request) (Created, error) {
	email := identity.NormaliseEmail(request.Email)
	if err := validateEmail(email); err != nil {
		return Created{}, err
	}

	_, err := s.admin.FindByEmail(ctx, email)
	switch {
	case err == nil:
		return Created{}, ErrEmailTaken
	case !errors.Is(err, identity.ErrIdentityNotFound):
		return Created{}, fmt.Errorf("create operator: %w", err)
	}

	created, err := s.admin.Create(ctx, identity.SchemaOperator, email)
	if err != nil {
		// Kratos rejects a second identity with the same identifier, so a
		// failure here may be a concurrent request that created it first.
		if _, findErr := s.admin.FindByEmail(ctx, email); findErr == nil {
			return Created{}, ErrEmailTaken
		}
		return Created{}, fmt.Errorf("create operator: %w", err)
	}

	code, err := s.admin.CreateRecoveryCode(ctx, created.ID, s.codeLifetime)
	if err != nil {
		return Created{}, s.undo(ctx, created.ID, fmt.Errorf("create operator %s: %w", created.ID, err))
	}
	if err := s.mail.Send(ctx, welcomeMessage(email, code)); err != nil {
		err = &recipientHiddenError{err: err, recipient: email}
		return Created{}, s.undo(ctx, created.ID, fmt.Errorf("create operator %s: mail recovery code: %w", created.ID, err))
	}
	err = s.audit.Record(ctx, identity.Event{
		Action:    identity.ActionOperatorCreated,
		ActorID:   request.CreatedBy,
		TargetID:  created.ID,
		IP:        request.IP,
		UserAgent: request.UserAgent,
	})
	if err != nil {
		return Created{}, s.undo(ctx, created.ID, fmt.Errorf("create operator %s: record audit event: %w", created.ID, err))
	}
	return Created{Operator: created, RecoveryCode: code}, nil
}

// undo deletes a half-created operator and returns cause together with any
// failure to delete. The deletion runs even when ctx was cancelled, because
// a client that hung up must not leave an identity behind.
//
// NOTE: if the deletion fails too, the identity stays without credentials and
// the email stays taken; delete it through the Kratos admin API
// (DELETE /admin/identities/{id}) before creating the operator again.
func (s *Service) undo(ctx context.Context, id uuid.UUID, cause error) error {
	if err := s.admin.Delete(context.WithoutCancel(ctx), id); err != nil && !errors.Is(err, identity.ErrIdentityNotFound) {
		return errors.Join(cause, fmt.Errorf("undo: delete operator %s: %w", id, err))
	}
	return cause
}

// recipientHiddenError replaces the recipient's address in a mail error's
// text, because SMTP servers often echo it ("550 <…>: Recipient address
// rejected") and the error ends up in logs, which must carry no emails.
type recipientHiddenError struct {
	err       error
	recipient string
}

func (e *recipientHiddenError) Error() string {
	return strings.ReplaceAll(e.err.Error(), e.recipient, "[recipient]")
}

func (e *recipientHiddenError) Unwrap() error {
	return e.err
}

func welcomeMessage(to string, code identity.RecoveryCode) mail.Message {
	return mail.Message{
		To:      to,
		Subject: welcomeSubject,
		Body:    fmt.Sprintf(welcomeBody, code.Link, code.Code, code.ExpiresAt.UTC().Format(expiryLayout)),
	}
}

// validateEmail accepts a bare address (no display name, no angle brackets)
// whose domain is an ASCII host name, within the limits above.
func validateEmail(email string) error {
	if email == "" {
		return &InvalidEmailError{Reason: "email is required"}
	}
	if len(email) > maxEmailLength {
		return &InvalidEmailError{Reason: fmt.Sprintf("email is longer than %d characters", maxEmailLength)}
	}
	address, err := netmail.ParseAddress(email)
	if err != nil || address.Name != "" || address.Address != email {
		return &InvalidEmailError{Reason: "email must be a plain address such as name@example.com"}
	}
	at := strings.LastIndexByte(email, '@')
	if at > maxLocalPartLength {
		return &InvalidEmailError{Reason: fmt.Sprintf("the part before @ is longer than %d characters", maxLocalPartLength)}
	}
	if !validDomain(email[at+1:]) {
		return &InvalidEmailError{Reason: "the domain after @ must be a host name of letters, digits, hyphens and dots"}
	}
	return nil
}

// validDomain reports whether domain is a host name as RFC 1123 defines it:
// dot-separated labels of ASCII letters, digits and hyphens, none starting
// or ending with a hyphen.
func validDomain(domain string) bool {
	if domain == "" || len(domain) > maxDomainLength {
		return false
	}
	for _, label := range strings.Split(domain, ".") {
		if label == "" || len(label) > maxDomainLabelLength || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}
