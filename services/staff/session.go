package staff

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"vetvault/identity"
	"vetvault/services/audit"
)

// Sessions returns the active sessions of the actor's own login.
func (s *Service) Sessions(ctx context.Context, actor Actor) ([]identity.SessionInfo, error) {
	sessions, err := s.directory.ListSessions(ctx, actor.IdentityID)
	if err != nil {
		return nil, fmt.Errorf("list own sessions: %w", err)
	}
	return sessions, nil
}

// RevokeSession ends one of the actor's own sessions. A session of anyone
// else is reported as not found.
func (s *Service) RevokeSession(ctx context.Context, actor Actor, sessionID string) error {
	sessions, err := s.directory.ListSessions(ctx, actor.IdentityID)
	if err != nil {
		return fmt.Errorf("list own sessions: %w", err)
	}
	owned := false
	for _, session := range sessions {
		owned = owned || session.ID == sessionID
	}
	if !owned {
		return ErrSessionNotFound
	}

	if err := s.directory.RevokeSession(ctx, sessionID); err != nil {
		return err
	}
	if err := s.sessions.Invalidate(ctx, actor.IdentityID); err != nil {
		return fmt.Errorf("invalidate cached sessions: %w", err)
	}
	detail := map[string]string{"current": fmt.Sprint(sessionID == actor.SessionID)}
	event := s.event(identity.ActionSessionRevoked, actor, uuid.Nil, actor.IdentityID, detail)
	return s.db.InPlatform(ctx, func(tx pgx.Tx) error { return audit.Append(ctx, tx, event) })
}
