// Package identity establishes who is calling and what they may do, through
// Kratos sessions for staff logins and Keto relationships for permissions.
package identity

import "fmt"

// Role is a built-in clinic role. Each role is a relation on the Clinic
// namespace in Keto, named in the plural (owner → owners).
type Role string

// The built-in roles.
const (
	RoleOwner        Role = "owner"
	RoleManager      Role = "manager"
	RoleVeterinarian Role = "veterinarian"
	RoleNurse        Role = "nurse"
	RoleReceptionist Role = "receptionist"
)

var roleRelations = map[Role]string{
	RoleOwner:        "owners",
	RoleManager:      "managers",
	RoleVeterinarian: "veterinarians",
	RoleNurse:        "nurses",
	RoleReceptionist: "receptionists",
}

// relation returns the Keto relation that grants r.
func (r Role) relation() (string, error) {
	relation, ok := roleRelations[r]
	if !ok {
		return "", fmt.Errorf("unknown role %q", r)
	}
	return relation, nil
}

// roleOfRelation returns the role a Keto relation grants, if it is one.
func roleOfRelation(relation string) (Role, bool) {
	for role, rel := range roleRelations {
		if rel == relation {
			return role, true
		}
	}
	return "", false
}

// ParseRole returns the built-in role named s.
func ParseRole(s string) (Role, error) {
	role := Role(s)
	if _, ok := roleRelations[role]; !ok {
		return "", fmt.Errorf("unknown role %q: use owner, manager, veterinarian, nurse or receptionist", s)
	}
	return role, nil
}
