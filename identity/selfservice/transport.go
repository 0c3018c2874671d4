package selfservice

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// maxResponseBytes caps how much of a Kratos response body is read. Flows
// with all their UI nodes stay well below it.
const maxResponseBytes = 1 << 20

// sendJSON sends a request that accepts JSON, with body encoded as JSON
// unless it is nil, and returns the response with its body read (up to
// maxResponseBytes). The generated Kratos client cannot send the extra query
// parameters, raw bodies and headers some tests need, so those go through
// here.
func sendJSON(ctx context.Context, client *http.Client, method, target string, header http.Header, body any) (*http.Response, []byte, error) {
	var reader io.Reader
	if body != nil {
		encoded, err := json.Marshal(body)
		if err != nil {
			return nil, nil, fmt.Errorf("encode request body: %w", err)
		}
		reader = bytes.NewReader(encoded)
	}
	request, err := http.NewRequestWithContext(ctx, method, target, reader)
	if err != nil {
		return nil, nil, fmt.Errorf("build request: %w", err)
	}
	for name, values := range header {
		request.Header[name] = values
	}
	request.Header.Set("Accept", "application/json")
	if body != nil {
		request.Header.Set("Content-Type", "application/json")
	}

	response, err := client.Do(request)
	if err != nil {
		return nil, nil, err
	}
	defer response.Body.Close()
	data, err := io.ReadAll(io.LimitReader(response.Body, maxResponseBytes))
	if err != nil {
		return nil, nil, fmt.Errorf("read response: %w", err)
	}
	return response, data, nil
}

// publicURL returns the Kratos public URL the client was created with,
// without a trailing slash.
func (c *Client) publicURL() string {
	return strings.TrimSuffix(c.kratos.GetConfig().Servers[0].URL, "/")
}

// httpClient returns the HTTP client the generated Kratos client uses.
func (c *Client) httpClient() *http.Client {
	if client := c.kratos.GetConfig().HTTPClient; client != nil {
		return client
	}
	return http.DefaultClient
}
