package selfservice

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	kratos "github.com/ory/kratos-client-go"
)

// Registration is a password registration with fields a client adds on its
// own, such as a requested identity schema. Tests use it to show that Kratos
// ignores or rejects what it does not expect.
type Registration struct {
	Email    string
	Password string
	// FlowQuery is added to the request that creates the registration flow.
	FlowQuery url.Values
	// ExtraTraits are added to the traits next to the email.
	ExtraTraits map[string]any
	// ExtraFields are added to the top level of the submitted body.
	ExtraFields map[string]any
}

// RegisterWith registers like Register, adding the extra query parameters,
// traits and body fields of registration, and returns the session token.
func (c *Client) RegisterWith(ctx context.Context, registration Registration) (string, error) {
	flowID, err := c.createRegistrationFlow(ctx, registration.FlowQuery)
	if err != nil {
		return "", err
	}
	traits := map[string]any{"email": registration.Email}
	for name, value := range registration.ExtraTraits {
		traits[name] = value
	}
	method := kratos.NewUpdateRegistrationFlowWithPasswordMethod("password", registration.Password, traits)
	method.AdditionalProperties = registration.ExtraFields
	return c.submitRegistration(ctx, flowID, method)
}

// createRegistrationFlow creates an API registration flow with query added
// to the request, which the generated client cannot do, and returns its id.
func (c *Client) createRegistrationFlow(ctx context.Context, query url.Values) (string, error) {
	target := c.publicURL() + "/self-service/registration/api"
	if len(query) > 0 {
		target += "?" + query.Encode()
	}
	response, data, err := sendJSON(ctx, c.httpClient(), http.MethodGet, target, nil, nil)
	if err != nil {
		return "", fmt.Errorf("create registration flow: %w", err)
	}

	if response.StatusCode != http.StatusOK {
		return "", fmt.Errorf("create registration flow: status %d: %s", response.StatusCode, data)
	}
	var flow struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(data, &flow); err != nil || flow.ID == "" {
		return "", fmt.Errorf("create registration flow: no flow id in %s", data)
	}
	return flow.ID, nil
}

// UpdateProfileWith submits the identity's traits in an API settings flow,
// adding extraFields to the top level of the body, for example a requested
// identity schema.
func (c *Client) UpdateProfileWith(ctx context.Context, sessionToken string, traits, extraFields map[string]any) error {
	method := kratos.NewUpdateSettingsFlowWithProfileMethod("profile", traits)
	method.AdditionalProperties = extraFields
	body := kratos.UpdateSettingsFlowWithProfileMethodAsUpdateSettingsFlowBody(method)
	return c.changeSettings(ctx, sessionToken, "update profile", body)
}

// SubmitRecoveryCode posts code to the recovery flow flowID without reading
// the flow first, as a client that kept only the link and the code would,
// and returns the settings flow Kratos opens on success. Unlike Recover it
// submits the code even when the flow can no longer be read. Kratos v1.3.1
// responds to a code for an expired flow with a redirect (303) to a new
// flow, which this reports as an error.
func (b *Browser) SubmitRecoveryCode(ctx context.Context, flowID, code string) (string, error) {
	target := b.base + "/self-service/recovery?flow=" + url.QueryEscape(flowID)
	body := map[string]string{"method": "code", "code": code}
	response, data, err := sendJSON(ctx, b.http, http.MethodPost, target, nil, body)
	if err != nil {
		return "", fmt.Errorf("submit recovery code: %w", err)
	}

	// With feature_flags.use_continue_with_transitions, Kratos returns 200
	// with the passed flow and a show_settings_ui item. Without it, Kratos
	// returns 422 with the settings UI address in redirect_browser_to.
	var result struct {
		State             string `json:"state"`
		RedirectBrowserTo string `json:"redirect_browser_to"`
		ContinueWith      []struct {
			Action string `json:"action"`
			Flow   struct {
				ID string `json:"id"`
			} `json:"flow"`
		} `json:"continue_with"`
	}
	decodeErr := json.Unmarshal(data, &result)
	switch {
	case decodeErr != nil:
	case response.StatusCode == http.StatusOK && result.State == "passed_challenge":
		for _, next := range result.ContinueWith {
			if next.Action == "show_settings_ui" && next.Flow.ID != "" {
				return next.Flow.ID, nil
			}
		}
	case response.StatusCode == http.StatusUnprocessableEntity && result.RedirectBrowserTo != "":
		return RecoveryFlowID(result.RedirectBrowserTo)
	}
	return "", fmt.Errorf("submit recovery code: status %d, location %q: %s",
		response.StatusCode, response.Header.Get("Location"), data)
}
