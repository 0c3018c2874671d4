package staff

// Email texts sent to staff, kept together so they can be reviewed and
// translated in one place. They name the clinic and the role, and carry the
// one-time code and link only in the invitation to a new account.
const (
	inviteNewSubject = "You are invited to %s on VetVault"
	inviteNewBody    = `Hello,

%s has been set up for you on VetVault, with the role %s.

To accept, open this link and enter the code below, then choose a password
and set up an authenticator app:

  %s

  Code: %s

The code works once and expires at %s (IST).
If you did not expect this invitation, you can ignore this email.
`

	addedSubject = "You now have access to %s on VetVault"
	addedBody    = `Hello,

You now have the role %s at %s on VetVault. Sign in as usual at:

  %s

If you did not expect this, tell the clinic.
`
)
