// VetVault's browser UI. It renders Kratos self-service flows from their
// UI nodes and shows the signed-in staff member's clinics. All calls go to
// this origin: Kratos is reached through the /.ory/ proxy.
"use strict";

const app = document.getElementById("app");

const flowPages = {
  "/login": "login",
  "/registration": "registration",
  "/settings": "settings",
  "/recovery": "recovery",
  "/verification": "verification",
};

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value !== undefined && value !== null) node.setAttribute(key, value);
  }
  for (const child of children) {
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

function showMessages(target, messages) {
  for (const message of messages || []) {
    target.append(el("p", { class: "message" + (message.type === "error" ? " error" : "") }, message.text));
  }
}

// renderFlow draws one form per group of the flow's UI nodes, posting to
// the flow's action URL as Kratos expects of browser flows.
function renderFlow(flow) {
  app.replaceChildren();
  showMessages(app, flow.ui.messages);
  const groups = new Map();
  for (const node of flow.ui.nodes) {
    const group = node.group === "default" ? "default" : node.group;
    if (!groups.has(group)) groups.set(group, []);
    groups.get(group).push(node);
  }
  const shared = groups.get("default") || [];
  groups.delete("default");
  for (const [group, nodes] of groups) {
    const form = el("form", { method: flow.ui.method, action: flow.ui.action });
    form.append(el("h3", {}, group));
    for (const node of [...shared, ...nodes]) form.append(renderNode(node));
    app.append(form);
  }
}

function renderNode(node) {
  const a = node.attributes;
  const wrapper = el("div");
  if (node.type === "img") {
    wrapper.append(el("img", { src: a.src, alt: node.meta.label ? node.meta.label.text : "" }));
  } else if (node.type === "text") {
    wrapper.append(el("p", {}, node.meta.label ? node.meta.label.text + ": " : "", el("code", {}, a.text.text)));
  } else if (node.type === "input") {
    const label = node.meta.label ? node.meta.label.text : a.name;
    if (a.type === "submit" || a.type === "button") {
      wrapper.append(el("button", { type: "submit", name: a.name, value: a.value }, label));
    } else if (a.type === "hidden") {
      wrapper.append(el("input", { type: "hidden", name: a.name, value: a.value }));
    } else {
      wrapper.append(el("label", { for: a.name }, label));
      wrapper.append(el("input", { id: a.name, name: a.name, type: a.type, value: a.value, required: a.required ? "" : undefined, autocomplete: a.autocomplete }));
    }
  }
  showMessages(wrapper, node.messages);
  return wrapper;
}

async function showFlow(kind) {
  const id = new URLSearchParams(location.search).get("flow");
  if (!id) {
    location.href = `/.ory/self-service/${kind}/browser`;
    return;
  }
  const response = await fetch(`/.ory/self-service/${kind}/flows?id=${encodeURIComponent(id)}`, { credentials: "same-origin" });
  if (!response.ok) {
    location.href = `/.ory/self-service/${kind}/browser`;
    return;
  }
  renderFlow(await response.json());
}

async function showHome() {
  const response = await fetch("/v1/me", { credentials: "same-origin" });
  app.replaceChildren();
  if (response.status === 401) {
    app.append(el("p", {}, "Welcome to VetVault."),
      el("p", {}, el("a", { href: "/.ory/self-service/login/browser" }, "Sign in"), " or ",
        el("a", { href: "/.ory/self-service/registration/browser" }, "register your clinic")));
    return;
  }
  const body = await response.json();
  if (!response.ok) {
    showMessages(app, [{ type: "error", text: body.detail }]);
    app.append(el("p", {}, el("a", { href: "/.ory/self-service/login/browser?aal=aal2" }, "Continue with your authenticator code")));
    return;
  }
  app.append(el("p", {}, `Signed in as ${body.email}.`));
  if (body.second_factor_required) {
    app.append(el("p", { class: "message error" }, "Set up an authenticator app before you can use clinic data."),
      el("p", {}, el("a", { href: body.enrol_url }, "Set up two-factor sign-in")));
    return;
  }
  app.append(el("h2", {}, "Your clinics"));
  const list = el("ul");
  for (const clinic of body.clinics) list.append(el("li", {}, `${clinic.name} (${clinic.roles.join(", ")})`));
  app.append(list, el("p", {}, el("a", { href: "/docs" }, "API reference")));
}

const kind = flowPages[location.pathname];
(kind ? showFlow(kind) : showHome()).catch((err) => {
  app.replaceChildren(el("p", { class: "message error" }, "Something went wrong: " + err.message));
});
