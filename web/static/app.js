// VetVault's browser UI. It renders Kratos self-service flows from their UI
// nodes and shows the signed-in staff member's clinics. Every call goes to
// this origin, where the server proxies Kratos under /.ory/.
//
// Browser flows post plain HTML forms to Kratos, and Kratos responds to every
// submission with a redirect: back to /login, /registration, /settings,
// /recovery or /verification with ?flow=ID while the flow goes on (a second
// registration step, a validation error, a code sent by email), or to the
// return URL when it is done. So each page load renders whatever state the
// flow is in, and no step is hard-coded here.
import { el } from "./dom.js";
import { messages } from "./messages.js";
import { isTrigger, loadScript, triggerButton } from "./securitykey.js";

const app = document.getElementById("app");

const flowKinds = {
  "/login": "login",
  "/registration": "registration",
  "/settings": "settings",
  "/recovery": "recovery",
  "/verification": "verification",
};

// Query parameters that a restarted flow keeps, so that, for example, an
// expired second-factor login starts again at aal2.
const flowInitParams = ["aal", "refresh", "return_to", "via"];

// A flow page that restarts its flow more often than this within
// restartWindowMs stops and shows an error, rather than redirecting forever
// when Kratos rejects every new flow (for example without its CSRF cookie).
const maxRestarts = 3;
const restartWindowMs = 10000;

// Kratos's message id for a lookup secret that has been used.
const lookupSecretUsedID = 1050014;

async function main() {
  labelHeader();
  showSessionLinks();
  const path = location.pathname;
  if (flowKinds[path]) return showFlow(flowKinds[path]);
  if (path === "/error") return showError();
  return showHome();
}

// --- Header -----------------------------------------------------------------

function labelHeader() {
  document.getElementById("nav-docs").textContent = messages.common.apiReference;
  document.getElementById("nav-settings").textContent = messages.common.settings;
  const signOut = document.getElementById("nav-sign-out");
  signOut.textContent = messages.common.signOut;
  signOut.addEventListener("click", (event) => {
    event.preventDefault();
    signOutNow().catch(showFailure);
  });
}

// showSessionLinks shows the settings and sign-out links when the browser
// has a Kratos session. Whoami returns 403 for a session that still needs
// its second factor, which is a session all the same.
async function showSessionLinks() {
  const response = await fetch("/.ory/sessions/whoami", { headers: { Accept: "application/json" } });
  const signedIn = response.ok || response.status === 403;
  document.getElementById("nav-settings").hidden = !signedIn;
  document.getElementById("nav-sign-out").hidden = !signedIn;
}

// signOutNow fetches a logout URL, which carries a one-time token, from
// Kratos and follows it. Kratos then ends the session and redirects to /login.
async function signOutNow() {
  const response = await fetch("/.ory/self-service/logout/browser", { headers: { Accept: "application/json" } });
  if (!response.ok) {
    location.assign("/");
    return;
  }
  const body = await response.json();
  location.assign(body.logout_url);
}

// --- Flows ------------------------------------------------------------------

async function showFlow(kind) {
  const params = new URLSearchParams(location.search);
  const id = params.get("flow");
  if (!id) {
    restartFlow(kind, params);
    return;
  }
  const response = await fetch(`/.ory/self-service/${kind}/flows?id=${encodeURIComponent(id)}`, {
    headers: { Accept: "application/json" },
  });
  if (!response.ok) {
    // Expired, unknown or foreign flows (410, 404, 403) start over.
    app.replaceChildren(el("p", { class: "message" }, messages.flow.expired));
    restartFlow(kind, params);
    return;
  }
  renderFlow(kind, await response.json());
}

function restartFlow(kind, params) {
  const key = "vetvault.restarts." + kind;
  const now = Date.now();
  const recent = JSON.parse(sessionStorage.getItem(key) || "[]").filter((t) => now - t < restartWindowMs);
  if (recent.length >= maxRestarts) {
    sessionStorage.removeItem(key);
    showFailure(new Error(messages.flow.expired));
    return;
  }
  sessionStorage.setItem(key, JSON.stringify([...recent, now]));

  const init = new URLSearchParams();
  for (const name of flowInitParams) {
    if (params.has(name)) init.set(name, params.get(name));
  }
  const query = init.toString();
  location.assign(`/.ory/self-service/${kind}/browser${query ? "?" + query : ""}`);
}

