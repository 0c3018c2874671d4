// Ory Keto namespaces for VetVault, in the Ory Permission Language.
//
// Subjects are Kratos identity ids written as plain subject ids, both when
// a relationship is written and when a permission is checked. A custom role
// is a ClinicRole whose members are users; a clinic grants a permission to a
// custom role with a subject set ClinicRole:<role>#members on that
// permission's grants_<permission> relation. Paths stay at most four hops
// deep (Pet, Clinic, ClinicRole, User), within Keto's read depth limit.
import { Namespace, Context, SubjectSet } from "@ory/keto-namespace-types"

class User implements Namespace {}

// A role a clinic defines itself, from the permissions a clinic may grant.
class ClinicRole implements Namespace {
  related: {
    members: User[]
  }
}

class Clinic implements Namespace {
  related: {
    owners: User[]
    managers: User[]
    veterinarians: User[]
    nurses: User[]
    receptionists: User[]
    // Branch-scoped roles live on Branch; a clinic lists its branches so a
    // branch-only member still counts as a member of the clinic.
    branches: Branch[]
    // Custom roles that grant each permission.
    grants_view_appointments: SubjectSet<ClinicRole, "members">[]
    grants_book_appointments: SubjectSet<ClinicRole, "members">[]
    grants_view_contacts: SubjectSet<ClinicRole, "members">[]
    grants_edit_contacts: SubjectSet<ClinicRole, "members">[]
    grants_view_pets: SubjectSet<ClinicRole, "members">[]
    grants_create_pets: SubjectSet<ClinicRole, "members">[]
    grants_edit_pets: SubjectSet<ClinicRole, "members">[]
    grants_view_records: SubjectSet<ClinicRole, "members">[]
    grants_add_vitals: SubjectSet<ClinicRole, "members">[]
    grants_write_records: SubjectSet<ClinicRole, "members">[]
    grants_view_invoices: SubjectSet<ClinicRole, "members">[]
    grants_create_invoices: SubjectSet<ClinicRole, "members">[]
    grants_edit_invoices: SubjectSet<ClinicRole, "members">[]
    grants_view_reports: SubjectSet<ClinicRole, "members">[]
    grants_view_staff: SubjectSet<ClinicRole, "members">[]
    grants_view_audit: SubjectSet<ClinicRole, "members">[]
  }

  permits = {
    // Any role in the clinic, built-in, custom or branch-scoped. Used to tell
    // "not a member" (404) from "a member without this permission" (403).
    view: (ctx: Context): boolean =>
      this.related.owners.includes(ctx.subject) ||
      this.related.managers.includes(ctx.subject) ||
      this.related.veterinarians.includes(ctx.subject) ||
      this.related.nurses.includes(ctx.subject) ||
      this.related.receptionists.includes(ctx.subject) ||
      this.related.grants_view_appointments.includes(ctx.subject) ||
      this.related.grants_book_appointments.includes(ctx.subject) ||
      this.related.grants_view_contacts.includes(ctx.subject) ||
      this.related.grants_edit_contacts.includes(ctx.subject) ||
      this.related.grants_view_pets.includes(ctx.subject) ||
      this.related.grants_create_pets.includes(ctx.subject) ||
      this.related.grants_edit_pets.includes(ctx.subject) ||
      this.related.grants_view_records.includes(ctx.subject) ||
      this.related.grants_add_vitals.includes(ctx.subject) ||
      this.related.grants_write_records.includes(ctx.subject) ||
      this.related.grants_view_invoices.includes(ctx.subject) ||
      this.related.grants_create_invoices.includes(ctx.subject) ||
      this.related.grants_edit_invoices.includes(ctx.subject) ||
      this.related.grants_view_reports.includes(ctx.subject) ||
      this.related.grants_view_staff.includes(ctx.subject) ||
      this.related.grants_view_audit.includes(ctx.subject) ||
      this.related.branches.traverse((b) => b.permits.member(ctx)),

    view_appointments: (ctx: Context): boolean =>
      this.related.owners.includes(ctx.subject) ||
      this.related.managers.includes(ctx.subject) ||
      this.related.veterinarians.includes(ctx.subject) ||
      this.related.nurses.includes(ctx.subject) ||
      this.related.receptionists.includes(ctx.subject) ||
      this.related.grants_view_appointments.includes(ctx.subject),

    book_appointments: (ctx: Context): boolean =>
      this.related.owners.includes(ctx.subject) ||
      this.related.managers.includes(ctx.subject) ||
      this.related.veterinarians.includes(ctx.subject) ||
      this.related.receptionists.includes(ctx.subject) ||
      this.related.grants_book_appointments.includes(ctx.subject),

    view_contacts: (ctx: Context): boolean =>
      this.related.owners.includes(ctx.subject) ||
      this.related.managers.includes(ctx.subject) ||
      this.related.veterinarians.includes(ctx.subject) ||
      this.related.nurses.includes(ctx.subject) ||
      this.related.receptionists.includes(ctx.subject) ||
      this.related.grants_view_contacts.includes(ctx.subject),

    edit_contacts: (ctx: Context): boolean =>
      this.related.owners.includes(ctx.subject) ||
      this.related.managers.includes(ctx.subject) ||
      this.related.receptionists.includes(ctx.subject) ||
      this.related.grants_edit_contacts.includes(ctx.subject),

    view_pets: (ctx: Context): boolean =>
      this.related.owners.includes(ctx.subject) ||
      this.related.managers.includes(ctx.subject) ||
      this.related.veterinarians.includes(ctx.subject) ||
      this.related.nurses.includes(ctx.subject) ||
      this.related.receptionists.includes(ctx.subject) ||
      this.related.grants_view_pets.includes(ctx.subject),

    create_pets: (ctx: Context): boolean =>
      this.related.owners.includes(ctx.subject) ||
      this.related.managers.includes(ctx.subject) ||
      this.related.veterinarians.includes(ctx.subject) ||
      this.related.nurses.includes(ctx.subject) ||
      this.related.receptionists.includes(ctx.subject) ||
      this.related.grants_create_pets.includes(ctx.subject),

    edit_pets: (ctx: Context): boolean =>
      this.related.owners.includes(ctx.subject) ||
      this.related.managers.includes(ctx.subject) ||
      this.related.veterinarians.includes(ctx.subject) ||
      this.related.nurses.includes(ctx.subject) ||
      this.related.grants_edit_pets.includes(ctx.subject),

    view_records: (ctx: Context): boolean =>
      this.related.owners.includes(ctx.subject) ||
      this.related.managers.includes(ctx.subject) ||
      this.related.veterinarians.includes(ctx.subject) ||
      this.related.nurses.includes(ctx.subject) ||
      this.related.grants_view_records.includes(ctx.subject),

    add_vitals: (ctx: Context): boolean =>
      this.related.veterinarians.includes(ctx.subject) ||
      this.related.nurses.includes(ctx.subject) ||
      this.related.grants_add_vitals.includes(ctx.subject),

    write_records: (ctx: Context): boolean =>
      this.related.veterinarians.includes(ctx.subject) ||
      this.related.grants_write_records.includes(ctx.subject),

    view_invoices: (ctx: Context): boolean =>
      this.related.owners.includes(ctx.subject) ||
      this.related.managers.includes(ctx.subject) ||
      this.related.grants_view_invoices.includes(ctx.subject),

    create_invoices: (ctx: Context): boolean =>
      this.related.owners.includes(ctx.subject) ||
      this.related.managers.includes(ctx.subject) ||
      this.related.veterinarians.includes(ctx.subject) ||
      this.related.grants_create_invoices.includes(ctx.subject),

    edit_invoices: (ctx: Context): boolean =>
      this.related.owners.includes(ctx.subject) ||
      this.related.managers.includes(ctx.subject) ||
      this.related.grants_edit_invoices.includes(ctx.subject),

    view_reports: (ctx: Context): boolean =>
      this.related.owners.includes(ctx.subject) ||
      this.related.managers.includes(ctx.subject) ||
      this.related.grants_view_reports.includes(ctx.subject),

    view_staff: (ctx: Context): boolean =>
      this.related.owners.includes(ctx.subject) ||
      this.related.managers.includes(ctx.subject) ||
      this.related.grants_view_staff.includes(ctx.subject),

    view_audit: (ctx: Context): boolean =>
      this.related.owners.includes(ctx.subject) ||
      this.related.managers.includes(ctx.subject) ||
      this.related.grants_view_audit.includes(ctx.subject),

    manage_staff: (ctx: Context): boolean =>
      this.related.owners.includes(ctx.subject) ||
      this.related.managers.includes(ctx.subject),

    manage_roles: (ctx: Context): boolean =>
      this.related.owners.includes(ctx.subject) ||
      this.related.managers.includes(ctx.subject),

    view_subscription: (ctx: Context): boolean =>
      this.related.owners.includes(ctx.subject) ||
      this.related.managers.includes(ctx.subject),

    edit_subscription: (ctx: Context): boolean =>
      this.related.owners.includes(ctx.subject),
  }
}

