package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net"
	"net/http"
	"time"
)

type requestIDKey struct{}

type clientIPKey struct{}

// ClientIPFrom returns the address of the client that sent the request, as
// WithRequestID recorded it, or "".
//
// NOTE: this is the TCP peer. Behind a load balancer it would be the
// balancer's address; a trusted X-Forwarded-For setting would fix that.
func ClientIPFrom(ctx context.Context) string {
	ip, _ := ctx.Value(clientIPKey{}).(string)
	return ip
}

// RequestIDFrom returns the id that WithRequestID gave the request, or "".
func RequestIDFrom(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

func withRequestID(message, requestID string) string {
	if requestID == "" {
		return message
	}
	return message + " (request id " + requestID + ")"
}

// WithRequestID gives every request a random id, returned in the
// X-Request-Id header and quoted in 5xx problems, records the client's
// address for the audit trail, and logs one line per request. The line carries the method, path, status and duration: never
// query strings, headers or bodies, which may hold personal data or tokens.
func WithRequestID(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started := time.Now()
		id := newRequestID()
		w.Header().Set("X-Request-Id", id)
		recorder := &statusRecorder{ResponseWriter: w, status: http.StatusOK}

		ctx := context.WithValue(r.Context(), requestIDKey{}, id)
		if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
			ctx = context.WithValue(ctx, clientIPKey{}, host)
		}
		next.ServeHTTP(recorder, r.WithContext(ctx))

		log.LogAttrs(r.Context(), slog.LevelInfo, "request",
			slog.String("method", r.Method),
			slog.String("path", r.URL.Path),
			slog.Int("status", recorder.status),
			slog.Duration("duration", time.Since(started)),
			slog.String("request_id", id))
	})
}

func newRequestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never returns an error since Go 1.24
	return hex.EncodeToString(b[:])
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(status int) {
	r.status = status
	r.ResponseWriter.WriteHeader(status)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (r *statusRecorder) Unwrap() http.ResponseWriter {
	return r.ResponseWriter
}