// renderFlow draws the flow's messages and one form per group of UI nodes
// (password, totp, lookup_secret, code, …). The "default" group contains what
// every form needs, such as the CSRF token and, at the second registration
// step, the traits from the first, so it is copied into each form.
function renderFlow(kind, flow) {
  const titles = messages.flow.titles;
  let title = titles[kind];
  if (kind === "login" && flow.refresh) title = titles.loginRefresh;
  if (kind === "login" && flow.requested_aal === "aal2") title = titles.loginSecondFactor;

  const parts = [el("h1", {}, title)];
  if (kind === "registration") parts.push(el("p", { class: "step" }, registrationStep(flow)));
  parts.push(renderMessages(flow.ui.messages));

  const groups = new Map();
  for (const node of flow.ui.nodes) {
    if (!groups.has(node.group)) groups.set(node.group, []);
    groups.get(node.group).push(node);
  }
  const shared = groups.get("default") || [];
  groups.delete("default");
  if (groups.size === 0 && shared.some(isVisible)) groups.set("default", []);

  for (const [group, nodes] of groups) {
    // A group that only offers a side path, such as "Back" at the second
    // registration step, is shown as a plain button without a card.
    const visible = nodes.filter(isVisible);
    const minor = visible.length > 0 && visible.every((node) => isSecondary(node.attributes));
    const heading = minor ? "" : messages.flow.groups[group] ?? group;
    const form = el("form", { method: flow.ui.method, action: flow.ui.action, class: minor ? "flow-form minor" : "flow-form", "data-group": group },
      heading ? el("h2", {}, heading) : null);
    for (const node of [...shared, ...nodes]) form.append(renderNode(node, group));
    if (group === "webauthn" && !nodes.some((node) => node.attributes.name === "method")) {
      // No control in this form sends a method, because webauthn.js submits
      // it without a submit button and a key's remove button is named
      // webauthn_remove. Kratos v1.3.1 infers the method from those fields,
      // but the /.ory/ proxy audits a sign-in or a key change by its method.
      form.append(el("input", { type: "hidden", name: "method", value: "webauthn" }));
    }
    parts.push(form);
  }
  parts.push(flowLinks(kind, flow));
  show(...parts);
}

// registrationStep names the step of Kratos v1.3.1's two-step registration:
// the first requests the traits, and its submission returns the same flow
// with a password input added.
function registrationStep(flow) {
  const asksPassword = flow.ui.nodes.some((node) => node.group === "password" && node.attributes.type === "password");
  return asksPassword ? messages.flow.steps.registrationPassword : messages.flow.steps.registrationProfile;
}

// isSecondary reports whether input attributes A are a button for a side
// path rather than the form's main action: "Back" at the second registration
// step, or "Resend code" in recovery and verification.
function isSecondary(a) {
  const button = a.type === "submit" || a.type === "button";
  return button && (a.name === "screen" || a.name === "email" || a.name === "resend");
}

function isVisible(node) {
  return !(node.type === "input" && node.attributes.type === "hidden");
}

function flowLinks(kind, flow) {
  const links = messages.flow.links;
  const items = [];
  if (kind === "login" && flow.requested_aal !== "aal2") {
    items.push(el("a", { href: "/.ory/self-service/registration/browser" }, links.register));
    items.push(el("a", { href: "/.ory/self-service/recovery/browser" }, links.forgotPassword));
  }
  if (kind === "registration") items.push(el("a", { href: "/.ory/self-service/login/browser" }, links.signIn));
  if (kind === "recovery") items.push(el("a", { href: "/.ory/self-service/login/browser" }, links.backToSignIn));
  if (kind === "settings" || kind === "verification") items.push(el("a", { href: "/" }, links.backHome));
  if (items.length === 0) return null;
  return el("p", { class: "flow-links" }, items);
}

