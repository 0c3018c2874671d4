package oryproxy

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"vetvault/tenants"
)

// Limit allows Attempts within any period of length Window.
type Limit struct {
	Attempts int
	Window   time.Duration
}

func (l Limit) validate(name string) error {
	if l.Attempts < 1 || l.Window < time.Second {
		return fmt.Errorf("limit %s: %d attempts per %s is invalid: allow at least 1 attempt per second or longer", name, l.Attempts, l.Window)
	}
	return nil
}

// Scopes of a limit. A scope is part of the hashed limiter key, and it
// selects the 429 problem's message about what was limited.
const (
	scopeLoginIdentifier = "login_identifier"
	scopeLoginIP         = "login_ip"
	scopeCodeFlow        = "code_flow"
	scopeCodeSession     = "code_session"
	scopeCodeIP          = "code_ip"
)

// limitKey is one counter that a submission is counted in.
type limitKey struct {
	scope string
	value string
	limit Limit
}

// hash returns the SHA-256 of the scope and value, the only form in which a
// key is stored.
func (k limitKey) hash() []byte {
	sum := sha256.Sum256([]byte(k.scope + "\x00" + k.value))
	return sum[:]
}

// countedRow names the limiter row an attempt was added to.
type countedRow struct {
	scope       string
	keyHash     []byte
	windowStart time.Time
}

// verdict is the outcome of counting one attempt.
type verdict struct {
	// limited is set when a key is over its limit, and then nothing was
	// counted.
	limited    bool
	scope      string
	retryAfter time.Duration
	counted    []countedRow
}

// limiter counts attempts in PostgreSQL, so every server instance shares
// the same counters. It estimates a sliding window from two fixed windows:
// the attempts of the current window plus those of the previous one,
// weighted by how much of it still overlaps the sliding window. That avoids
// the burst of twice the limit that plain fixed windows allow at a window
// boundary, at the cost of two rows per key.
type limiter struct {
	db  *tenants.DB
	now func() time.Time
	// retention is how long rows are kept: two of the longest window.
	retention time.Duration
	// lastSweep is the Unix time in nanoseconds of the last deletion of old
	// rows by this instance.
	lastSweep atomic.Int64
}

// sweepInterval spaces out the deletion of expired rows, which any request
// may trigger.
const sweepInterval = time.Minute

// errOverLimit rolls back the counting transaction of a limited attempt.
var errOverLimit = errors.New("over limit")

// take counts one attempt under every key, all or none: when any key is over
// its limit the transaction rolls back, so rejected attempts do not extend a
// lock-out, and the verdict names the key and when to retry.
func (l *limiter) take(ctx context.Context, keys []limitKey) (verdict, error) {
	if len(keys) == 0 {
		return verdict{}, nil
	}
	now := l.now()
	var result verdict
	err := l.db.InPlatform(ctx, func(tx pgx.Tx) error {
		for _, key := range keys {
			row, current, previous, err := count(ctx, tx, key, now)
			if err != nil {
				return err
			}
			if wait, over := overLimit(key.limit, now, row.windowStart, current, previous); over {
				result = verdict{limited: true, scope: key.scope, retryAfter: wait}
				return errOverLimit
			}
			result.counted = append(result.counted, row)
		}
		return l.sweepIfDue(ctx, tx, now)
	})
	if errors.Is(err, errOverLimit) {
		return result, nil
	}
	if err != nil {
		return verdict{}, fmt.Errorf("count sign-in attempt: %w", err)
	}
	return result, nil
}

// count adds one attempt to key's current window and returns the row, the
// window's count including this attempt, and the previous window's count.
func count(ctx context.Context, tx pgx.Tx, key limitKey, now time.Time) (countedRow, int, int, error) {
	row := countedRow{scope: key.scope, keyHash: key.hash(), windowStart: now.Truncate(key.limit.Window)}
	var current, previous int
	err := tx.QueryRow(ctx, `
		INSERT INTO login_attempts AS a (key_hash, window_start, attempts)
		VALUES ($1, $2, 1)
		ON CONFLICT (key_hash, window_start) DO UPDATE SET attempts = a.attempts + 1
		RETURNING attempts,
			COALESCE((SELECT p.attempts FROM login_attempts p WHERE p.key_hash = $1 AND p.window_start = $3), 0)`,
		row.keyHash, row.windowStart, row.windowStart.Add(-key.limit.Window),
	).Scan(&current, &previous)
	if err != nil {
		return countedRow{}, 0, 0, fmt.Errorf("count attempt under %s: %w", key.scope, err)
	}
	return row, current, previous, nil
}

// overLimit reports whether an attempt that made the current window's count
// current is over limit, and if so how long until one more attempt fits.
// The sliding estimate is previous·(1−f) + current, where f is the elapsed
// fraction of the current window.
func overLimit(limit Limit, now, windowStart time.Time, current, previous int) (time.Duration, bool) {
	window := limit.Window.Seconds()
	elapsed := now.Sub(windowStart).Seconds() / window
	estimate := float64(previous)*(1-elapsed) + float64(current)
	if estimate <= float64(limit.Attempts) {
		return 0, false
	}

	// The rejected attempt is not counted, so the window holds current-1.
	counted := float64(current - 1)
	allowed := float64(limit.Attempts)
	var wait float64
	if counted+1 <= allowed && previous > 0 {
		// The next attempt fits once the previous window has faded enough.
		wait = (1 - (allowed-counted-1)/float64(previous) - elapsed) * window
	} else {
		// It fits only in the next window, once this one has faded enough.
		wait = (1-elapsed)*window + math.Max(0, 1-(allowed-1)/counted)*window
	}
	// Rounding to milliseconds first keeps float error from adding a second.
	wait = math.Round(wait*1000) / 1000
	return time.Duration(math.Ceil(math.Max(wait, 1))) * time.Second, true
}

// refund takes back an attempt counted in row, for a login that succeeded.
func (l *limiter) refund(ctx context.Context, row countedRow) error {
	return l.db.InPlatform(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `
			UPDATE login_attempts SET attempts = attempts - 1
			WHERE key_hash = $1 AND window_start = $2 AND attempts > 0`,
			row.keyHash, row.windowStart)
		if err != nil {
			return fmt.Errorf("refund attempt under %s: %w", row.scope, err)
		}
		return nil
	})
}

// sweepIfDue deletes rows older than the retention, at most once per
// sweepInterval per instance.
func (l *limiter) sweepIfDue(ctx context.Context, tx pgx.Tx, now time.Time) error {
	last := l.lastSweep.Load()
	if now.UnixNano()-last < int64(sweepInterval) || !l.lastSweep.CompareAndSwap(last, now.UnixNano()) {
		return nil
	}
	if _, err := tx.Exec(ctx, `DELETE FROM login_attempts WHERE window_start < $1`, now.Add(-l.retention)); err != nil {
		return fmt.Errorf("delete expired sign-in attempts: %w", err)
	}
	return nil
}
