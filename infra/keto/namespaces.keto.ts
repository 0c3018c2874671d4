// Ory Keto namespaces for VetVault, in the Ory Permission Language.
//
// Subjects are Kratos identity ids written as plain subject ids, both when
// a relationship is written and when a permission is checked.
import { Namespace, Context } from "@ory/keto-namespace-types"

class User implements Namespace {}

class Clinic implements Namespace {
  related: {
    owners: User[]
    managers: User[]
    veterinarians: User[]
    nurses: User[]
    receptionists: User[]
  }

  permits = {
    // Any role in the clinic. Used to tell "not a member" (404) from
    // "a member without this permission" (403).
    view: (ctx: Context): boolean =>
      this.related.owners.includes(ctx.subject) ||
      this.related.managers.includes(ctx.subject) ||
      this.related.veterinarians.includes(ctx.subject) ||
      this.related.nurses.includes(ctx.subject) ||
      this.related.receptionists.includes(ctx.subject),

    view_appointments: (ctx: Context): boolean => this.permits.view(ctx),

    book_appointments: (ctx: Context): boolean =>
      this.related.owners.includes(ctx.subject) ||
      this.related.managers.includes(ctx.subject) ||
      this.related.veterinarians.includes(ctx.subject) ||
      this.related.receptionists.includes(ctx.subject),

    // Staff and roles: managers manage everyone except owners, which the
    // staff service enforces by checking the owners relation.
    view_staff: (ctx: Context): boolean =>
      this.related.owners.includes(ctx.subject) ||
      this.related.managers.includes(ctx.subject),

    manage_staff: (ctx: Context): boolean =>
      this.related.owners.includes(ctx.subject) ||
      this.related.managers.includes(ctx.subject),
  }
}