// renderNode draws one Kratos UI node. IDs of visible inputs carry the group,
// because the shared default nodes appear in more than one form.
function renderNode(node, group) {
  const a = node.attributes;
  const nodeID = a.id || a.name;
  const wrapper = el("div", { class: "node node-" + node.type, "data-node-id": nodeID });
  const label = node.meta && node.meta.label ? node.meta.label.text : "";

  switch (node.type) {
    case "img":
      wrapper.append(el("img", { src: a.src, width: a.width, height: a.height, alt: label, class: "qr" }));
      break;
    case "text":
      wrapper.append(renderText(nodeID, a.text, label));
      break;
    case "a":
      wrapper.append(el("a", { href: a.href, id: a.id }, a.title ? a.title.text : a.href));
      break;
    case "input":
      wrapper.append(...renderInput(a, label, group));
      break;
    case "script":
      // Kratos's webauthn.js, which the security key buttons call.
      loadScript(a);
      return document.createTextNode("");
    default:
      return document.createTextNode("");
  }
  const nodeMessages = renderMessages(node.messages);
  if (nodeMessages) wrapper.append(nodeMessages);
  return wrapper;
}

function renderText(nodeID, message, label) {
  if (nodeID === "totp_secret_key") {
    const secret = (message.context && message.context.secret) || message.text;
    return el("p", {}, messages.flow.totpSecretHint, " ", el("code", { class: "secret" }, secret));
  }
  if (nodeID === "lookup_secret_codes") {
    const secrets = (message.context && message.context.secrets) || [];
    const codes = secrets.map((secret) => {
      const used = secret.id === lookupSecretUsedID;
      const code = (secret.context && secret.context.secret) || secret.text;
      return el("li", { class: used ? "used" : undefined }, el("code", {}, used ? messages.flow.usedCode(code) : code));
    });
    return el("div", {}, el("p", {}, messages.flow.lookupCodesHint), el("ul", { class: "codes" }, codes));
  }
  return el("p", {}, label ? label + ": " : "", el("code", {}, message.text));
}

function renderInput(a, label, group) {
  if (a.type === "hidden") return [el("input", { type: "hidden", name: a.name, value: a.value })];
  if (isTrigger(a)) {
    // Kratos labels this button "Sign in with hardware key", though at this
    // step the password has already been given.
    const text = a.name === "webauthn_login_trigger" ? messages.flow.securityKey.use : label;
    return triggerButton(a, text || a.name);
  }
  if (a.type === "submit" || a.type === "button") {
    // A side path must submit even while the form's required inputs are
    // empty, as "Resend code" is pressed before any code arrives.
    const secondary = isSecondary(a);
    // Removing a security key is not the form's main action, and must not
    // wait for the name of a new key.
    const removeKey = a.name === "webauthn_remove";
    return [el("button", {
      type: "submit",
      name: a.name,
      value: a.value,
      disabled: a.disabled,
      class: secondary || removeKey ? "secondary" : undefined,
      formnovalidate: secondary || removeKey,
    }, label || a.value)];
  }
  const id = `${group}-${a.name}`.replace(/[^A-Za-z0-9_-]/g, "-");
  const input = el("input", {
    id,
    name: a.name,
    type: a.type,
    value: a.type === "checkbox" ? "true" : a.value,
    checked: a.type === "checkbox" && a.value === true,
    // Kratos v1.3.1 rejects a new security key without a name, though it
    // does not mark the input required.
    required: a.required || a.name === "webauthn_register_displayname",
    disabled: a.disabled,
    pattern: a.pattern,
    maxlength: a.maxlength,
    autocomplete: a.autocomplete,
    inputmode: a.name === "totp_code" || a.name === "code" ? "numeric" : undefined,
  });
  if (a.type === "checkbox") return [el("label", { for: id, class: "checkbox" }, input, " ", label || a.name)];
  return [el("label", { for: id }, label || a.name), input];
}

function renderMessages(list) {
  if (!list || list.length === 0) return null;
  return el("div", { class: "messages" }, list.map((message) =>
    el("p", { class: "message " + (message.type || "info"), "data-message-id": message.id }, message.text)));
}

