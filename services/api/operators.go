package api

import (
	"context"
	"errors"
	"net/http"

	"github.com/danielgtaylor/huma/v2"

	"vetvault/services/operator"
)

// OperatorService creates platform operators.
type OperatorService interface {
	Create(ctx context.Context, request operator.Request) (operator.Created, error)
}

type createOperatorInput struct {
	UserAgent string `header:"User-Agent"`
	Body      struct {
		Email string `json:"email" format:"email" minLength:"3" maxLength:"254" doc:"The new operator's email, stored lower-cased; it must not belong to any staff member or operator" example:"asha.rao@vetvault.test"`
	}
}

type operatorOutput struct {
	Body struct {
		ID    string `json:"id" format:"uuid" doc:"Identity id of the new operator"`
		Email string `json:"email" doc:"The email as stored, lower-cased"`
	}
}

func registerOperators(api huma.API, h *handlers) {
	huma.Register(api, declare(huma.Operation{
		OperationID: "create-operator",
		Method:      http.MethodPost,
		Path:        "/v1/operators",
		Summary:     "Create a platform operator",
		Description: "Creates an operator account and emails the new operator a one-time code, " +
			"with which they set a password and enrol a second factor. " +
			"Only operators may call this, with a sign-in that is recent.",
		Tags:          []string{"Operators"},
		DefaultStatus: http.StatusCreated,
		MaxBodyBytes:  4 << 10,
	}, Access{Audience: AudienceOperator, Recent: true}), h.createOperator)
}

func (h *handlers) createOperator(ctx context.Context, in *createOperatorInput) (*operatorOutput, error) {
	session := sessionFrom(ctx)
	created, err := h.deps.Operators.Create(ctx, operator.Request{
		Email:     in.Body.Email,
		CreatedBy: session.IdentityID,
		IP:        ClientIPFrom(ctx),
		UserAgent: in.UserAgent,
	})
	if err != nil {
		return nil, h.operatorProblem(ctx, err)
	}
	out := &operatorOutput{}
	out.Body.ID = created.Operator.ID.String()
	out.Body.Email = created.Operator.Email
	return out, nil
}

// operatorProblem maps the operator service's errors to problems and leaves
// the rest, such as an unreachable Kratos, to problem.
func (h *handlers) operatorProblem(ctx context.Context, err error) error {
	var invalid *operator.InvalidEmailError
	switch {
	case errors.As(err, &invalid):
		return fieldProblem("email", invalid.Reason)
	case errors.Is(err, operator.ErrEmailTaken):
		return huma.Error409Conflict(msgEmailTaken)
	default:
		return h.problem(ctx, "create-operator", err)
	}
}
