package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/pquerna/otp/totp"

	"vetvault/tenants/tenanttest"
)

// The browser tests drive Debian's Chromium, headless, through the web UI on
// the real stack. `infra/scripts/stack.sh services` installs Chromium.

const (
	chromiumPath = "/usr/bin/chromium"
	// browserAddr is where the server must listen, and browserURL is where
	// the browser must open it, because Kratos's configuration sends browsers
	// to http://localhost:8080 after every self-service step and its
	// WebAuthn relying party id is localhost. localhost must resolve to
	// 127.0.0.1 on the test machine.
	browserAddr = "127.0.0.1:8080"
	browserURL  = "http://localhost:8080"
	// browserTimeout bounds one browser test from Chromium's start to its
	// last check.
	browserTimeout = 60 * time.Second
)

// startBrowserServer serves the whole VetVault handler on browserAddr for
// the test and returns browserURL. It skips the test when another process
// holds the port.
func startBrowserServer(t *testing.T) string {
	t.Helper()
	base, _ := startBrowserServerWithDB(t)
	return base
}

// startBrowserServerWithDB is startBrowserServer that also returns the
// server's database, for tests that check what the server wrote.
func startBrowserServerWithDB(t *testing.T) (string, *tenanttest.Database) {
	t.Helper()
	listener, err := net.Listen("tcp", browserAddr)
	if errors.Is(err, syscall.EADDRINUSE) {
		t.Skipf("skipped: %s is taken by another process, and Kratos redirects browsers to %s, so the browser test cannot run its own server there", browserAddr, browserURL)
	}
	if err != nil {
		t.Fatalf("listen on %s: %v", browserAddr, err)
	}

	t.Setenv("VETVAULT_ENV", "dev")
	cfg, err := loadConfig()
	if err != nil {
		listener.Close()
		t.Fatalf("load config: %v", err)
	}
	db := tenanttest.New(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	handler, err := newHandler(cfg, db.App, newSessionCache(cfg, db.App, log), log)
	if err != nil {
		listener.Close()
		t.Fatalf("build handler: %v", err)
	}
	server := &httptest.Server{Listener: listener, Config: &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}}
	server.Start()
	t.Cleanup(server.Close)
	return browserURL, db
}

// tab is a Chromium tab under test. Its listener records what the pages
// report as broken: uncaught exceptions, and console errors from scripts or
// from the Content-Security-Policy. Failed HTTP requests are left out,
// because the UI expects responses such as 401 from /v1/me. It also records
// the URL of the page, which a failing step reports.
type tab struct {
	ctx context.Context

	mu       sync.Mutex
	problems []string
	url      string
}

func (b *tab) addProblem(problem string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.problems = append(b.problems, problem)
}

func (b *tab) setURL(url string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.url = url
}

func (b *tab) currentURL() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.url
}

// newBrowser starts a headless Chromium with a fresh profile and returns its
// tab, whose context ends after browserTimeout. The flags keep Chromium from
// reaching Google's hosts in the background.
func newBrowser(t *testing.T) *tab {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("Chromium not found at %s: run infra/scripts/stack.sh services, which installs it (%v)", chromiumPath, err)
	}
	options := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(1280, 900),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), options...)
	t.Cleanup(cancelAlloc)
	tabCtx, cancelTab := chromedp.NewContext(allocCtx)
	t.Cleanup(cancelTab)
	ctx, cancel := context.WithTimeout(tabCtx, browserTimeout)
	t.Cleanup(cancel)

	browser := &tab{ctx: ctx}
	err := chromedp.Listen(ctx, func(event any) {
		switch event := event.(type) {
		case *page.EventFrameNavigated:
			if event.Frame.ParentID == "" {
				browser.setURL(event.Frame.URL)
			}
		case *runtime.EventExceptionThrown:
			details := event.ExceptionDetails
			text := details.Text
			if details.Exception != nil && details.Exception.Description != "" {
				text = details.Exception.Description
			}
			browser.addProblem("exception: " + text + " at " + details.URL)
		case *cdplog.EventEntryAdded:
			entry := event.Entry
			if entry.Level == cdplog.EntryLevelError && entry.Source != cdplog.EntrySourceNetwork {
				browser.addProblem(string(entry.Source) + ": " + entry.Text + " at " + entry.URL)
			}
		}
	})
	if err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	return browser
}