// --- Errors -------------------------------------------------------------------

// showError renders the Kratos self-service error that /error?id=… names.
async function showError() {
  const text = messages.error;
  const id = new URLSearchParams(location.search).get("id");
  const parts = [el("h1", {}, text.title)];
  if (!id) {
    parts.push(el("p", { class: "message error" }, text.missingID));
  } else {
    const response = await fetch(`/.ory/self-service/errors?id=${encodeURIComponent(id)}`, { headers: { Accept: "application/json" } });
    const body = response.ok ? await response.json() : null;
    const error = body && body.error;
    if (!error) {
      parts.push(el("p", { class: "message error" }, text.notFound));
    } else {
      parts.push(el("p", { class: "message error" }, error.message || error.status || String(error.code)));
      if (error.reason) parts.push(el("p", {}, error.reason));
    }
  }
  parts.push(el("p", {}, el("a", { href: "/.ory/self-service/login/browser" }, text.startAgain)));
  app.replaceChildren(...parts);
}

// --- Home -----------------------------------------------------------------------

// showHome shows who is signed in and their clinics. GET /v1/me returns
// 401 without a session and 403 while the session lacks a second factor: with
// a Link rel="enrol-second-factor" header when the identity has none yet,
// without it when the identity has one and this sign-in has not used it.
async function showHome() {
  const text = messages.home;
  const response = await fetch("/v1/me", { headers: { Accept: "application/json" } });
  if (response.status === 401) {
    app.replaceChildren(el("p", {}, text.welcome),
      el("p", {}, el("a", { href: "/.ory/self-service/login/browser" }, text.signIn), text.or,
        el("a", { href: "/.ory/self-service/registration/browser" }, text.register)));
    return;
  }
  const body = await response.json().catch(() => ({}));
  if (response.status === 403 && /rel="?enrol-second-factor"?/.test(response.headers.get("Link") || "")) {
    show(
      await signedInLine(),
      el("p", { class: "message error", "data-state": "enrol-second-factor" }, text.enrolRequired),
      el("p", {}, el("a", { href: "/.ory/self-service/settings/browser", id: "enrol-link" }, text.enrolLink)));
    return;
  }
  if (response.status === 403) {
    app.replaceChildren(
      el("p", { class: "message", "data-state": "second-factor-pending" }, text.secondFactorPending),
      el("p", {}, el("a", { href: "/.ory/self-service/login/browser?aal=aal2", id: "aal2-link" }, text.continueLink)));
    return;
  }
  if (!response.ok) {
    app.replaceChildren(el("p", { class: "message error" }, body.detail || body.title || String(response.status)));
    return;
  }

  const parts = [
    el("p", {}, text.signedInAs(body.email)),
    el("p", { class: "message success", "data-state": body.aal }, text.aal2),
  ];
  if (body.operator) {
    parts.push(el("p", {}, text.operator));
  } else {
    parts.push(el("h2", {}, text.clinicsHeading));
    if (body.clinics.length === 0) parts.push(el("p", { class: "muted" }, text.noClinics));
    parts.push(el("ul", { class: "clinics" }, body.clinics.map((clinic) =>
      el("li", { "data-clinic-id": clinic.clinic_id }, el("strong", {}, clinic.name), " ",
        el("span", { class: "muted" }, text.roles(clinic.roles || []))))));
  }
  app.replaceChildren(...parts);
}

// signedInLine names the signed-in person from Kratos's whoami, which, unlike
// /v1/me, responds for a session without a second factor.
async function signedInLine() {
  const response = await fetch("/.ory/sessions/whoami", { headers: { Accept: "application/json" } });
  if (!response.ok) return null;
  const session = await response.json();
  const email = session.identity && session.identity.traits && session.identity.traits.email;
  return email ? el("p", {}, messages.home.signedInAs(email)) : null;
}

// show replaces the page's content with PARTS, skipping null ones.
function show(...parts) {
  app.replaceChildren(...parts.filter(Boolean));
}

function showFailure(err) {
  app.replaceChildren(el("p", { class: "message error" }, messages.common.failed(err.message)));
}

main().catch(showFailure);
