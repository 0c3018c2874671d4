package pet

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"vetvault/services/audit"
	"vetvault/tenants"
)

// sweepBatch bounds how many expired referrals one SweepOnce ends, so one
// run stays short. The next run takes the rest.
const sweepBatch = 200

// SweepOnce ends every open referral whose expiry has passed, up to
// sweepBatch of them: it deletes the Keto relationship, marks the referral
// expired and audits it, one clinic transaction per referral. It returns
// how many it ended. A referral that fails stays due and is retried on the
// next run, and the failures are returned together.
//
// Referrals are found through referral_expiries, a platform table of ids
// and times, because the runtime role reads one clinic per transaction.
// Several servers may sweep at once: each referral is locked in its clinic
// transaction and ended by one of them.
func (s *Referrals) SweepOnce(ctx context.Context) (int, error) {
	type due struct{ referralID, clinicID uuid.UUID }
	var dues []due
	err := s.db.InPlatform(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT referral_id, clinic_id FROM referral_expiries
			WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2`, s.now(), sweepBatch)
		if err != nil {
			return fmt.Errorf("select due referrals: %w", err)
		}
		dues, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (due, error) {
			var d due
			err := row.Scan(&d.referralID, &d.clinicID)
			return d, err
		})
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("sweep referrals: %w", err)
	}

	ended := 0
	var failures []error
	for _, d := range dues {
		done, err := s.expire(ctx, d.clinicID, d.referralID)
		if err != nil {
			failures = append(failures, fmt.Errorf("expire referral %s in clinic %s: %w", d.referralID, d.clinicID, err))
			continue
		}
		if done {
			ended++
		}
	}
	return ended, errors.Join(failures...)
}

// expire ends one referral that is due, and reports whether this call ended
// it. A referral already ended, by a revocation or another sweeper, only
// loses its stale index entry.
func (s *Referrals) expire(ctx context.Context, clinicID, referralID uuid.UUID) (bool, error) {
	ended := false
	err := s.outbox.InClinic(ctx, clinicID, func(tx pgx.Tx, changes *tenants.Changes) error {
		referral, err := scanReferral(tx.QueryRow(ctx, `SELECT `+referralColumns+` FROM referrals
			WHERE tenant_id = $1 AND id = $2 FOR UPDATE`, clinicID, referralID))
		if errors.Is(err, pgx.ErrNoRows) || (err == nil && referral.EndReason != "") {
			_, err := tx.Exec(ctx, `DELETE FROM referral_expiries WHERE referral_id = $1`, referralID)
			return err
		}
		if err != nil {
			return fmt.Errorf("select referral: %w", err)
		}

		sweptAt := s.now()
		// The index copies the row's expiry, which never changes. Trusting
		// the row guards against ending a referral early if they disagree.
		if referral.ExpiresAt.After(sweptAt) {
			return nil
		}
		referral.EndedAt, referral.EndReason = referral.ExpiresAt, ReferralExpired
		if err := end(ctx, tx, changes, referral); err != nil {
			return err
		}
		detail := referralDetail(referral)
		detail["swept_at"] = sweptAt.UTC().Format(time.RFC3339)
		ended = true
		return audit.Append(ctx, tx, event(ActionReferralExpired, Actor{}, clinicID, referral.VetID, referral.ExpiresAt, detail))
	})
	return ended, err
}

// Run calls SweepOnce every interval until ctx ends. Failures are logged
// with the ids involved and retried on the next tick.
func (s *Referrals) Run(ctx context.Context, interval time.Duration) {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		ended, err := s.SweepOnce(ctx)
		if err != nil && ctx.Err() == nil {
			s.log.ErrorContext(ctx, "referral sweep failed", "err", err)
		}
		if ended > 0 {
			s.log.InfoContext(ctx, "referrals expired", "count", ended)
		}
	}
}
