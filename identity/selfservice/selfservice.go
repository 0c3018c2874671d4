// Package selfservice drives Kratos's API (native) self-service flows the way
// a non-browser client does: register with a password, enrol TOTP, and sign
// in with a password and then a TOTP code. The demo command and the
// end-to-end tests use it, and the server does not.
package selfservice

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	kratos "github.com/ory/kratos-client-go"
	"github.com/pquerna/otp/totp"
)

// Client calls Kratos's public API, usually through the VetVault
// server's /.ory proxy.
type Client struct {
	kratos *kratos.APIClient
}

// New returns a client for the Kratos public API at publicURL, for example
// http://127.0.0.1:8080/.ory.
func New(publicURL string, httpClient *http.Client) *Client {
	cfg := kratos.NewConfiguration()
	cfg.Servers = kratos.ServerConfigurations{{URL: strings.TrimSuffix(publicURL, "/")}}
	cfg.HTTPClient = httpClient
	return &Client{kratos: kratos.NewAPIClient(cfg)}
}

// Register creates an identity with a password and returns the session
// token Kratos issues for it (Kratos must run the session hook after
// password registration).
func (c *Client) Register(ctx context.Context, email, password string) (string, error) {
	flow, _, err := c.kratos.FrontendAPI.CreateNativeRegistrationFlow(ctx).Execute()
	if err != nil {
		return "", fmt.Errorf("create registration flow: %w", describe(err))
	}
	method := kratos.NewUpdateRegistrationFlowWithPasswordMethod("password", password, map[string]any{"email": email})
	return c.submitRegistration(ctx, flow.Id, method)
}

// submitRegistration submits a password registration to the API flow flowID
// and returns the session token Kratos issues.
func (c *Client) submitRegistration(ctx context.Context, flowID string, method *kratos.UpdateRegistrationFlowWithPasswordMethod) (string, error) {
	result, _, err := c.kratos.FrontendAPI.UpdateRegistrationFlow(ctx).
		Flow(flowID).
		UpdateRegistrationFlowBody(kratos.UpdateRegistrationFlowWithPasswordMethodAsUpdateRegistrationFlowBody(method)).
		Execute()
	if err != nil {
		return "", fmt.Errorf("register: %w", describe(err))
	}
	if result.SessionToken == nil {
		return "", errors.New("register: Kratos returned no session token; enable the session hook after password registration")
	}
	return *result.SessionToken, nil
}

// EnrolTOTP adds a TOTP authenticator to the identity of sessionToken and
// returns its shared secret. Kratos raises that session to AAL2.
func (c *Client) EnrolTOTP(ctx context.Context, sessionToken string) (string, error) {
	flow, err := c.createSettingsFlow(ctx, sessionToken)
	if err != nil {
		return "", err
	}
	secret := totpSecret(flow.Ui.Nodes)
	if secret == "" {
		return "", errors.New("settings flow has no TOTP secret: is the totp method enabled and not yet enrolled?")
	}
	code, err := totp.GenerateCode(secret, time.Now())
	if err != nil {
		return "", fmt.Errorf("compute TOTP code: %w", err)
	}
	method := kratos.NewUpdateSettingsFlowWithTotpMethod("totp")
	method.SetTotpCode(code)
	body := kratos.UpdateSettingsFlowWithTotpMethodAsUpdateSettingsFlowBody(method)
	if err := c.updateSettingsFlow(ctx, flow.Id, sessionToken, body); err != nil {
		return "", fmt.Errorf("enrol TOTP: %w", err)
	}
	return secret, nil
}

func (c *Client) createSettingsFlow(ctx context.Context, sessionToken string) (*kratos.SettingsFlow, error) {
	flow, _, err := c.kratos.FrontendAPI.CreateNativeSettingsFlow(ctx).XSessionToken(sessionToken).Execute()
	if err != nil {
		return nil, fmt.Errorf("create settings flow: %w", describe(err))
	}
	return flow, nil
}

func (c *Client) updateSettingsFlow(ctx context.Context, flowID, sessionToken string, body kratos.UpdateSettingsFlowBody) error {
	_, _, err := c.kratos.FrontendAPI.UpdateSettingsFlow(ctx).
		Flow(flowID).
		XSessionToken(sessionToken).
		UpdateSettingsFlowBody(body).
		Execute()
	return describe(err)
}

