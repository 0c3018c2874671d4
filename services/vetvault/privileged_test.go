package main

import (
	"context"
	"crypto/rand"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"vetvault/identity/selfservice"
)

// startShortWindowKratos runs a second Kratos on the shared database whose
// privileged session window is 3 s instead of 15 minutes, so a test can see
// an old session refused without waiting. It listens on 127.0.0.1:4533
// (public) and 4534 (admin) and stops when the test ends.
func startShortWindowKratos(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatalf("find repository root: %v", err)
	}
	binary := filepath.Join(root, "bin", "kratos")
	if _, err := os.Stat(binary); err != nil {
		t.Fatalf("%s missing: run the tests with `go tool task test`, which builds it", binary)
	}
	dsn := os.Getenv("KRATOS_DSN")
	if dsn == "" {
		t.Fatal("KRATOS_DSN is not set: run the tests with `go tool task test`, which loads infra/dev.env")
	}

	ctx, cancel := context.WithCancel(context.Background())
	logFile, err := os.Create(filepath.Join(t.TempDir(), "kratos.log"))
	if err != nil {
		t.Fatalf("create log: %v", err)
	}
	cmd := exec.CommandContext(ctx, binary, "serve", "--config", "infra/kratos/kratos.yml", "--dev", "--sqa-opt-out")
	cmd.Dir = root
	cmd.Env = append(os.Environ(),
		"DSN="+dsn,
		"SERVE_PUBLIC_PORT=4533",
		"SERVE_ADMIN_PORT=4534",
		"SELFSERVICE_FLOWS_SETTINGS_PRIVILEGED_SESSION_MAX_AGE=3s",
	)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start second Kratos: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		logFile.Close()
	})

	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		response, err := http.Get("http://127.0.0.1:4534/admin/health/ready")
		if err == nil {
			response.Body.Close()
			if response.StatusCode == http.StatusOK {
				return "http://127.0.0.1:4533"
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	log, _ := os.ReadFile(logFile.Name())
	t.Fatalf("second Kratos not ready within 30 s; log:\n%s", log)
	return ""
}

func TestFactorRemovalNeedsRecentSignIn(t *testing.T) {
	publicURL := startShortWindowKratos(t)
	flows := selfservice.New(publicURL, &http.Client{Timeout: 15 * time.Second})
	ctx := context.Background()
	email := newEmail("factor")
	password := rand.Text()

	token, err := flows.Register(ctx, email, password)
	if err != nil {
		t.Fatalf("register: %v", err)
	}
	secret, err := flows.EnrolTOTP(ctx, token)
	if err != nil {
		t.Fatalf("enrol TOTP: %v", err)
	}

	time.Sleep(4 * time.Second) // past the 3 s privileged window
	err = flows.RemoveTOTP(ctx, token)
	if err == nil {
		t.Fatal("removing TOTP with an old session succeeded, want it refused")
	}
	if !strings.Contains(err.Error(), "session_refresh_required") && !strings.Contains(err.Error(), "refresh") {
		t.Errorf("refusal = %v, want Kratos to ask for a refreshed sign-in", err)
	}

	fresh, err := flows.Reauthenticate(ctx, token, email, password, secret, time.Now().Add(30*time.Second))
	if err != nil {
		t.Fatalf("sign in again: %v", err)
	}
	if err := flows.RemoveTOTP(ctx, fresh); err != nil {
		t.Errorf("removing TOTP right after signing in again: %v", err)
	}
}
