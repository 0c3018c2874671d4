package staff

import (
	"context"
	"errors"
	"fmt"
	"net/mail"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"vetvault/identity"
	"vetvault/services/audit"
	mailer "vetvault/services/mail"
	"vetvault/tenants"
)

// Invite is a request to give a person a role in a clinic, optionally at one
// branch.
type Invite struct {
	Email    string
	Role     string
	BranchID uuid.UUID // uuid.Nil for the whole clinic
}

// Invitation is a sent invitation.
type Invitation struct {
	ID         uuid.UUID
	ClinicID   uuid.UUID
	IdentityID uuid.UUID
	Email      string
	Role       identity.Role
	BranchID   uuid.UUID
	// NewAccount is true when the invitee had no password yet and was sent
	// a one-time code; false when an existing login was given the role.
	NewAccount bool
	ExpiresAt  time.Time
}

const maxEmailLength = 320

func (in Invite) validate() (string, identity.Role, error) {
	address, err := mail.ParseAddress(in.Email)
	if err != nil || address.Name != "" || len(address.Address) > maxEmailLength {
		return "", "", &InvalidInviteError{Field: "email", Message: "must be a plain email address such as name@example.com"}
	}
	role, err := identity.ParseRole(in.Role)
	if err != nil {
		return "", "", &InvalidInviteError{Field: "role", Message: err.Error()}
	}
	if role == identity.RoleOwner && in.BranchID != uuid.Nil {
		return "", "", &InvalidInviteError{Field: "branch_id", Message: "an owner is granted for the whole clinic: omit branch_id"}
	}
	return identity.NormaliseEmail(address.Address), role, nil
}

// Invite gives the invitee the role in clinicID, at one branch when
// in.BranchID is set, and emails them.
//
// An email without a Kratos identity gets a new staff identity and a
// one-time recovery code that lets them set a password. An existing staff
// login (a locum who works for another clinic) just gains the role. The
// membership, the invitation, their audit events and the outbox row of the
// Keto relationship commit together, and Keto gets the relationship right
// after the commit. The email is sent before the commit, so a failed email
// leaves nothing behind but an unused identity.
func (s *Service) Invite(ctx context.Context, clinicID uuid.UUID, actor Actor, in Invite) (Invitation, error) {
	email, role, err := in.validate()
	if err != nil {
		return Invitation{}, err
	}
	if role == identity.RoleOwner {
		owner, err := s.isOwner(ctx, clinicID, actor.IdentityID)
		if err != nil {
			return Invitation{}, err
		}
		if !owner {
			return Invitation{}, ErrOwnersOnly
		}
	}

	invitee, err := s.directory.FindByEmail(ctx, email)
	if errors.Is(err, identity.ErrIdentityNotFound) {
		invitee, err = s.directory.Create(ctx, identity.SchemaStaff, email)
		if errors.Is(err, identity.ErrIdentityExists) {
			// Another request created it in the meantime.
			invitee, err = s.directory.FindByEmail(ctx, email)
		}
	}
	if err != nil {
		return Invitation{}, fmt.Errorf("find or create invitee: %w", err)
	}
	if invitee.SchemaID != identity.SchemaStaff {
		return Invitation{}, ErrOperatorEmail
	}

	id, err := uuid.NewV7()
	if err != nil {
		return Invitation{}, fmt.Errorf("generate invitation id: %w", err)
	}
	invitation := Invitation{
		ID: id, ClinicID: clinicID, IdentityID: invitee.ID, Email: email, Role: role,
		BranchID: in.BranchID, NewAccount: !invitee.HasPassword,
		ExpiresAt: s.now().Add(s.cfg.InvitationLifetime),
	}

	err = s.outbox.InClinic(ctx, clinicID, func(tx pgx.Tx, changes *tenants.Changes) error {
		clinicName, err := s.addMembership(ctx, tx, invitation, actor)
		if err != nil {
			return err
		}
		changes.Write(tenants.Grant{IdentityID: invitee.ID, Role: role, BranchID: in.BranchID}.Relationship(clinicID))
		return s.sendInvitation(ctx, invitation, clinicName)
	})
	if err != nil {
		return Invitation{}, fmt.Errorf("invite to clinic %s: %w", clinicID, err)
	}
	return invitation, nil
}

const uniqueViolation = "23505"
const foreignKeyViolation = "23503"

// addMembership writes the membership, the invitation and their audit
// events in tx, and returns the clinic's name for the email.
func (s *Service) addMembership(ctx context.Context, tx pgx.Tx, in Invitation, actor Actor) (string, error) {
	var clinicName string
	if err := tx.QueryRow(ctx, `SELECT name FROM clinics WHERE tenant_id = $1`, in.ClinicID).Scan(&clinicName); err != nil {
		return "", fmt.Errorf("read clinic name: %w", err)
	}

	var branch any
	if in.BranchID != uuid.Nil {
		branch = in.BranchID
	}
	// A deactivated membership with the same role at the same place is
	// reactivated.
	tag, err := tx.Exec(ctx, `INSERT INTO memberships (tenant_id, identity_id, role, email, branch_id)
		VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (tenant_id, identity_id, role, branch_id, custom_role_id) DO UPDATE
		SET active = true, email = EXCLUDED.email
		WHERE NOT memberships.active`,
		in.ClinicID, in.IdentityID, string(in.Role), in.Email, branch)
	if err := translate(err); err != nil {
		return "", err
	}
	if tag.RowsAffected() == 0 {
		return "", ErrAlreadyMember
	}

	_, err = tx.Exec(ctx, `INSERT INTO invitations
		(tenant_id, id, identity_id, email, role, branch_id, invited_by, new_account, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		in.ClinicID, in.ID, in.IdentityID, in.Email, string(in.Role), branch, actor.IdentityID, in.NewAccount, in.ExpiresAt)
	if err := translate(err); err != nil {
		return "", err
	}

	detail := map[string]string{"role": string(in.Role)}
	if in.BranchID != uuid.Nil {
		detail["branch_id"] = in.BranchID.String()
	}
	for _, action := range []identity.Action{identity.ActionInvitationSent, identity.ActionRoleGranted} {
		if err := audit.Append(ctx, tx, s.event(action, actor, in.ClinicID, in.IdentityID, detail)); err != nil {
			return "", err
		}
	}
	return clinicName, nil
}

func translate(err error) error {
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &pgErr) && pgErr.Code == foreignKeyViolation:
		return ErrBranchNotFound
	case errors.As(err, &pgErr) && pgErr.Code == uniqueViolation:
		return ErrAlreadyMember
	default:
		return fmt.Errorf("write membership: %w", err)
	}
}

// sendInvitation emails the invitee: a one-time code for a new account, a
// notice for an existing login.
func (s *Service) sendInvitation(ctx context.Context, in Invitation, clinicName string) error {
	message := mailer.Message{To: in.Email}
	if !in.NewAccount {
		message.Subject = fmt.Sprintf(addedSubject, clinicName)
		message.Body = fmt.Sprintf(addedBody, in.Role, clinicName, s.cfg.AppURL)
		return s.mailer.Send(ctx, message)
	}

	code, err := s.directory.CreateRecoveryCode(ctx, in.IdentityID, s.cfg.InvitationLifetime)
	if err != nil {
		return err
	}
	ist := time.FixedZone("IST", 5*60*60+30*60)
	message.Subject = fmt.Sprintf(inviteNewSubject, clinicName)
	message.Body = fmt.Sprintf(inviteNewBody, clinicName, in.Role, code.Link, code.Code, code.ExpiresAt.In(ist).Format("2 Jan 2006 15:04"))
	return s.mailer.Send(ctx, message)
}
