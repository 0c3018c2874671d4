package oryproxy

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"vetvault/tenants"
)

// codeRetention is how long a used TOTP code stays recorded. Kratos v1.3.1
// checks codes with pquerna/otp's totp.Validate, which allows one 30-second
// step of skew either way, so a code is accepted during at most three steps
// (90 s) and every later use falls within 90 s of the first. The extra 30 s
// covers clock differences between server instances and Kratos.
const codeRetention = 2 * time.Minute

// usedCodes records the TOTP codes that completed a sign-in, so that a code
// works once per identity even though Kratos would accept it again.
type usedCodes struct {
	db        *tenants.DB
	now       func() time.Time
	lastSweep atomic.Int64
}

// markUsed records that identityID signed in with code and reports whether
// this was the code's first use within codeRetention. The primary key makes
// two concurrent sign-ins with one code race for a single row, so at most
// one of them is first. A row older than the retention belongs to an
// earlier step that happened to show the same digits, and is taken over.
//
// Only SHA-256 of the code is stored. Anyone can reverse the hash of six
// digits, so it only keeps codes out of plain sight. The rows are worthless
// once codeRetention has passed and are deleted soon after.
func (u *usedCodes) markUsed(ctx context.Context, identityID uuid.UUID, code string) (bool, error) {
	now := u.now()
	hash := sha256.Sum256([]byte(code))
	first := false
	err := u.db.InPlatform(ctx, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `
			INSERT INTO used_totp_codes AS u (identity_id, code_hash, used_at)
			VALUES ($1, $2, $3)
			ON CONFLICT (identity_id, code_hash) DO UPDATE SET used_at = EXCLUDED.used_at
				WHERE u.used_at < $4
			RETURNING true`,
			identityID, hash[:], now, now.Add(-codeRetention),
		).Scan(&first)
		if errors.Is(err, pgx.ErrNoRows) {
			first = false
		} else if err != nil {
			return fmt.Errorf("record TOTP code use of %s: %w", identityID, err)
		}
		return u.sweepIfDue(ctx, tx, now)
	})
	return first, err
}

// sweepIfDue deletes expired rows, at most once per sweepInterval per
// instance.
func (u *usedCodes) sweepIfDue(ctx context.Context, tx pgx.Tx, now time.Time) error {
	last := u.lastSweep.Load()
	if now.UnixNano()-last < int64(sweepInterval) || !u.lastSweep.CompareAndSwap(last, now.UnixNano()) {
		return nil
	}
	if _, err := tx.Exec(ctx, `DELETE FROM used_totp_codes WHERE used_at < $1`, now.Add(-codeRetention)); err != nil {
		return fmt.Errorf("delete expired TOTP code uses: %w", err)
	}
	return nil
}