// step runs browser actions and fails the test with the step's name and the
// page's URL when one of them fails or times out.
func step(t *testing.T, browser *tab, name string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(browser.ctx, actions...); err != nil {
		t.Fatalf("%s: %v (page: %s)", name, err, browser.currentURL())
	}
}

func read[T any](t *testing.T, browser *tab, name string, action chromedp.Action[T]) T {
	t.Helper()
	value, err := chromedp.Run(browser.ctx, action)
	if err != nil {
		t.Fatalf("%s: %v (page: %s)", name, err, browser.currentURL())
	}
	return value
}

// saveScreenshot writes the PNG that capture takes to the temporary
// directory, where it stays after the test for a person to look at.
func saveScreenshot(t *testing.T, browser *tab, name string, capture chromedp.Action[[]byte]) {
	t.Helper()
	checkNoStrayText(t, browser, name)
	png := read(t, browser, "screenshot "+name, capture)
	path := filepath.Join(os.TempDir(), name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatalf("write screenshot: %v", err)
	}
	t.Logf("screenshot: %s", path)
}

// strayText matches what a renderer prints when it appends a missing value.
var strayText = regexp.MustCompile(`\b(null|undefined|NaN|\[object Object\])\b`)

// checkNoStrayText fails the test when the visible text of the page shows a
// missing value, such as "null" printed for a node without messages.
func checkNoStrayText(t *testing.T, browser *tab, page string) {
	t.Helper()
	text := read(t, browser, "read the page text", chromedp.Evaluate[string](`document.body.innerText`))
	if match := strayText.FindString(text); match != "" {
		t.Errorf("%s: got %q in the page text, want no missing values shown", page, match)
	}
}

func checkNoPageProblems(t *testing.T, browser *tab) {
	t.Helper()
	browser.mu.Lock()
	problems := append([]string(nil), browser.problems...)
	browser.mu.Unlock()
	for _, problem := range problems {
		t.Errorf("page reported a problem: got %q, want none", problem)
	}
}

