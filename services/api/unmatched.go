package api

import (
	"encoding/json"
	"net/http"
	"strings"
)

// Unmatched responds to requests under /v1/ that no operation matches with
// a problem document, like every other API error: 405 with an Allow header
// when the path exists for other methods, 404 otherwise. Register it on mux
// for the pattern "/v1/"; more specific operation patterns take precedence.
func Unmatched(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var allowed []string
		for _, method := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
			probe := r.Clone(r.Context())
			probe.Method = method
			if _, pattern := mux.Handler(probe); pattern != "" && pattern != "/v1/" {
				allowed = append(allowed, method)
			}
		}

		status, detail := http.StatusNotFound, "no API operation at this path"
		if len(allowed) > 0 {
			status, detail = http.StatusMethodNotAllowed, "method not allowed here: use "+strings.Join(allowed, ", ")
			w.Header().Set("Allow", strings.Join(allowed, ", "))
		}
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]any{
			"title":  http.StatusText(status),
			"status": status,
			"detail": withRequestID(detail, RequestIDFrom(r.Context())),
		})
	})
}
