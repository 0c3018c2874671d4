package api_test

import (
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/danielgtaylor/huma/v2"

	"vetvault/services/api"
)

// TestEveryOperationDeclaresAccess fails the build of a new operation that
// lacks an access rule: each one names an audience, and each one under a
// clinic names the Keto permission it needs.
func TestEveryOperationDeclaresAccess(t *testing.T) {
	document := api.New(http.NewServeMux(), api.Deps{Log: slog.New(slog.NewTextHandler(io.Discard, nil))}).OpenAPI()
	count := 0
	for path, item := range document.Paths {
		for method, op := range map[string]*huma.Operation{
			http.MethodGet: item.Get, http.MethodPost: item.Post, http.MethodPut: item.Put,
			http.MethodPatch: item.Patch, http.MethodDelete: item.Delete,
		} {
			if op == nil {
				continue
			}
			count++
			access, ok := api.AccessOf(op)
			if !ok || access.Audience == 0 {
				t.Errorf("%s %s declares no audience", method, path)
				continue
			}
			if strings.Contains(path, "{clinicID}") && access.Permission == "" {
				t.Errorf("%s %s is under a clinic but declares no permission", method, path)
			}
		}
	}
	if count == 0 {
		t.Fatal("the OpenAPI document lists no operations")
	}
}