func TestBrowserOwnerSignsUpWithTOTP(t *testing.T) {
	base := startBrowserServer(t)
	browser := newBrowser(t)
	email := "owner-browser-" + strings.ToLower(rand.Text()[:10]) + "@vetvault.test"
	password := rand.Text()

	step(t, browser, "open the home page signed out",
		chromedp.Navigate(base+"/"),
		chromedp.Click(chromedp.CSS(`a[href="/.ory/self-service/registration/browser"]`)),
	)
	step(t, browser, "registration step 1: profile",
		chromedp.WaitVisible(chromedp.CSS(`input[name="traits.email"]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name="traits.email"]`), email),
		chromedp.SendKeys(chromedp.CSS(`input[name="traits.name"]`), "Asha Rao"),
		chromedp.Click(chromedp.CSS(`button[name="method"][value="profile"]`)),
	)
	step(t, browser, "registration step 2: password",
		chromedp.WaitVisible(chromedp.CSS(`input[name="password"]`)),
	)
	saveScreenshot(t, browser, "vetvault-browser-registration.png", chromedp.FullScreenshot(100))
	if got := read(t, browser, "read the registration step", chromedp.Text(chromedp.CSS(".step"))); !strings.Contains(got, "Step 2 of 2") {
		t.Errorf("registration step after the profile: got %q, want it to contain %q", got, "Step 2 of 2")
	}
	step(t, browser, "registration step 2: submit the password",
		chromedp.SendKeys(chromedp.CSS(`input[name="password"]`), password),
		chromedp.Click(chromedp.CSS(`button[name="method"][value="password"]`)),
	)

	step(t, browser, "home page asks for a second factor",
		chromedp.WaitVisible(chromedp.CSS(`[data-state="enrol-second-factor"]`)),
		chromedp.Click(chromedp.ID("enrol-link")),
	)
	step(t, browser, "settings page shows the TOTP QR code and secret",
		chromedp.WaitVisible(chromedp.CSS(`[data-node-id="totp_secret_key"] code`)),
		chromedp.WaitVisible(chromedp.CSS(`img.qr`)),
	)
	qr := read(t, browser, "read the QR code", chromedp.AttributeValue(chromedp.CSS(`img.qr`), "src"))
	if !strings.HasPrefix(qr.Value, "data:image/png;base64,") {
		t.Errorf("QR code src: got %.40q, want a data:image/png URL", qr.Value)
	}
	secret := strings.TrimSpace(read(t, browser, "read the TOTP secret", chromedp.Text(chromedp.CSS(`[data-node-id="totp_secret_key"] code`))))
	code, err := totp.GenerateCode(secret, time.Now())
	if err != nil {
		t.Fatalf("compute TOTP code from secret of %d characters: %v", len(secret), err)
	}
	saveScreenshot(t, browser, "vetvault-browser-settings.png", chromedp.FullScreenshot(100))
	step(t, browser, "enrol TOTP",
		chromedp.SendKeys(chromedp.CSS(`input[name="totp_code"]`), code),
		chromedp.Click(chromedp.CSS(`button[name="method"][value="totp"]`)),
		chromedp.WaitVisible(chromedp.CSS(`.message.success`)),
	)
	step(t, browser, "generate recovery codes",
		chromedp.Click(chromedp.CSS(`button[name="lookup_secret_regenerate"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-node-id="lookup_secret_codes"] li`)),
	)
	codes := read(t, browser, "count the recovery codes", chromedp.Evaluate[int](`document.querySelectorAll('[data-node-id="lookup_secret_codes"] li').length`))
	if codes != 12 {
		t.Errorf("recovery codes shown: got %d, want 12", codes)
	}
	saveScreenshot(t, browser, "vetvault-browser-recovery-codes.png", chromedp.Screenshot(chromedp.CSS(`form[data-group="lookup_secret"]`)))
	step(t, browser, "confirm the recovery codes",
		chromedp.Click(chromedp.CSS(`button[name="lookup_secret_confirm"]`)),
		chromedp.WaitVisible(chromedp.CSS(`button[name="lookup_secret_reveal"]`)),
	)

	step(t, browser, "home page shows the AAL2 session",
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.CSS(`[data-state="aal2"]`)),
	)
	// A script on the page posts with the session cookie, as a later UI
	// screen would. The home page must then list the clinic with its role.
	created := read(t, browser, "create a clinic", chromedp.Evaluate[int](`fetch("/v1/clinics", {
		method: "POST",
		headers: {"Content-Type": "application/json"},
		body: JSON.stringify({name: "Koramangala Animal Clinic", branch_name: "Koramangala"}),
	}).then((response) => response.status)`, chromedp.EvalAwaitPromise))
	if created != http.StatusCreated {
		t.Fatalf("POST /v1/clinics from the browser: got status %d, want %d", created, http.StatusCreated)
	}
	step(t, browser, "home page lists the clinic",
		chromedp.Reload(),
		chromedp.WaitVisible(chromedp.CSS(`.clinics li`)),
	)
	home := read(t, browser, "read the home page", chromedp.Text(chromedp.ID("app")))
	for _, want := range []string{email, "AAL2", "Your clinics", "Koramangala Animal Clinic", "owner"} {
		if !strings.Contains(home, want) {
			t.Errorf("home page: got %q, want it to contain %q", home, want)
		}
	}
	saveScreenshot(t, browser, "vetvault-browser-home.png", chromedp.FullScreenshot(100))

	step(t, browser, "sign out",
		chromedp.WaitVisible(chromedp.ID("nav-sign-out")),
		chromedp.Click(chromedp.ID("nav-sign-out")),
		chromedp.WaitVisible(chromedp.CSS(`input[name="identifier"]`)),
	)
	step(t, browser, "request a recovery code by email",
		chromedp.Click(chromedp.CSS(`a[href="/.ory/self-service/recovery/browser"]`)),
		chromedp.WaitVisible(chromedp.CSS(`input[name="email"]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name="email"]`), email),
		chromedp.Click(chromedp.CSS(`button[name="method"][value="code"]`)),
		chromedp.WaitVisible(chromedp.CSS(`input[name="code"]`)),
	)
	saveScreenshot(t, browser, "vetvault-browser-recovery.png", chromedp.FullScreenshot(100))
	// The marker on the old page distinguishes it from the reloaded one.
	// "Resend code" must submit although the required code input is empty.
	step(t, browser, "resend the recovery code",
		chromedp.Evaluate[chromedp.Void](`document.body.dataset.previousPage = "true"`),
		chromedp.Click(chromedp.CSS(`button[name="email"]`)),
		chromedp.WaitVisible(chromedp.CSS(`body:not([data-previous-page]) input[name="code"]`)),
	)
	step(t, browser, "sign in with the password",
		chromedp.Navigate(base+"/.ory/self-service/login/browser"),
		chromedp.WaitVisible(chromedp.CSS(`input[name="identifier"]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name="identifier"]`), email),
		chromedp.SendKeys(chromedp.CSS(`input[name="password"]`), password),
		chromedp.Click(chromedp.CSS(`button[name="method"][value="password"]`)),
		// Kratos sends an identity with a second factor straight on to the
		// aal2 login.
		chromedp.WaitVisible(chromedp.CSS(`input[name="totp_code"]`)),
	)
	saveScreenshot(t, browser, "vetvault-browser-login-aal2.png", chromedp.FullScreenshot(100))
	step(t, browser, "home page says the second factor is pending",
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.CSS(`[data-state="second-factor-pending"]`)),
		chromedp.Click(chromedp.ID("aal2-link")),
		chromedp.WaitVisible(chromedp.CSS(`input[name="totp_code"]`)),
	)
	// The code of the next time step differs from the one used at enrolment.
	// Kratos v1.3.1 accepts it, because it validates with pquerna/otp's
	// default skew of one step.
	next, err := totp.GenerateCode(secret, time.Now().Add(30*time.Second))
	if err != nil {
		t.Fatalf("compute TOTP code: %v", err)
	}
	step(t, browser, "sign in with the TOTP code",
		chromedp.SendKeys(chromedp.CSS(`input[name="totp_code"]`), next),
		chromedp.Click(chromedp.CSS(`button[name="method"][value="totp"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-state="aal2"]`)),
	)
	checkNoPageProblems(t, browser)
}