// A physical location of a clinic. Roles granted at a branch reach that
// branch's schedule only; roles of the whole clinic reach every branch.
class Branch implements Namespace {
  related: {
    clinic: Clinic[]
    managers: User[]
    veterinarians: User[]
    nurses: User[]
    receptionists: User[]
  }

  permits = {
    member: (ctx: Context): boolean =>
      this.related.managers.includes(ctx.subject) ||
      this.related.veterinarians.includes(ctx.subject) ||
      this.related.nurses.includes(ctx.subject) ||
      this.related.receptionists.includes(ctx.subject),

    view_appointments: (ctx: Context): boolean =>
      this.related.managers.includes(ctx.subject) ||
      this.related.veterinarians.includes(ctx.subject) ||
      this.related.nurses.includes(ctx.subject) ||
      this.related.receptionists.includes(ctx.subject) ||
      this.related.clinic.traverse((c) => c.permits.view_appointments(ctx)),

    book_appointments: (ctx: Context): boolean =>
      this.related.managers.includes(ctx.subject) ||
      this.related.veterinarians.includes(ctx.subject) ||
      this.related.receptionists.includes(ctx.subject) ||
      this.related.clinic.traverse((c) => c.permits.book_appointments(ctx)),
  }
}

// A patient of a clinic. Its records inherit the clinic's permissions. A
// referral shares the records of this one pet with a veterinarian of another
// clinic until the expiry the granting vet sets, and then VetVault deletes
// the relationship.
class Pet implements Namespace {
  related: {
    clinic: Clinic[]
    referred_vets: User[]
  }

  permits = {
    view: (ctx: Context): boolean =>
      this.related.clinic.traverse((c) => c.permits.view_pets(ctx)),

    edit: (ctx: Context): boolean =>
      this.related.clinic.traverse((c) => c.permits.edit_pets(ctx)),

    view_records: (ctx: Context): boolean =>
      this.related.referred_vets.includes(ctx.subject) ||
      this.related.clinic.traverse((c) => c.permits.view_records(ctx)),

    add_vitals: (ctx: Context): boolean =>
      this.related.clinic.traverse((c) => c.permits.add_vitals(ctx)),

    write_records: (ctx: Context): boolean =>
      this.related.clinic.traverse((c) => c.permits.write_records(ctx)),

    share_records: (ctx: Context): boolean =>
      this.related.clinic.traverse((c) => c.permits.write_records(ctx)),
  }
}
