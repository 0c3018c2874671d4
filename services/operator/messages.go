package operator

// The email that carries a new operator's recovery code, kept together so it
// can be reviewed and translated in one place. The body takes, in order, the
// recovery link, the code and its expiry time; it must carry no other secret.
const (
	welcomeSubject = "Your VetVault operator account"
	welcomeBody    = `You have been made a VetVault platform operator.

To finish setting up your account, open this link and enter the code below.
You will then choose a password and add an authenticator app, which
operators must use every time they sign in.

Link: %[1]s
Code: %[2]s

The code works once and expires at %[3]s. If it has expired, ask the
VetVault platform team for a new one.

If you did not expect this email, do not use the code and tell the VetVault
platform team.
`
)

// expiryLayout formats the code's expiry time in the email.
const expiryLayout = "2 January 2006, 15:04 MST"