func TestBrowserFlowMessages(t *testing.T) {
	base := startBrowserServer(t)
	browser := newBrowser(t)
	unknownFlow := "00000000-0000-4000-8000-000000000000"

	tests := []struct {
		name    string
		actions []chromedp.Action[chromedp.Void]
		// shown is the element that must appear, and want the text the
		// page must then contain. The page's URL must not contain urlLacks
		// when it is set.
		shown, want, urlLacks string
	}{
		{
			name: "Kratos error is shown by id",
			// Kratos serves a fixed sample error under the id stub:500.
			actions: []chromedp.Action[chromedp.Void]{chromedp.Navigate(base + "/error?id=stub:500")},
			shown:   `#app .message.error`,
			want:    "This is a stub error.",
		},
		{
			name:    "error page without id",
			actions: []chromedp.Action[chromedp.Void]{chromedp.Navigate(base + "/error")},
			shown:   `#app .message.error`,
			want:    "No error id was given.",
		},
		{
			name:     "unknown flow starts a new one",
			actions:  []chromedp.Action[chromedp.Void]{chromedp.Navigate(base + "/login?flow=" + unknownFlow)},
			shown:    `input[name="identifier"]`,
			want:     "Sign in",
			urlLacks: unknownFlow,
		},
		{
			name:    "verification asks for the email address",
			actions: []chromedp.Action[chromedp.Void]{chromedp.Navigate(base + "/.ory/self-service/verification/browser")},
			shown:   `input[name="email"]`,
			want:    "Verify your email address",
		},
		{
			name: "failed sign-in shows the flow message",
			actions: []chromedp.Action[chromedp.Void]{
				chromedp.Navigate(base + "/.ory/self-service/login/browser"),
				chromedp.SendKeys(chromedp.CSS(`input[name="identifier"]`), "nobody-"+strings.ToLower(rand.Text()[:8])+"@vetvault.test"),
				chromedp.SendKeys(chromedp.CSS(`input[name="password"]`), rand.Text()),
				chromedp.Click(chromedp.CSS(`button[name="method"][value="password"]`)),
			},
			shown: `.messages .message.error`,
			want:  "Sign in",
		},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			step(t, browser, test.name, append(test.actions, chromedp.WaitVisible(chromedp.CSS(test.shown)))...)
			got := read(t, browser, "read the page", chromedp.Text(chromedp.ID("app")))
			if !strings.Contains(got, test.want) {
				t.Errorf("page text: got %q, want it to contain %q", got, test.want)
			}
			if test.urlLacks != "" {
				location := read(t, browser, "read the location", chromedp.Location())
				if strings.Contains(location, test.urlLacks) {
					t.Errorf("location: got %q, want no %q in it", location, test.urlLacks)
				}
			}
			checkNoStrayText(t, browser, test.name)
		})
	}
	checkNoPageProblems(t, browser)
}

