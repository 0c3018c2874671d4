package oryproxy

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/google/uuid"

	"vetvault/identity"
)

// flowKind is the Kratos self-service flow that a submission updates.
type flowKind string

const (
	flowLogin        flowKind = "login"
	flowSettings     flowKind = "settings"
	flowRecovery     flowKind = "recovery"
	flowVerification flowKind = "verification"
)

// guardedPaths maps the Kratos paths, below Prefix, that update a flow to the
// flow they update. Kratos v1.3.1 routes both POST and GET to them, and some
// of its methods read a GET's query as the submission (a TOTP enrolment, a
// password change, an emailed verification code), so both are inspected.
var guardedPaths = map[string]flowKind{
	"/self-service/login":        flowLogin,
	"/self-service/settings":     flowSettings,
	"/self-service/recovery":     flowRecovery,
	"/self-service/verification": flowVerification,
}

// codeMethods are the Kratos methods whose secret is a short code, which the
// code limits protect from guessing.
var codeMethods = map[string]bool{"totp": true, "lookup_secret": true, "code": true}

// inspectedFields are the body fields that decide how a submission is
// limited and audited. A body that repeats one of them is rejected, because
// the proxy and Kratos might pick different copies.
var inspectedFields = []string{"method", "identifier", "password", "totp_code", "lookup_secret", "code"}

// Body encodings that the proxy reads. Kratos also decodes multipart forms,
// which neither its browser forms nor its SDKs send, so the proxy rejects
// them rather than parse and rewrite a third encoding.
const (
	encodingJSON  = "json"
	encodingForm  = "form"
	encodingQuery = "query"
)

var (
	// errDuplicateField reports a body that repeats an inspected field.
	errDuplicateField = errors.New("duplicate field")
	errMultipart      = errors.New("multipart body")
)

// submission is one POST or GET that updates a self-service flow, read and
// parsed before it is forwarded. It lives for one request and is the only place the
// proxy keeps secrets such as the TOTP code. None of them reaches a log or
// the audit trail.
type submission struct {
	flow   flowKind
	flowID string
	method string
	// identifier is the normalised login identifier of a password login.
	identifier string
	// totpCode is the code of a TOTP login, kept to record its use.
	totpCode string
	// sessionSecret is the session token or cookie value the client sent,
	// hashed into a limiter key and never stored.
	sessionSecret string
	credentials   identity.Credentials
	ip            string
	userAgent     string
	// started is when the request arrived, from which a failed password
	// login's minimum duration is measured.
	started time.Time
	// fields holds the body's scalar fields as strings, keyed by lower-cased
	// name (for JSON, by case-folded name as canonicalKey computes it).
	fields   map[string]string
	encoding string
	body     []byte

	// knownIdentity is the identity that the identifier of a password login
	// names, uuid.Nil when there is none.
	knownIdentity uuid.UUID
	// counted lists the limiter rows this submission was counted in, so a
	// successful login can take its per-identifier attempt back.
	counted []countedRow
}

// codeSubmission reports whether the submission carries a short code.
func (s *submission) codeSubmission() bool {
	switch s.flow {
	case flowRecovery, flowVerification:
		return true
	case flowLogin, flowSettings:
		return codeMethods[s.method]
	}
	return false
}

// passwordLogin reports whether the submission is a login that the login
// limits count: every login post that is not a code submission, so that an
// unknown or missing method cannot skip the limits.
func (s *submission) passwordLogin() bool {
	return s.flow == flowLogin && !s.codeSubmission()
}