// changeSettings creates an API settings flow for the session of
// sessionToken and submits body to it. action names the change in errors.
func (c *Client) changeSettings(ctx context.Context, sessionToken, action string, body kratos.UpdateSettingsFlowBody) error {
	flow, err := c.createSettingsFlow(ctx, sessionToken)
	if err != nil {
		return err
	}
	if err := c.updateSettingsFlow(ctx, flow.Id, sessionToken, body); err != nil {
		return fmt.Errorf("%s: %w", action, err)
	}
	return nil
}

// totpSecret finds the enrolment secret in a settings flow: the text node
// totp_secret_key carries it in its context.
func totpSecret(nodes []kratos.UiNode) string {
	for _, node := range nodes {
		text := node.Attributes.UiNodeTextAttributes
		if text == nil || text.Id != "totp_secret_key" {
			continue
		}
		if secret, ok := text.Text.Context["secret"].(string); ok {
			return secret
		}
	}
	return ""
}

// LogIn signs in with a password and returns the session token. For an
// identity with a second factor the session is only AAL1 until
// CompleteSecondFactor.
func (c *Client) LogIn(ctx context.Context, email, password string) (string, error) {
	flow, _, err := c.kratos.FrontendAPI.CreateNativeLoginFlow(ctx).Execute()
	if err != nil {
		return "", fmt.Errorf("create login flow: %w", describe(err))
	}
	result, err := c.submitPasswordLogin(ctx, flow.Id, "", email, password)
	if err != nil {
		return "", fmt.Errorf("log in: %w", err)
	}
	if result.SessionToken == nil {
		return "", errors.New("log in: Kratos returned no session token")
	}
	return *result.SessionToken, nil
}

// submitPasswordLogin submits email and password to the API login flow
// flowID. sessionToken is "" for a first sign-in and the current session's
// token for a refresh.
func (c *Client) submitPasswordLogin(ctx context.Context, flowID, sessionToken, email, password string) (*kratos.SuccessfulNativeLogin, error) {
	method := kratos.NewUpdateLoginFlowWithPasswordMethod(email, "password", password)
	request := c.kratos.FrontendAPI.UpdateLoginFlow(ctx).
		Flow(flowID).
		UpdateLoginFlowBody(kratos.UpdateLoginFlowWithPasswordMethodAsUpdateLoginFlowBody(method))
	if sessionToken != "" {
		request = request.XSessionToken(sessionToken)
	}
	result, _, err := request.Execute()
	if err != nil {
		return nil, describe(err)
	}
	return result, nil
}

// CompleteSecondFactor raises the session of sessionToken to AAL2 with a
// TOTP code computed from secret at time at, and returns the session token
// to use from then on.
func (c *Client) CompleteSecondFactor(ctx context.Context, sessionToken, secret string, at time.Time) (string, error) {
	return c.secondFactor(ctx, sessionToken, secret, at, false)
}

// secondFactor submits a TOTP code in an AAL2 login flow. With refresh,
// Kratos requires a new sign-in even when the session is already AAL2.
func (c *Client) secondFactor(ctx context.Context, sessionToken, secret string, at time.Time, refresh bool) (string, error) {
	flow, _, err := c.kratos.FrontendAPI.CreateNativeLoginFlow(ctx).Aal("aal2").Refresh(refresh).XSessionToken(sessionToken).Execute()
	if err != nil {
		return "", fmt.Errorf("create second-factor login flow: %w", describe(err))
	}
	code, err := totp.GenerateCode(secret, at)
	if err != nil {
		return "", fmt.Errorf("compute TOTP code: %w", err)
	}
	method := kratos.NewUpdateLoginFlowWithTotpMethod("totp", code)
	result, _, err := c.kratos.FrontendAPI.UpdateLoginFlow(ctx).
		Flow(flow.Id).
		XSessionToken(sessionToken).
		UpdateLoginFlowBody(kratos.UpdateLoginFlowWithTotpMethodAsUpdateLoginFlowBody(method)).
		Execute()
	if err != nil {
		return "", fmt.Errorf("complete second factor: %w", describe(err))
	}
	if result.SessionToken != nil {
		return *result.SessionToken, nil
	}
	return sessionToken, nil
}

// describe adds the body of a failed Kratos call, which contains the flow's
// validation messages, to the error text. Kratos's messages name the
// problem ("The provided credentials are invalid") and carry no secrets.
func describe(err error) error {
	var apiErr *kratos.GenericOpenAPIError
	if errors.As(err, &apiErr) && len(apiErr.Body()) > 0 {
		body := string(apiErr.Body())
		if len(body) > 2000 {
			body = body[:2000] + "…"
		}
		return fmt.Errorf("%w: %s", err, body)
	}
	return err
}