func TestBrowserAPIReference(t *testing.T) {
	base := startBrowserServer(t)
	browser := newBrowser(t)

	operations := countOperations(t, base+"/openapi.json")
	step(t, browser, "open /docs",
		chromedp.Navigate(base+"/docs"),
		chromedp.WaitVisible(chromedp.CSS(`article.op`)),
	)
	listed := read(t, browser, "count the operations", chromedp.Evaluate[int](`document.querySelectorAll("article.op").length`))
	if listed != operations {
		t.Errorf("operations on /docs: got %d, want %d as in /openapi.json", listed, operations)
	}
	reference := read(t, browser, "read /docs", chromedp.Text(chromedp.ID("docs")))
	for _, want := range []string{"/v1/clinics/{clinicID}/appointments", "Book an appointment", "pet_parent_phone", "Problem details"} {
		if !strings.Contains(reference, want) {
			t.Errorf("/docs: got no %q in the page, want it listed", want)
		}
	}
	if strings.Contains(reference, "unresolved reference") {
		t.Errorf("/docs: got an unresolved $ref, want every reference resolved")
	}
	saveScreenshot(t, browser, "vetvault-browser-docs.png", chromedp.CaptureScreenshot())
	saveScreenshot(t, browser, "vetvault-browser-docs-booking.png", chromedp.Screenshot(chromedp.ID("op-book-appointment")))
	checkNoPageProblems(t, browser)
}

// countOperations returns how many operations the OpenAPI document at url
// declares.
func countOperations(t *testing.T, url string) int {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	response, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer response.Body.Close()
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.NewDecoder(response.Body).Decode(&doc); err != nil {
		t.Fatalf("decode %s: %v", url, err)
	}
	count := 0
	for _, item := range doc.Paths {
		for method := range item {
			switch method {
			case "get", "put", "post", "patch", "delete", "head", "options", "trace":
				count++
			}
		}
	}
	return count
}
