// Package sessioncache keeps Kratos session checks off the request path: it
// caches verified sessions for a short TTL and drops them on every
// revocation the platform performs, on every server instance, through
// PostgreSQL LISTEN/NOTIFY.
//
// Staleness has two bounds. A revocation made through the platform, which
// calls Invalidate after revoking in Kratos, reaches every instance within
// one NOTIFY delivery (milliseconds on one database server). A revocation
// made outside the platform, for example an administrator revoking a session
// in Kratos directly, a logout or the revoke_active_sessions hook after a
// password change, is seen once the cached entry's TTL runs out.
//
// The cache is safe only while its listener is connected. Verify passes every
// request through to Kratos until Run has issued LISTEN, and again from the
// moment the connection is lost until it is back. A loss also clears every
// entry, because notifications sent meanwhile are gone for good.
package sessioncache

import (
	"container/list"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/singleflight"

	"vetvault/identity"
	"vetvault/tenants"
)

// DefaultTTL is how long a verified session is served from the cache.
// It is also the longest a revocation made outside the platform stays
// unseen. At 15 s, a person who clicks through the app every few seconds
// costs one whoami call per 15 s instead of one per request, and a session
// revoked in Kratos directly stops working within 15 s.
const DefaultTTL = 15 * time.Second

// DefaultMaxEntries bounds the cache at about 3 MB of sessions. A full
// cache evicts its least recently used entry, which only costs that
// session one more whoami call.
const DefaultMaxEntries = 10_000

// verifyTimeout bounds one shared verification. It outlives the request
// that started it, because other requests for the same credential wait on
// its result.
const verifyTimeout = 5 * time.Second

// Verifier checks session credentials, as identity.Sessions does against
// Kratos.
type Verifier interface {
	Verify(ctx context.Context, creds identity.Credentials) (identity.Session, error)
}

// Config configures a Cache.
type Config struct {
	// DatabaseURL is the runtime role's connection string, with which the
	// listener opens its own connection.
	DatabaseURL string
	// DB sends the NOTIFY of Invalidate and InvalidateAll.
	DB *tenants.DB
	// TTL is how long a verified session is served from memory. Zero turns
	// caching off, so every Verify goes to the verifier.
	TTL time.Duration
	// MaxEntries bounds the number of cached sessions (0: DefaultMaxEntries).
	MaxEntries int
	// Now is the clock (nil: time.Now).
	Now func() time.Time
	// Log receives listener connects, losses and reconnect failures (nil:
	// discarded).
	Log *slog.Logger
}

// Cache verifies sessions through a Verifier and keeps each verified AAL2
// session for at most its TTL, and never past the session's expiry.
// Errors are not cached: an invalid or second-factor-pending session goes to
// the verifier on every request. Code that revokes sessions calls
// Invalidate through a small interface of its own, such as
// staff.SessionInvalidator.
type Cache struct {
	verifier    Verifier
	db          *tenants.DB
	databaseURL string
	ttl         time.Duration
	maxEntries  int
	now         func() time.Time
	log         *slog.Logger
	calls       singleflight.Group

	mu sync.Mutex
	// listening is true while the listener holds a connection that has
	// issued LISTEN. Only then may entries be stored or served.
	listening bool
	// generation changes on every invalidation and listener state change.
	// A verification stores its result only if generation did not change
	// while it waited for the verifier, so a result that raced a
	// revocation is never cached.
	generation uint64
	entries    map[key]*list.Element
	// recency orders entries from most to least recently used.
	recency    *list.List
	byIdentity map[uuid.UUID]map[key]struct{}
}

// key is the SHA-256 of a credential: the raw cookie or token is never kept.
type key [sha256.Size]byte

type entry struct {
	key     key
	session identity.Session
	expires time.Time
}

// New returns a cache in front of verifier. It serves nothing from memory
// until Run is listening.
func New(verifier Verifier, cfg Config) *Cache {
	c := &Cache{
		verifier:    verifier,
		db:          cfg.DB,
		databaseURL: cfg.DatabaseURL,
		ttl:         cfg.TTL,
		maxEntries:  cfg.MaxEntries,
		now:         cfg.Now,
		log:         cfg.Log,
		entries:     map[key]*list.Element{},
		recency:     list.New(),
		byIdentity:  map[uuid.UUID]map[key]struct{}{},
	}
	if c.maxEntries <= 0 {
		c.maxEntries = DefaultMaxEntries
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.log == nil {
		c.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return c
}

// Verify returns the cached session for creds, or verifies creds with the
// verifier and caches the result if it is an AAL2 session. Concurrent misses
// for one credential share a single verifier call.
//
// Sessions below AAL2 are not cached: every API operation rejects them, and
// enrolling a second factor raises the same session to AAL2, which a cached
// copy would hide for a whole TTL.
func (c *Cache) Verify(ctx context.Context, creds identity.Credentials) (identity.Session, error) {
	if c.ttl <= 0 || (creds.Cookie == "" && creds.Token == "") {
		return c.verifier.Verify(ctx, creds)
	}
	k := keyOf(creds)
	if session, ok := c.lookup(k); ok {
		return session, nil
	}

	result := c.calls.DoChan(string(k[:]), func() (any, error) {
		generation := c.currentGeneration()
		// Followers wait on this call too, so the first caller's
		// cancellation must not end it.
		callCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), verifyTimeout)
		defer cancel()
		session, err := c.verifier.Verify(callCtx, creds)
		if err != nil {
			return identity.Session{}, err
		}
		c.store(k, session, generation)
		return session, nil
	})
	select {
	case r := <-result:
		if r.Err != nil {
			return identity.Session{}, r.Err
		}
		return r.Val.(identity.Session), nil
	case <-ctx.Done():
		return identity.Session{}, fmt.Errorf("verify session: %w", ctx.Err())
	}
}

