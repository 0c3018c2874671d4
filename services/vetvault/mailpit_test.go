package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// mailpitURL is mailpit's HTTP API, where the test stack catches all mail.
const mailpitURL = "http://127.0.0.1:8025"

var mailpitClient = &http.Client{Timeout: 5 * time.Second}

// latestMail waits up to 15 s for a message to recipient whose text contains
// want, and returns its text. Kratos's courier sends asynchronously.
func latestMail(t *testing.T, recipient, want string) string {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		var found struct {
			Messages []struct {
				ID string `json:"ID"`
			} `json:"messages"`
		}
		getJSON(t, mailpitURL+"/api/v1/search?query="+url.QueryEscape(`to:"`+recipient+`"`), &found)
		for _, m := range found.Messages {
			var message struct {
				Text string `json:"Text"`
			}
			getJSON(t, mailpitURL+"/api/v1/message/"+m.ID, &message)
			if strings.Contains(message.Text, want) {
				return message.Text
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("no mail to %s containing %q within 15 s", recipient, want)
	return ""
}

func getJSON(t *testing.T, address string, into any) {
	t.Helper()
	response, err := mailpitClient.Get(address)
	if err != nil {
		t.Fatalf("GET %s: %v", address, err)
	}
	defer response.Body.Close()
	data, _ := io.ReadAll(response.Body)
	if response.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d, want 200: %s", address, response.StatusCode, data)
	}
	if err := json.Unmarshal(data, into); err != nil {
		t.Fatalf("decode %s: %v (%s)", address, err, data)
	}
}
