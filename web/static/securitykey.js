// Security keys (WebAuthn) in Kratos v1.3.1 flows, under a CSP that allows
// scripts from this origin only and no inline handlers.
//
// For WebAuthn, Kratos sends three nodes. A "script" node names its
// webauthn.js, served under /.ory/ and so from this origin. A button carries
// inline JavaScript such as `window.oryWebAuthnLogin({…})` in onclick and the
// function's name alone in onclickTrigger. A hidden input receives the
// browser's response. This module loads the script as a file and attaches
// the click handler itself.
//
// The function that webauthn.js defines on window runs the browser's WebAuthn
// ceremony and writes the response into the hidden input (webauthn_login or
// webauthn_register). It then submits the button's form with form.submit(),
// which sends no submit button's name and value, so the form must contain
// every other field the submission needs.
import { el } from "./dom.js";
import { messages } from "./messages.js";

// triggers are the functions of Kratos v1.3.1's webauthn.js that the UI may
// call, by their onclickTrigger names. A name from a flow outside this list
// is never called, so a flow cannot make the page run any other global
// function. The passkey functions are left out because passkeys are off.
const triggers = new Set(["oryWebAuthnLogin", "oryWebAuthnRegistration"]);

// scripts maps the URL of each script loaded from a flow to the promise of
// its load.
const scripts = new Map();

// loadScript adds the script that a Kratos "script" node with attributes A
// names to the page, once per URL, keeping its subresource integrity hash.
// A script from another origin is not loaded, because the CSP would block it
// anyway.
export function loadScript(a) {
  const url = new URL(a.src, location.href);
  if (url.origin !== location.origin) {
    console.warn(`not loading ${url.href}: scripts load only from ${location.origin}`);
    return;
  }
  if (scripts.has(url.href)) return;
  const loaded = new Promise((resolve, reject) => {
    const script = el("script", {
      src: url.href,
      id: a.id || undefined,
      type: a.type || undefined,
      integrity: a.integrity || undefined,
      crossorigin: a.crossorigin || undefined,
      referrerpolicy: a.referrerpolicy || undefined,
    });
    script.addEventListener("load", resolve);
    script.addEventListener("error", () => reject(new Error(messages.flow.securityKey.scriptFailed)));
    document.head.append(script);
  });
  // The click handler reports a failed load, so it must not also surface as
  // an unhandled rejection.
  loaded.catch(() => {});
  scripts.set(url.href, loaded);
}

// isTrigger reports whether input attributes A are a button that Kratos
// meant to run JavaScript on click.
export function isTrigger(a) {
  return a.type === "button" && Boolean(a.onclickTrigger || a.onclick);
}

// triggerButton returns the button for trigger attributes A, labelled LABEL,
// and the hidden paragraph that shows why a press failed. The button keeps
// Kratos's name and value (the WebAuthn options as JSON), because webauthn.js
// finds the button by name to submit its form.
export function triggerButton(a, label) {
  const button = el("button", { type: "button", name: a.name, value: a.value, disabled: a.disabled }, label);
  const problem = el("p", { class: "message error", role: "alert", hidden: true });
  button.addEventListener("click", () => {
    problem.hidden = true;
    press(button, a).catch((err) => {
      problem.textContent = err.message;
      problem.hidden = false;
    });
  });
  return [button, problem];
}

async function press(button, a) {
  const name = triggerName(a);
  if (!name) throw new Error(messages.flow.securityKey.unknownTrigger);
  // form.submit() skips the browser's form validation, so it runs here, for
  // example for the key's name, which Kratos requires with a new key.
  if (button.form && !button.form.reportValidity()) return;
  await Promise.all(scripts.values());
  // webauthn.js defines nothing in a browser without WebAuthn.
  const run = window[name];
  if (typeof run !== "function") throw new Error(messages.flow.securityKey.unsupported);
  run(a.value ? JSON.parse(a.value) : undefined);
}

// triggerName returns the webauthn.js function that attributes A name, or
// null for one the UI does not call. It prefers onclickTrigger and else takes
// the function name from the start of the inline onclick, without running it.
function triggerName(a) {
  const fromOnclick = /^\s*(?:window\.)?([A-Za-z_$][\w$]*)\s*\(/.exec(a.onclick || "");
  const name = a.onclickTrigger || (fromOnclick && fromOnclick[1]);
  return triggers.has(name) ? name : null;
}