// VerifyUncached verifies creds with the verifier even when they are cached,
// and replaces the cached entry with the result. A caller uses it when a
// cached field may have moved on in Kratos, such as AuthenticatedAt after a
// step-up sign-in that kept the same session token.
//
// NOTE: the API's privileged-window check reads AuthenticatedAt through
// Verify, so an API client that steps up and keeps its token is still
// refused for up to one TTL. Retrying that check once with VerifyUncached
// before returning the step-up problem would fix it. Browsers are not
// affected: Kratos v1.3.1 puts a fresh nonce into every session cookie it
// issues (session/manager_http.go), so a new sign-in means a new cache key.
func (c *Cache) VerifyUncached(ctx context.Context, creds identity.Credentials) (identity.Session, error) {
	if c.ttl <= 0 || (creds.Cookie == "" && creds.Token == "") {
		return c.verifier.Verify(ctx, creds)
	}
	k := keyOf(creds)
	c.mu.Lock()
	c.removeLocked(k)
	generation := c.generation
	c.mu.Unlock()

	session, err := c.verifier.Verify(ctx, creds)
	if err != nil {
		return identity.Session{}, err
	}
	c.store(k, session, generation)
	return session, nil
}

// Len returns the number of cached sessions, expired ones included until
// they are next looked up or evicted.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// Listening reports whether the listener is connected, which is when the
// cache serves entries.
func (c *Cache) Listening() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.listening
}

func keyOf(creds identity.Credentials) key {
	// The prefix keeps a token and a cookie with the same bytes apart.
	if creds.Token != "" {
		return sha256.Sum256([]byte("token:" + creds.Token))
	}
	return sha256.Sum256([]byte("cookie:" + creds.Cookie))
}

func (c *Cache) lookup(k key) (identity.Session, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.listening {
		return identity.Session{}, false
	}
	element, ok := c.entries[k]
	if !ok {
		return identity.Session{}, false
	}
	cached := element.Value.(*entry)
	if !c.now().Before(cached.expires) {
		c.removeLocked(k)
		return identity.Session{}, false
	}
	c.recency.MoveToFront(element)
	return cached.session, true
}

func (c *Cache) currentGeneration() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.generation
}

// store caches session until the earlier of now+TTL and the session's
// expiry, unless the cache was invalidated or lost its listener since
// generation was read.
func (c *Cache) store(k key, session identity.Session, generation uint64) {
	if session.AAL != identity.AAL2 {
		return
	}
	now := c.now()
	expires := now.Add(c.ttl)
	if session.ExpiresAt.Before(expires) {
		expires = session.ExpiresAt
	}
	if !expires.After(now) {
		return
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.listening || c.generation != generation {
		return
	}
	c.removeLocked(k)
	for len(c.entries) >= c.maxEntries {
		c.removeLocked(c.recency.Back().Value.(*entry).key)
	}
	c.entries[k] = c.recency.PushFront(&entry{key: k, session: session, expires: expires})
	keys := c.byIdentity[session.IdentityID]
	if keys == nil {
		keys = map[key]struct{}{}
		c.byIdentity[session.IdentityID] = keys
	}
	keys[k] = struct{}{}
}

func (c *Cache) removeLocked(k key) {
	element, ok := c.entries[k]
	if !ok {
		return
	}
	identityID := element.Value.(*entry).session.IdentityID
	c.recency.Remove(element)
	delete(c.entries, k)
	if keys := c.byIdentity[identityID]; keys != nil {
		delete(keys, k)
		if len(keys) == 0 {
			delete(c.byIdentity, identityID)
		}
	}
}

// dropIdentity removes every cached session of identityID.
func (c *Cache) dropIdentity(identityID uuid.UUID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.generation++
	for k := range c.byIdentity[identityID] {
		c.removeLocked(k)
	}
}

// clearLocked removes every entry. The caller holds mu.
func (c *Cache) clearLocked() {
	c.generation++
	clear(c.entries)
	clear(c.byIdentity)
	c.recency.Init()
}

func (c *Cache) dropAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.clearLocked()
}

// setListening turns serving from memory on or off. Either way the cache
// starts empty: turning off clears it because notifications may have been
// missed, and turning on finds it already cleared.
func (c *Cache) setListening(listening bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.listening = listening
	c.clearLocked()
}

// Invalidate drops the cached sessions of identityID on this instance at
// once, and on every instance listening on the same database through
// NOTIFY. Call it after the revocation has taken effect in Kratos: a
// verification between Invalidate and the revocation would cache the
// session again.
//
// An error means the NOTIFY was not sent: other instances may then serve
// the identity's sessions for up to one TTL.
func (c *Cache) Invalidate(ctx context.Context, identityID uuid.UUID) error {
	c.dropIdentity(identityID)
	if err := c.notify(ctx, identityID.String()); err != nil {
		return fmt.Errorf("invalidate sessions of identity %s: %w", identityID, err)
	}
	return nil
}

// InvalidateAll drops every cached session on every instance, for example
// after revoking sessions in bulk.
func (c *Cache) InvalidateAll(ctx context.Context) error {
	c.dropAll()
	if err := c.notify(ctx, payloadAll); err != nil {
		return fmt.Errorf("invalidate all sessions: %w", err)
	}
	return nil
}

func (c *Cache) notify(ctx context.Context, payload string) error {
	return c.db.InPlatform(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_notify($1, $2)", Channel, payload); err != nil {
			return fmt.Errorf("notify %s: %w", Channel, err)
		}
		return nil
	})
}
