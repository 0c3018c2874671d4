package oryproxy

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// problem is an RFC 9457 problem details body, the error format of the
// rest of the API.
type problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
}

// Messages of the problems the proxy writes itself.
const (
	msgCodeReused  = "This code was already used to sign in. Wait for your authenticator app to show the next code, then try again."
	msgUnavailable = "The sign-in service is unavailable. Try again shortly."
)

func problemBody(status int, detail string) []byte {
	body, _ := json.Marshal(problem{Type: "about:blank", Title: http.StatusText(status), Status: status, Detail: detail})
	return body
}

func writeProblem(w http.ResponseWriter, status int, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(problemBody(status, detail))
}

// writeTooManyRequests writes the 429 for a limited submission, with
// Retry-After in whole seconds.
func writeTooManyRequests(w http.ResponseWriter, scope string, retryAfter time.Duration) {
	seconds := int(retryAfter.Round(time.Second) / time.Second)
	w.Header().Set("Retry-After", strconv.Itoa(seconds))
	writeProblem(w, http.StatusTooManyRequests, rateLimitedDetail(scope, retryAfter))
}

// rateLimitedDetail names what was limited without revealing whether the
// account exists, because identifiers are counted whether or not an
// identity has them.
func rateLimitedDetail(scope string, retryAfter time.Duration) string {
	var limited string
	switch scope {
	case scopeLoginIdentifier:
		limited = "Too many sign-in attempts for this account."
	case scopeLoginIP:
		limited = "Too many sign-in attempts from your network."
	default:
		limited = "Too many code attempts."
	}
	return fmt.Sprintf("%s Try again in %s.", limited, humanWait(retryAfter))
}

func humanWait(d time.Duration) string {
	if d < time.Minute {
		seconds := int(d.Round(time.Second) / time.Second)
		if seconds == 1 {
			return "1 second"
		}
		return fmt.Sprintf("%d seconds", seconds)
	}
	minutes := int((d + time.Minute - 1) / time.Minute)
	if minutes == 1 {
		return "1 minute"
	}
	return fmt.Sprintf("%d minutes", minutes)
}
