// Package web serves the browser UI from files embedded in the binary.
package web

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var static embed.FS

// Handler serves the UI and the API reference. Kratos sends browsers to
// /login, /registration, /settings, /recovery, /verification and /error with
// a flow or error id, and each of those paths serves the same page, which
// renders the flow. /docs serves the API reference, which renders
// /openapi.json in the browser from these embedded files alone, so it works
// without internet access. The API must therefore not register Huma's own
// /docs page, which loads its renderer from a CDN.
func Handler() http.Handler {
	files, err := fs.Sub(static, "static")
	if err != nil {
		// The embedded tree always has "static"; failing here is a build defect.
		panic(err)
	}
	fileServer := http.FileServerFS(files)
	mux := http.NewServeMux()
	for _, page := range []string{"/login", "/registration", "/settings", "/recovery", "/verification", "/error"} {
		mux.HandleFunc("GET "+page, func(w http.ResponseWriter, r *http.Request) {
			http.ServeFileFS(w, r, files, "index.html")
		})
	}
	mux.HandleFunc("GET /docs", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, files, "docs.html")
	})
	mux.Handle("GET /", fileServer)
	return securityHeaders(mux)
}

// securityHeaders sets headers that keep the pages from being framed or
// loading scripts from anywhere but this origin.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		next.ServeHTTP(w, r)
	})
}