// readSubmission reads and parses a submission to a guarded path: the body
// of a POST, which it puts back on r for forwarding, or the query of a GET.
// It returns an error of type *bodyError for a body that is too large or
// malformed.
func readSubmission(r *http.Request, flow flowKind, maxBody int64) (*submission, error) {
	if r.Method == http.MethodGet {
		return readQuerySubmission(r, flow)
	}

	if r.ContentLength > maxBody {
		return nil, &bodyError{status: http.StatusRequestEntityTooLarge, detail: bodyTooLargeDetail(maxBody)}
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	_ = r.Body.Close()
	if err != nil {
		return nil, &bodyError{status: http.StatusBadRequest, detail: "The request body could not be read.", err: err}
	}
	if int64(len(body)) > maxBody {
		return nil, &bodyError{status: http.StatusRequestEntityTooLarge, detail: bodyTooLargeDetail(maxBody)}
	}
	restoreBody(r, body)

	s := newSubmission(r, flow, body)

	s.encoding, s.fields, err = parseFields(r.Header.Get("Content-Type"), body)
	if errors.Is(err, errMultipart) {
		return nil, &bodyError{status: http.StatusUnsupportedMediaType, detail: "Send the form as application/x-www-form-urlencoded or JSON."}
	}
	if err != nil {
		return nil, &bodyError{status: http.StatusBadRequest, detail: malformedBodyDetail(err), err: err}
	}
	s.classify()
	return s, nil
}

func readQuerySubmission(r *http.Request, flow flowKind) (*submission, error) {
	s := newSubmission(r, flow, nil)
	query, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, &bodyError{status: http.StatusBadRequest, detail: "The query string is malformed.", err: err}
	}
	s.encoding = encodingQuery
	if s.fields, err = formFields(query); err != nil {
		return nil, &bodyError{status: http.StatusBadRequest, detail: "The query string repeats a field: send each field once.", err: err}
	}
	s.classify()
	return s, nil
}

func newSubmission(r *http.Request, flow flowKind, body []byte) *submission {
	s := &submission{
		flow:        flow,
		flowID:      r.URL.Query().Get("flow"),
		credentials: identity.CredentialsFromHeaders(r.Header),
		ip:          clientIP(r),
		userAgent:   r.UserAgent(),
		body:        body,
	}
	s.sessionSecret = sessionSecret(s.credentials, r)
	return s
}

// classify sets the method and the secrets the proxy tracks from the
// parsed fields.
func (s *submission) classify() {
	s.method = s.fields["method"]
	if s.passwordLogin() {
		s.identifier = identity.NormaliseEmail(s.fields["identifier"])
	}
	if s.flow == flowLogin && s.method == "totp" {
		s.totpCode = strings.TrimSpace(s.fields["totp_code"])
	}
}

// bodyError is a request body the proxy rejects without forwarding it.
type bodyError struct {
	status int
	detail string
	err    error
}

func (e *bodyError) Error() string {
	if e.err != nil {
		return fmt.Sprintf("%s: %v", e.detail, e.err)
	}
	return e.detail
}

func bodyTooLargeDetail(maxBody int64) string {
	return fmt.Sprintf("The request body is larger than %d KiB.", maxBody>>10)
}

func malformedBodyDetail(err error) string {
	if errors.Is(err, errDuplicateField) {
		return "The request body repeats a field: send each field once."
	}
	return "The request body is malformed: send a JSON object or a form."
}

// restoreBody puts body back on r so the reverse proxy forwards it unchanged.
func restoreBody(r *http.Request, body []byte) {
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	if r.Header.Get("Content-Length") != "" {
		r.Header.Set("Content-Length", fmt.Sprint(len(body)))
	}
}

// parseFields returns the body's encoding and its scalar top-level fields.
// It picks the encoding the way Kratos v1.3.1 does (ory/x decoderx): JSON if
// any comma-separated media type of Content-Type is JSON, else a form. JSON
// keys are case-folded (see canonicalKey). A body of another media type
// yields no fields, and Kratos rejects it.
func parseFields(contentType string, body []byte) (string, map[string]string, error) {
	var isJSON, isForm, isMultipart bool
	for _, part := range strings.Split(contentType, ",") {
		mediaType, _, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			break
		}
		isJSON = isJSON || mediaType == "application/json"
		isForm = isForm || mediaType == "application/x-www-form-urlencoded"
		isMultipart = isMultipart || mediaType == "multipart/form-data"
	}

	switch {
	case isJSON:
		fields, err := jsonFields(body)
		return encodingJSON, fields, err
	case isMultipart:
		return "", nil, errMultipart
	case isForm:
		values, err := url.ParseQuery(string(body))
		if err != nil {
			return encodingForm, nil, fmt.Errorf("parse form: %w", err)
		}
		fields, err := formFields(values)
		return encodingForm, fields, err
	}
	return "", map[string]string{}, nil
}

