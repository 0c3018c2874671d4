package main

import (
	"context"
	"crypto/rand"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"
	"github.com/pquerna/otp/totp"
)

// addSecurityKey gives the browser's tab a virtual USB security key
// (CTAP2) through Chrome DevTools' WebAuthn domain. The key confirms user
// presence and verification at once, as if a person touched it, and Chromium
// shows no WebAuthn dialog.
func addSecurityKey(t *testing.T, browser *tab) webauthn.AuthenticatorID {
	t.Helper()
	enableUI := false
	_, err := chromedp.Call(browser.ctx, webauthn.Enable, webauthn.EnableParams{EnableUI: &enableUI})
	if err != nil {
		t.Fatalf("enable the WebAuthn domain: %v", err)
	}
	added, err := chromedp.Call(browser.ctx, webauthn.AddVirtualAuthenticator, webauthn.AddVirtualAuthenticatorParams{
		Options: &webauthn.VirtualAuthenticatorOptions{
			Protocol:                    webauthn.AuthenticatorProtocolCtap2,
			Transport:                   webauthn.AuthenticatorTransportUsb,
			HasResidentKey:              true,
			HasUserVerification:         true,
			IsUserVerified:              true,
			AutomaticPresenceSimulation: true,
		},
	})
	if err != nil {
		t.Fatalf("add a virtual authenticator: %v", err)
	}
	return added.AuthenticatorID
}

// countKeyCredentials returns how many credentials the virtual key holds.
func countKeyCredentials(t *testing.T, browser *tab, key webauthn.AuthenticatorID) int {
	t.Helper()
	got, err := chromedp.Call(browser.ctx, webauthn.GetCredentials, webauthn.GetCredentialsParams{AuthenticatorID: key})
	if err != nil {
		t.Fatalf("list the credentials of the virtual authenticator: %v", err)
	}
	return len(got.Credentials)
}

// dismissDialogs records every JavaScript dialog as a page problem and
// dismisses it. Kratos's webauthn.js reports a failed WebAuthn ceremony with
// alert(), which would otherwise hold the page until the test times out.
func dismissDialogs(t *testing.T, browser *tab) {
	t.Helper()
	dialogs := chromedp.Events(browser.ctx, page.JavascriptDialogOpening)
	go func() {
		for event, err := range dialogs {
			if err != nil {
				return
			}
			browser.addProblem("dialog: " + event.Message)
			go func() {
				// The page is gone when the test has ended, so the error is
				// not reported.
				_ = chromedp.Do(browser.ctx, chromedp.Func(func(ctx context.Context, target *chromedp.Target) error {
					_, err := cdp.Call(ctx, target, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: false})
					return err
				}))
			}()
		}
	}()
}

