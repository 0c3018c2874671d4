package selfservice

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
)

// Reply is Kratos's response to a flow submission as the client received
// it, whatever its status, for tests that compare responses or expect a
// rejection.
type Reply struct {
	Status int
	Header http.Header
	Body   []byte
	// FlowID is the flow the submission went to.
	FlowID string
}

// SessionToken returns the session token of a reply to a successful API
// login, or "" when it has none.
func (r Reply) SessionToken() string {
	var body struct {
		SessionToken string `json:"session_token"`
	}
	_ = json.Unmarshal(r.Body, &body)
	return body.SessionToken
}

// SubmitPasswordLogin creates an API login flow and submits email and
// password to it as JSON. Unlike LogIn it returns Kratos's reply as it is,
// failures included.
func (c *Client) SubmitPasswordLogin(ctx context.Context, email, password string) (Reply, error) {
	flow, _, err := c.kratos.FrontendAPI.CreateNativeLoginFlow(ctx).Execute()
	if err != nil {
		return Reply{}, fmt.Errorf("create login flow: %w", describe(err))
	}
	body := map[string]string{"method": "password", "identifier": email, "password": password}
	return c.submitLogin(ctx, flow.Id, "", body)
}

// SubmitTOTPCode creates an AAL2 API login flow for the session of
// sessionToken and submits code to it. Unlike CompleteSecondFactor it takes
// the code as it is, so a test can send one of another time step or one
// already used, and it returns Kratos's reply as it is. A successful reply
// carries no new token: the session of sessionToken is now AAL2.
func (c *Client) SubmitTOTPCode(ctx context.Context, sessionToken, code string) (Reply, error) {
	flow, _, err := c.kratos.FrontendAPI.CreateNativeLoginFlow(ctx).Aal("aal2").XSessionToken(sessionToken).Execute()
	if err != nil {
		return Reply{}, fmt.Errorf("create second-factor login flow: %w", describe(err))
	}
	return c.submitLogin(ctx, flow.Id, sessionToken, map[string]string{"method": "totp", "totp_code": code})
}

func (c *Client) submitLogin(ctx context.Context, flowID, sessionToken string, body map[string]string) (Reply, error) {
	target := c.publicURL() + "/self-service/login?flow=" + url.QueryEscape(flowID)
	header := http.Header{}
	if sessionToken != "" {
		header.Set("X-Session-Token", sessionToken)
	}
	response, data, err := sendJSON(ctx, c.httpClient(), http.MethodPost, target, header, body)
	if err != nil {
		return Reply{}, fmt.Errorf("submit login: %w", err)
	}
	return Reply{Status: response.StatusCode, Header: response.Header, Body: data, FlowID: flowID}, nil
}
