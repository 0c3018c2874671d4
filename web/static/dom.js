// Small DOM builders shared by the UI and the API reference. Everything goes
// through createElement and text nodes, never innerHTML, so text from Kratos
// or the OpenAPI document cannot inject markup. Attributes only, no inline
// styles: the Content-Security-Policy allows styles from this origin alone.

// el creates a TAG element with ATTRS (undefined, null and false values are
// left out, true sets an empty attribute) and appends CHILDREN, where a
// string becomes a text node and null or undefined is skipped.
export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

// prose renders TEXT as paragraphs split on blank lines, with `backticked`
// spans as <code>. OpenAPI descriptions may be CommonMark; this covers the
// parts our API uses without a Markdown parser.
export function prose(text, className) {
  const wrapper = el("div", { class: className });
  for (const paragraph of String(text).split(/\n\s*\n/)) {
    if (paragraph.trim() === "") continue;
    wrapper.append(el("p", {}, inlineCode(paragraph.trim())));
  }
  return wrapper;
}

// inlineCode splits TEXT on backticks into text and <code> nodes.
export function inlineCode(text) {
  return String(text)
    .split("`")
    .map((part, i) => (i % 2 === 1 ? el("code", {}, part) : part));
}
