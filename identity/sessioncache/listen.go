package sessioncache

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Channel is the PostgreSQL notification channel of session revocations.
// A payload is an identity id, or payloadAll for every session.
const Channel = "vetvault_sessions_revoked"

const payloadAll = "*"

// ApplicationName is the application_name of the listener's connection, so
// pg_stat_activity shows which backend is the listener.
const ApplicationName = "vetvault-session-cache"

// Listener timing. A connection that dies without a TCP reset (a network
// partition) delivers nothing and reports nothing, so the listener pings
// it after each heartbeatInterval without a notification. Such a loss is
// seen within heartbeatInterval+pingTimeout. Reconnects back off from
// minReconnectDelay to maxReconnectDelay, and meanwhile the cache passes
// every request through to the verifier.
const (
	heartbeatInterval = 5 * time.Second
	pingTimeout       = 3 * time.Second
	connectTimeout    = 5 * time.Second
	minReconnectDelay = 100 * time.Millisecond
	maxReconnectDelay = 5 * time.Second
)

// Run listens for revocations on Channel until ctx is cancelled and drops
// the entries each notification names. It keeps reconnecting after a lost
// connection, and while it is not connected the cache is empty and serves
// nothing from memory. Run returns nil when ctx is cancelled, and an error only
// for a database URL that cannot be parsed.
func (c *Cache) Run(ctx context.Context) error {
	connConfig, err := pgx.ParseConfig(c.databaseURL)
	if err != nil {
		return fmt.Errorf("parse database URL of the session cache listener: %w", err)
	}
	connConfig.RuntimeParams["application_name"] = ApplicationName
	if c.ttl <= 0 {
		// Nothing is cached, so there is nothing to invalidate.
		<-ctx.Done()
		return nil
	}

	delay := minReconnectDelay
	for failures := 0; ; {
		connected, err := c.listen(ctx, connConfig)
		if ctx.Err() != nil {
			return nil
		}
		if connected {
			failures, delay = 0, minReconnectDelay
		}
		failures++
		// Log the first failures, then one a minute at most, so a long
		// outage does not flood the log.
		if failures <= 3 || failures%12 == 0 {
			c.log.WarnContext(ctx, "session cache listener disconnected; passing sessions through to Kratos until it reconnects",
				"err", err, "failures", failures, "retry_in", delay)
		}

		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
		delay = min(2*delay, maxReconnectDelay)
	}
}

// listen holds one connection until it fails or ctx is cancelled. connected
// reports whether it got as far as LISTEN.
func (c *Cache) listen(ctx context.Context, connConfig *pgx.ConnConfig) (connected bool, err error) {
	connectCtx, cancel := context.WithTimeout(ctx, connectTimeout)
	conn, err := pgx.ConnectConfig(connectCtx, connConfig)
	cancel()
	if err != nil {
		return false, fmt.Errorf("connect: %w", err)
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = conn.Close(closeCtx)
	}()

	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{Channel}.Sanitize()); err != nil {
		return false, fmt.Errorf("listen on %s: %w", Channel, err)
	}
	c.setListening(true)
	defer c.setListening(false)
	c.log.InfoContext(ctx, "session cache listening for revocations", "channel", Channel)

	for {
		waitCtx, cancel := context.WithTimeout(ctx, heartbeatInterval)
		notification, err := conn.WaitForNotification(waitCtx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return true, nil
		case err == nil:
			c.apply(ctx, notification.Payload)
		case waitCtx.Err() != nil && !conn.IsClosed():
			pingCtx, cancel := context.WithTimeout(ctx, pingTimeout)
			err := conn.Ping(pingCtx)
			cancel()
			if err != nil && ctx.Err() == nil {
				return true, fmt.Errorf("heartbeat: %w", err)
			}
		default:
			return true, fmt.Errorf("wait for notification: %w", err)
		}
	}
}

// apply drops what a notification names. A payload that is neither "*" nor
// an identity id clears everything, because a revocation it was meant to
// carry must not be missed.
func (c *Cache) apply(ctx context.Context, payload string) {
	if payload == payloadAll {
		c.dropAll()
		return
	}
	identityID, err := uuid.Parse(payload)
	if err != nil {
		c.log.WarnContext(ctx, "session cache got a notification that is not an identity id; clearing the cache",
			"channel", Channel, "err", err)
		c.dropAll()
		return
	}
	c.dropIdentity(identityID)
}
