package selfservice

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"time"

	"github.com/pquerna/otp/totp"
)

// Browser drives Kratos's browser flows the way a web page does, with a
// cookie jar for the CSRF and session cookies, but asking for JSON instead of
// following redirects to the UI. Invitation emails carry browser flows, so
// tests of invitations need this rather than the API flows of Client.
type Browser struct {
	base string // Kratos public URL, for example http://127.0.0.1:8080/.ory
	http *http.Client
}

// NewBrowser returns a browser with an empty cookie jar.
func NewBrowser(publicURL string, timeout time.Duration) (*Browser, error) {
	jar, err := cookiejar.New(nil)
	if err != nil {
		return nil, fmt.Errorf("create cookie jar: %w", err)
	}
	client := &http.Client{
		Jar:     jar,
		Timeout: timeout,
		// Kratos redirects browsers to the UI. The JSON responses contain all
		// a test needs, so redirects are not followed.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return &Browser{base: strings.TrimSuffix(publicURL, "/"), http: client}, nil
}

// HTTP returns the browser's client, whose cookie jar holds the session
// cookie once a flow has signed in.
func (b *Browser) HTTP() *http.Client {
	return b.http
}

// flow is the part of a Kratos self-service flow the browser reads.
type flow struct {
	ID    string `json:"id"`
	State string `json:"state"`
	UI    struct {
		Nodes []struct {
			Attributes struct {
				ID    string          `json:"id"`
				Name  string          `json:"name"`
				Value json.RawMessage `json:"value"`
				Text  *struct {
					Context map[string]any `json:"context"`
				} `json:"text"`
			} `json:"attributes"`
		} `json:"nodes"`
		Messages []struct {
			Text string `json:"text"`
		} `json:"messages"`
	} `json:"ui"`
}

func (f flow) csrfToken() string {
	for _, node := range f.UI.Nodes {
		if node.Attributes.Name == "csrf_token" {
			var token string
			_ = json.Unmarshal(node.Attributes.Value, &token)
			return token
		}
	}
	return ""
}

// RecoveryFlowID extracts the flow id from a recovery link.
func RecoveryFlowID(link string) (string, error) {
	parsed, err := url.Parse(link)
	if err != nil {
		return "", fmt.Errorf("parse recovery link: %w", err)
	}
	id := parsed.Query().Get("flow")
	if id == "" {
		return "", errors.New("recovery link has no flow id")
	}
	return id, nil
}

// Recover submits a recovery code to the flow flowID. Kratos then signs the
// browser in (at AAL1) and opens a settings flow, whose id it returns.
func (b *Browser) Recover(ctx context.Context, flowID, code string) (string, error) {
	var recovery flow
	if err := b.getJSON(ctx, "/self-service/recovery/flows?id="+url.QueryEscape(flowID), &recovery); err != nil {
		return "", fmt.Errorf("get recovery flow: %w", err)
	}
	body := map[string]string{"method": "code", "code": code, "csrf_token": recovery.csrfToken()}
	status, data, err := b.postJSON(ctx, "/self-service/recovery?flow="+url.QueryEscape(flowID), body)
	if err != nil {
		return "", fmt.Errorf("submit recovery code: %w", err)
	}
	// Kratos responds to a JSON request with a continue_with item that opens
	// the settings UI.
	var done struct {
		ContinueWith []struct {
			Action string `json:"action"`
			Flow   struct {
				ID string `json:"id"`
			} `json:"flow"`
		} `json:"continue_with"`
	}
	if status == http.StatusOK && json.Unmarshal(data, &done) == nil {
		for _, next := range done.ContinueWith {
			if next.Action == "show_settings_ui" && next.Flow.ID != "" {
				return next.Flow.ID, nil
			}
		}
	}
	return "", fmt.Errorf("submit recovery code: status %d: %s", status, data)
}

// settingsFlow returns the settings flow flowID, or a new one when flowID is "".
func (b *Browser) settingsFlow(ctx context.Context, flowID string) (flow, error) {
	var settings flow
	path := "/self-service/settings/browser"
	if flowID != "" {
		path = "/self-service/settings/flows?id=" + url.QueryEscape(flowID)
	}
	if err := b.getJSON(ctx, path, &settings); err != nil {
		return flow{}, fmt.Errorf("get settings flow: %w", err)
	}
	return settings, nil
}

// SetPassword sets the signed-in identity's password in the settings flow
// flowID ("" opens a new one).
func (b *Browser) SetPassword(ctx context.Context, flowID, password string) error {
	settings, err := b.settingsFlow(ctx, flowID)
	if err != nil {
		return err
	}
	body := map[string]string{"method": "password", "password": password, "csrf_token": settings.csrfToken()}
	status, data, err := b.postJSON(ctx, "/self-service/settings?flow="+url.QueryEscape(settings.ID), body)
	if err != nil {
		return fmt.Errorf("set password: %w", err)
	}
	if status != http.StatusOK {
		return fmt.Errorf("set password: status %d: %s", status, data)
	}
	return nil
}

// EnrolTOTP adds a TOTP authenticator to the signed-in identity and returns
// its secret. Kratos raises the session to AAL2.
func (b *Browser) EnrolTOTP(ctx context.Context) (string, error) {
	settings, err := b.settingsFlow(ctx, "")
	if err != nil {
		return "", err
	}
	secret := ""
	for _, node := range settings.UI.Nodes {
		if node.Attributes.ID == "totp_secret_key" && node.Attributes.Text != nil {
			secret, _ = node.Attributes.Text.Context["secret"].(string)
		}
	}
	if secret == "" {
		return "", errors.New("settings flow has no TOTP secret")
	}
	code, err := totp.GenerateCode(secret, time.Now())
	if err != nil {
		return "", fmt.Errorf("compute TOTP code: %w", err)
	}
	body := map[string]string{"method": "totp", "totp_code": code, "csrf_token": settings.csrfToken()}
	status, data, err := b.postJSON(ctx, "/self-service/settings?flow="+url.QueryEscape(settings.ID), body)
	if err != nil {
		return "", fmt.Errorf("enrol TOTP: %w", err)
	}
	if status != http.StatusOK {
		return "", fmt.Errorf("enrol TOTP: status %d: %s", status, data)
	}
	return secret, nil
}

func (b *Browser) getJSON(ctx context.Context, path string, into any) error {
	response, data, err := sendJSON(ctx, b.http, http.MethodGet, b.base+path, nil, nil)
	if err != nil {
		return err
	}
	if response.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d: %s", path, response.StatusCode, data)
	}
	return json.Unmarshal(data, into)
}

func (b *Browser) postJSON(ctx context.Context, path string, body any) (int, []byte, error) {
	response, data, err := sendJSON(ctx, b.http, http.MethodPost, b.base+path, nil, body)
	if err != nil {
		return 0, nil, err
	}
	return response.StatusCode, data, nil
}
