package main

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestCanonicalHostRedirectsListenAddress(t *testing.T) {
	cfg := config{Addr: "127.0.0.1:8080", AppURL: "http://localhost:8080"}
	page := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	handler := canonicalHost(cfg, page)

	tests := []struct {
		name, method, host string
		wantStatus         int
		wantLocation       string
	}{
		{"listen address goes to the app URL", http.MethodGet, "127.0.0.1:8080", http.StatusFound, "http://localhost:8080/login?flow=abc"},
		{"app URL is served", http.MethodGet, "localhost:8080", http.StatusOK, ""},
		{"other hosts are served", http.MethodGet, "127.0.0.1:41234", http.StatusOK, ""},
		{"posts are not redirected", http.MethodPost, "127.0.0.1:8080", http.StatusOK, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			request := httptest.NewRequest(tt.method, "http://"+tt.host+"/login?flow=abc", nil)
			recorder := httptest.NewRecorder()
			handler.ServeHTTP(recorder, request)
			if recorder.Code != tt.wantStatus {
				t.Errorf("status %d, want %d", recorder.Code, tt.wantStatus)
			}
			if got := recorder.Header().Get("Location"); got != tt.wantLocation {
				t.Errorf("Location %q, want %q", got, tt.wantLocation)
			}
		})
	}
}