func TestBrowserSecurityKeySecondFactor(t *testing.T) {
	base, db := startBrowserServerWithDB(t)
	browser := newBrowser(t)
	dismissDialogs(t, browser)
	key := addSecurityKey(t, browser)
	email := "owner-key-" + strings.ToLower(rand.Text()[:10]) + "@vetvault.test"
	password := rand.Text()

	step(t, browser, "registration step 1: profile",
		chromedp.Navigate(base+"/.ory/self-service/registration/browser"),
		chromedp.WaitVisible(chromedp.CSS(`input[name="traits.email"]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name="traits.email"]`), email),
		chromedp.SendKeys(chromedp.CSS(`input[name="traits.name"]`), "Meera Iyer"),
		chromedp.Click(chromedp.CSS(`button[name="method"][value="profile"]`)),
	)
	step(t, browser, "registration step 2: password",
		chromedp.WaitVisible(chromedp.CSS(`input[name="password"]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name="password"]`), password),
		chromedp.Click(chromedp.CSS(`button[name="method"][value="password"]`)),
	)
	step(t, browser, "home page asks for a second factor",
		chromedp.WaitVisible(chromedp.CSS(`[data-state="enrol-second-factor"]`)),
		chromedp.Click(chromedp.ID("enrol-link")),
	)

	step(t, browser, "settings page offers a security key",
		chromedp.WaitVisible(chromedp.CSS(`button[name="webauthn_register_trigger"]`)),
		chromedp.WaitVisible(chromedp.CSS(`input[name="webauthn_register_displayname"]`)),
	)
	// The page must run Kratos's WebAuthn through listeners attached by
	// app.js, with no inline handler, which the Content-Security-Policy
	// would block.
	inline := read(t, browser, "count inline handlers", chromedp.Evaluate[int](`document.querySelectorAll("[onclick], [onload]").length`))
	if inline != 0 {
		t.Errorf("elements with inline handlers on the settings page: got %d, want 0", inline)
	}
	saveScreenshot(t, browser, "vetvault-webauthn-settings.png", chromedp.Screenshot(chromedp.CSS(`form[data-group="webauthn"]`)))
	step(t, browser, "add a security key without a name",
		chromedp.Click(chromedp.CSS(`button[name="webauthn_register_trigger"]`)),
	)
	// The click handler validates the form before it starts the ceremony,
	// and the browser then focuses the invalid input.
	focused := read(t, browser, "read the focused element", chromedp.Evaluate[string](`document.activeElement.name || document.activeElement.tagName`))
	if focused != "webauthn_register_displayname" {
		t.Errorf("focused element after pressing Add without a key name: got %q, want the name input, because Kratos rejects a key without a name", focused)
	}
	if got := countKeyCredentials(t, browser, key); got != 0 {
		t.Fatalf("credentials on the virtual key after pressing Add without a name: got %d, want 0", got)
	}
	step(t, browser, "add the security key",
		chromedp.SendKeys(chromedp.CSS(`input[name="webauthn_register_displayname"]`), "Desk key"),
		chromedp.Click(chromedp.CSS(`button[name="webauthn_register_trigger"]`)),
		// Kratos lists an added key with a button that removes it.
		chromedp.WaitVisible(chromedp.CSS(`button[name="webauthn_remove"]`)),
	)
	if got := countKeyCredentials(t, browser, key); got != 1 {
		t.Errorf("credentials on the virtual key after adding it: got %d, want 1", got)
	}
	listed := read(t, browser, "read the security key form", chromedp.Text(chromedp.CSS(`form[data-group="webauthn"]`)))
	if !strings.Contains(listed, "Desk key") {
		t.Errorf("security key form after adding a key: got %q, want it to name %q", listed, "Desk key")
	}
	saveScreenshot(t, browser, "vetvault-webauthn-key-added.png", chromedp.FullScreenshot(100))

	// An authenticator app next to the key, so the second-factor page offers
	// both.
	step(t, browser, "settings page shows the TOTP secret",
		chromedp.WaitVisible(chromedp.CSS(`[data-node-id="totp_secret_key"] code`)),
	)
	secret := strings.TrimSpace(read(t, browser, "read the TOTP secret", chromedp.Text(chromedp.CSS(`[data-node-id="totp_secret_key"] code`))))
	code, err := totp.GenerateCode(secret, time.Now())
	if err != nil {
		t.Fatalf("compute TOTP code from secret of %d characters: %v", len(secret), err)
	}
	step(t, browser, "enrol TOTP",
		chromedp.SendKeys(chromedp.CSS(`input[name="totp_code"]`), code),
		chromedp.Click(chromedp.CSS(`button[name="method"][value="totp"]`)),
		chromedp.WaitVisible(chromedp.CSS(`button[name="totp_unlink"]`)),
	)

	step(t, browser, "sign out",
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.CSS(`[data-state="aal2"]`)),
		chromedp.WaitVisible(chromedp.ID("nav-sign-out")),
		chromedp.Click(chromedp.ID("nav-sign-out")),
		chromedp.WaitVisible(chromedp.CSS(`input[name="identifier"]`)),
	)
	step(t, browser, "sign in with the password",
		chromedp.SendKeys(chromedp.CSS(`input[name="identifier"]`), email),
		chromedp.SendKeys(chromedp.CSS(`input[name="password"]`), password),
		chromedp.Click(chromedp.CSS(`button[name="method"][value="password"]`)),
		chromedp.WaitVisible(chromedp.CSS(`button[name="webauthn_login_trigger"]`)),
		chromedp.WaitVisible(chromedp.CSS(`input[name="totp_code"]`)),
	)
	useKey := read(t, browser, "read the security key button", chromedp.Text(chromedp.CSS(`button[name="webauthn_login_trigger"]`)))
	if useKey != "Use security key" {
		t.Errorf("security key button at the second factor: got %q, want %q", useKey, "Use security key")
	}
	pending := read(t, browser, "call GET /v1/me before the second factor", meStatus)
	if pending != http.StatusForbidden {
		t.Errorf("GET /v1/me after the password alone: got status %d, want %d", pending, http.StatusForbidden)
	}
	saveScreenshot(t, browser, "vetvault-webauthn-login-aal2.png", chromedp.FullScreenshot(100))

	step(t, browser, "complete the second factor with the security key",
		chromedp.Click(chromedp.CSS(`button[name="webauthn_login_trigger"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-state="aal2"]`)),
	)
	me := read(t, browser, "call GET /v1/me", meStatus)
	if me != http.StatusOK {
		t.Errorf("GET /v1/me after the security key: got status %d, want %d", me, http.StatusOK)
	}
	// The session lists the factors of this sign-in, and the last must be
	// the key at AAL2 rather than the TOTP enrolled beside it.
	methods := read(t, browser, "read the session's methods", chromedp.Evaluate[string](`fetch("/.ory/sessions/whoami", {headers: {Accept: "application/json"}})
		.then((response) => response.json())
		.then((session) => session.authentication_methods.map((m) => m.method + ":" + m.aal).join(" "))`, chromedp.EvalAwaitPromise))
	if !strings.HasSuffix(methods, "webauthn:aal2") || strings.Contains(methods, "totp") {
		t.Errorf("authentication methods of the session: got %q, want the password and then webauthn:aal2", methods)
	}
	home := read(t, browser, "read the home page", chromedp.Text(chromedp.ID("app")))
	for _, want := range []string{email, "AAL2"} {
		if !strings.Contains(home, want) {
			t.Errorf("home page after the security key: got %q, want it to contain %q", home, want)
		}
	}
	saveScreenshot(t, browser, "vetvault-webauthn-home.png", chromedp.FullScreenshot(100))

	// The marker on the old page distinguishes it from the reloaded one.
	// Removing the key must submit although the new key's name is empty.
	step(t, browser, "remove the security key",
		chromedp.Navigate(base+"/.ory/self-service/settings/browser"),
		chromedp.WaitVisible(chromedp.CSS(`button[name="webauthn_remove"]`)),
		chromedp.Evaluate[chromedp.Void](`document.body.dataset.previousPage = "true"`),
		chromedp.Click(chromedp.CSS(`button[name="webauthn_remove"]`)),
		chromedp.WaitVisible(chromedp.CSS(`body:not([data-previous-page]) .message.success`)),
	)
	keys := read(t, browser, "count the listed keys", chromedp.Evaluate[int](`document.querySelectorAll('button[name="webauthn_remove"]').length`))
	if keys != 0 {
		t.Errorf("security keys listed after removing the only one: got %d, want 0", keys)
	}
	checkNoPageProblems(t, browser)

	// The forms name their method, so the /.ory/ proxy audits every step.
	for _, want := range []struct{ action, detail string }{
		{"factor.changed", `{"change": "added", "method": "webauthn"}`},
		{"login.succeeded", `{"aal": "aal2", "method": "webauthn"}`},
		{"factor.changed", `{"change": "removed", "method": "webauthn"}`},
	} {
		var n int
		err := db.Owner.QueryRow(context.Background(),
			`SELECT count(*) FROM security_events WHERE action = $1 AND detail = $2::jsonb`, want.action, want.detail).Scan(&n)
		if err != nil {
			t.Fatalf("count security events: %v", err)
		}
		if n != 1 {
			t.Errorf("security events %s %s: got %d, want 1", want.action, want.detail, n)
		}
	}
}

// meStatus calls GET /v1/me from the page, with its cookies, and returns
// the response status.
var meStatus = chromedp.Evaluate[int](`fetch("/v1/me", {headers: {Accept: "application/json"}}).then((response) => response.status)`, chromedp.EvalAwaitPromise)
