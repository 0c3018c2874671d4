// Package audit appends events to the audit trail: platform security events
// (logins, factor changes, revocations) and clinic events (invitations, role
// changes). The runtime database role may insert these rows but never
// change or delete them.
package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"vetvault/identity"
	"vetvault/tenants"
)

// Limits that match the columns' checks; longer values are cut, not rejected,
// because losing an audit entry to a long user agent would be worse.
const (
	maxIP        = 64
	maxUserAgent = 512
)

// Store writes audit events.
type Store struct {
	db  *tenants.DB
	now func() time.Time
}

// NewStore returns a store on db; now stamps events that carry no time.
func NewStore(db *tenants.DB, now func() time.Time) *Store {
	return &Store{db: db, now: now}
}

// Record appends event in its own transaction: to the clinic's audit events
// when it names a clinic, otherwise to the platform's security events. Use
// Append instead when the event belongs to a change made in a transaction.
func (s *Store) Record(ctx context.Context, event identity.Event) error {
	if event.At.IsZero() {
		event.At = s.now()
	}
	if event.ClinicID != uuid.Nil {
		return s.db.InClinic(ctx, event.ClinicID, func(tx pgx.Tx) error { return Append(ctx, tx, event) })
	}
	return s.db.InPlatform(ctx, func(tx pgx.Tx) error { return Append(ctx, tx, event) })
}

// Append writes event inside tx, so the event commits or rolls back with the
// change it describes. A clinic event needs tx to be scoped to that clinic.
func Append(ctx context.Context, tx pgx.Tx, event identity.Event) error {
	if event.At.IsZero() {
		return fmt.Errorf("append audit event %s: no time", event.Action)
	}
	detail, err := json.Marshal(event.Detail)
	if err != nil {
		return fmt.Errorf("encode audit detail: %w", err)
	}
	if event.Detail == nil {
		detail = []byte("{}")
	}
	ip, userAgent := truncate(event.IP, maxIP), truncate(event.UserAgent, maxUserAgent)

	if event.ClinicID != uuid.Nil {
		id, err := uuid.NewV7()
		if err != nil {
			return fmt.Errorf("generate audit event id: %w", err)
		}
		_, err = tx.Exec(ctx, `INSERT INTO audit_events
			(tenant_id, id, action, actor_id, target_id, ip, user_agent, detail, occurred_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
			event.ClinicID, id, string(event.Action), nullable(event.ActorID), nullable(event.TargetID),
			ip, userAgent, detail, event.At)
		if err != nil {
			return fmt.Errorf("insert clinic audit event %s: %w", event.Action, err)
		}
		return nil
	}

	var identifierHash any
	if event.IdentifierHash != "" {
		identifierHash = event.IdentifierHash
	}
	_, err = tx.Exec(ctx, `INSERT INTO security_events
		(action, actor_id, target_id, identifier_hash, ip, user_agent, detail, occurred_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		string(event.Action), nullable(event.ActorID), nullable(event.TargetID), identifierHash,
		ip, userAgent, detail, event.At)
	if err != nil {
		return fmt.Errorf("insert security event %s: %w", event.Action, err)
	}
	return nil
}

func nullable(id uuid.UUID) any {
	if id == uuid.Nil {
		return nil
	}
	return id
}

func truncate(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	s = s[:limit]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}