// ChangePassword sets a new password in an API settings flow. Kratos requires
// a recent sign-in (its privileged session window) and ends the
// identity's other sessions afterwards.
func (c *Client) ChangePassword(ctx context.Context, sessionToken, password string) error {
	method := kratos.NewUpdateSettingsFlowWithPasswordMethod("password", password)
	body := kratos.UpdateSettingsFlowWithPasswordMethodAsUpdateSettingsFlowBody(method)
	return c.changeSettings(ctx, sessionToken, "change password", body)
}

// StartRecovery has Kratos email a recovery code to email and returns
// the id of the API recovery flow to submit it to.
func (c *Client) StartRecovery(ctx context.Context, email string) (string, error) {
	flow, _, err := c.kratos.FrontendAPI.CreateNativeRecoveryFlow(ctx).Execute()
	if err != nil {
		return "", fmt.Errorf("create recovery flow: %w", describe(err))
	}
	method := kratos.NewUpdateRecoveryFlowWithCodeMethod("code")
	method.SetEmail(email)
	_, _, err = c.kratos.FrontendAPI.UpdateRecoveryFlow(ctx).
		Flow(flow.Id).
		UpdateRecoveryFlowBody(kratos.UpdateRecoveryFlowWithCodeMethodAsUpdateRecoveryFlowBody(method)).
		Execute()
	if err != nil {
		return "", fmt.Errorf("request recovery code: %w", describe(err))
	}
	return flow.Id, nil
}

// FinishRecovery submits the emailed code to the API recovery flow flowID
// and returns the session token Kratos issues. That session is AAL1.
func (c *Client) FinishRecovery(ctx context.Context, flowID, code string) (string, error) {
	method := kratos.NewUpdateRecoveryFlowWithCodeMethod("code")
	method.SetCode(code)
	result, _, err := c.kratos.FrontendAPI.UpdateRecoveryFlow(ctx).
		Flow(flowID).
		UpdateRecoveryFlowBody(kratos.UpdateRecoveryFlowWithCodeMethodAsUpdateRecoveryFlowBody(method)).
		Execute()
	if err != nil {
		return "", fmt.Errorf("submit recovery code: %w", describe(err))
	}
	for _, next := range result.ContinueWith {
		if token := next.ContinueWithSetOrySessionToken; token != nil {
			return token.OrySessionToken, nil
		}
	}
	return "", errors.New("recovery returned no session token")
}

// RemoveTOTP unlinks the TOTP authenticator of the identity of sessionToken.
// Kratos allows it only within its privileged session window after the
// last sign-in.
func (c *Client) RemoveTOTP(ctx context.Context, sessionToken string) error {
	method := kratos.NewUpdateSettingsFlowWithTotpMethod("totp")
	method.SetTotpUnlink(true)
	body := kratos.UpdateSettingsFlowWithTotpMethodAsUpdateSettingsFlowBody(method)
	return c.changeSettings(ctx, sessionToken, "remove TOTP", body)
}

// Reauthenticate signs the identity of sessionToken in again with password
// and TOTP (a refresh login), which renews the session's authentication time
// for privileged changes. It returns the session token to use afterwards.
func (c *Client) Reauthenticate(ctx context.Context, sessionToken, email, password, secret string, at time.Time) (string, error) {
	flow, _, err := c.kratos.FrontendAPI.CreateNativeLoginFlow(ctx).Refresh(true).XSessionToken(sessionToken).Execute()
	if err != nil {
		return "", fmt.Errorf("create refresh login flow: %w", describe(err))
	}
	result, err := c.submitPasswordLogin(ctx, flow.Id, sessionToken, email, password)
	if err != nil {
		return "", fmt.Errorf("refresh with password: %w", err)
	}
	if result.SessionToken != nil {
		sessionToken = *result.SessionToken
	}
	return c.secondFactor(ctx, sessionToken, secret, at, true)
}

// LogOut ends the session of sessionToken.
func (c *Client) LogOut(ctx context.Context, sessionToken string) error {
	_, err := c.kratos.FrontendAPI.PerformNativeLogout(ctx).
		PerformNativeLogoutBody(*kratos.NewPerformNativeLogoutBody(sessionToken)).
		Execute()
	if err != nil {
		return fmt.Errorf("log out: %w", describe(err))
	}
	return nil
}
