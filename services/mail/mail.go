// Package mail sends plain-text email over SMTP. In development and tests
// the SMTP server is mailpit, which catches every message.
package mail

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/smtp"
	"net/url"
	"strings"
	"time"
)

// Message is one plain-text email to one recipient.
type Message struct {
	To      string
	Subject string
	Body    string
}

// Sender delivers messages through one SMTP server.
type Sender struct {
	addr string
	auth smtp.Auth
	from string
}

// NewSender parses smtpURL (smtp://[user:password@]host:port) and returns a
// sender that writes From: from. Credentials, when present, are sent only
// after STARTTLS, which net/smtp enforces for PLAIN auth to remote hosts.
func NewSender(smtpURL, from string) (*Sender, error) {
	parsed, err := url.Parse(smtpURL)
	if err != nil || parsed.Scheme != "smtp" || parsed.Host == "" {
		return nil, fmt.Errorf("invalid SMTP URL: use smtp://host:port")
	}
	if _, _, err := net.SplitHostPort(parsed.Host); err != nil {
		return nil, fmt.Errorf("invalid SMTP URL: %w", err)
	}
	if strings.ContainsAny(from, "\r\n") || !strings.Contains(from, "@") {
		return nil, errors.New("invalid sender address")
	}
	sender := &Sender{addr: parsed.Host, from: from}
	if parsed.User != nil {
		password, _ := parsed.User.Password()
		host, _, _ := net.SplitHostPort(parsed.Host)
		sender.auth = smtp.PlainAuth("", parsed.User.Username(), password, host)
	}
	return sender, nil
}

// Send delivers message. net/smtp takes no context, so ctx is only checked
// before the connection opens.
func (s *Sender) Send(ctx context.Context, message Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if strings.ContainsAny(message.To, "\r\n") || strings.ContainsAny(message.Subject, "\r\n") {
		return errors.New("send mail: header values must not contain line breaks")
	}
	var body strings.Builder
	fmt.Fprintf(&body, "From: %s\r\n", s.from)
	fmt.Fprintf(&body, "To: %s\r\n", message.To)
	fmt.Fprintf(&body, "Subject: %s\r\n", mime.QEncoding.Encode("utf-8", message.Subject))
	fmt.Fprintf(&body, "Date: %s\r\n", time.Now().Format(time.RFC1123Z))
	body.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
	body.WriteString(strings.ReplaceAll(message.Body, "\n", "\r\n"))

	if err := smtp.SendMail(s.addr, s.auth, s.from, []string{message.To}, []byte(body.String())); err != nil {
		// SMTP replies often quote the recipient; the error may be logged, so
		// the address is replaced before it leaves this function.
		return fmt.Errorf("send mail through %s: %s", s.addr, strings.ReplaceAll(err.Error(), message.To, "<recipient>"))
	}
	return nil
}