func jsonFields(body []byte) (map[string]string, error) {
	decoder := json.NewDecoder(bytes.NewReader(body))
	decoder.UseNumber()
	start, err := decoder.Token()
	if err != nil {
		return nil, fmt.Errorf("parse JSON: %w", err)
	}
	if delim, ok := start.(json.Delim); !ok || delim != '{' {
		return nil, errors.New("parse JSON: not an object")
	}
	fields := map[string]string{}
	seen := map[string]bool{}
	for decoder.More() {
		token, err := decoder.Token()
		if err != nil {
			return nil, fmt.Errorf("parse JSON: %w", err)
		}
		key := canonicalKey(token.(string))
		var value any
		if err := decoder.Decode(&value); err != nil {
			return nil, fmt.Errorf("parse JSON field: %w", err)
		}
		if seen[key] && inspected(key) {
			return nil, fmt.Errorf("%w %q", errDuplicateField, key)
		}
		seen[key] = true
		switch v := value.(type) {
		case string:
			fields[key] = v
		case json.Number:
			fields[key] = v.String()
		case bool:
			fields[key] = fmt.Sprint(v)
		}
	}
	return fields, nil
}

func formFields(values url.Values) (map[string]string, error) {
	fields := map[string]string{}
	for key, list := range values {
		lower := strings.ToLower(key)
		if inspected(lower) && (len(list) > 1 || fields[lower] != "") {
			return nil, fmt.Errorf("%w %q", errDuplicateField, lower)
		}
		if len(list) > 0 {
			fields[lower] = list[0]
		}
	}
	return fields, nil
}

// canonicalKey returns the inspected field that key matches under Unicode
// case folding, or else key in lower case. Kratos v1.3.1 reads the login
// fields of a JSON body by exact key, but decodes the bodies of some other
// methods into Go structs, whose field matching folds case (and also
// matches "ſ" to "s"). Folding here makes the proxy see every key that
// either reading could take, so a repeated field cannot hide behind a
// case variant.
func canonicalKey(key string) string {
	for _, field := range inspectedFields {
		if strings.EqualFold(key, field) {
			return field
		}
	}
	return strings.ToLower(key)
}

func inspected(key string) bool {
	for _, field := range inspectedFields {
		if key == field {
			return true
		}
	}
	return false
}

// replacePassword replaces the password the submission carries with a
// random one that cannot match, in r's body or query as the client sent it.
func (s *submission) replacePassword(r *http.Request) error {
	random := make([]byte, 32)
	if _, err := rand.Read(random); err != nil {
		return fmt.Errorf("generate replacement password: %w", err)
	}
	password := hex.EncodeToString(random)

	switch s.encoding {
	case encodingJSON:
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(s.body, &raw); err != nil {
			return fmt.Errorf("decode login body: %w", err)
		}
		for key := range raw {
			if strings.EqualFold(key, "password") {
				delete(raw, key)
			}
		}
		raw["password"] = json.RawMessage(`"` + password + `"`)
		body, err := json.Marshal(raw)
		if err != nil {
			return fmt.Errorf("encode login body: %w", err)
		}
		restoreBody(r, body)
	case encodingForm:
		values, err := url.ParseQuery(string(s.body))
		if err != nil {
			return fmt.Errorf("decode login form: %w", err)
		}
		values.Set("password", password)
		restoreBody(r, []byte(values.Encode()))
	case encodingQuery:
		values := r.URL.Query()
		values.Set("password", password)
		r.URL.RawQuery = values.Encode()
	default:
		return fmt.Errorf("replace password in a %q submission: unsupported encoding", s.encoding)
	}
	return nil
}

// clientIP returns the host part of the connection's remote address.
//
// NOTE: the server binds to loopback with no proxy in front, so the remote
// address is the client. A deployment behind a load balancer needs a
// trusted X-Forwarded-For setting that names the hops to trust. Otherwise
// every client shares the balancer's address and one per-IP limit.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// sessionSecret returns the session token, or the value of the session
// cookie, that the request presented.
func sessionSecret(creds identity.Credentials, r *http.Request) string {
	if creds.Token != "" {
		return creds.Token
	}
	if cookie, err := r.Cookie(identity.SessionCookie); err == nil {
		return cookie.Value
	}
	return ""
}
