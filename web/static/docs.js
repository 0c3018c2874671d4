// The API reference at /docs. It fetches this server's /openapi.json and
// renders every operation it contains, grouped by tag, with parameters,
// request body and response schemas resolved from components. It replaces
// Huma's default page, which loads Stoplight Elements from a CDN and stays
// blank without internet access.
import { el, inlineCode, prose } from "./dom.js";
import { messages } from "./messages.js";

const text = messages.docs;
const methodOrder = ["get", "put", "post", "patch", "delete", "head", "options", "trace"];

// Nested schemas deeper than this are shown by name only, which also bounds
// the page for recursive schemas that the cycle check does not catch.
const maxSchemaDepth = 8;

async function main() {
  document.getElementById("nav-home").textContent = messages.common.home;
  document.getElementById("nav-openapi").textContent = text.openapi;
  const nav = document.getElementById("docs-nav");
  const root = document.getElementById("docs");
  root.replaceChildren(el("p", {}, messages.common.loading));
  let doc;
  try {
    const response = await fetch("/openapi.json", { headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    doc = await response.json();
  } catch (err) {
    root.replaceChildren(el("p", { class: "message error" }, text.loadFailed(err.message)));
    return;
  }
  const reference = new Reference(doc);
  nav.replaceChildren(...reference.renderNav());
  root.replaceChildren(...reference.renderMain());
  window.addEventListener("hashchange", revealTarget);
  revealTarget();
}

// revealTarget opens the collapsed schema that the URL's fragment names, so
// a link to a schema shows it rather than its closed summary line.
function revealTarget() {
  const target = location.hash && document.getElementById(decodeURIComponent(location.hash.slice(1)));
  if (!target) return;
  if (target.tagName === "DETAILS") target.open = true;
  target.scrollIntoView();
}

// Reference renders one OpenAPI 3.x document.
class Reference {
  constructor(doc) {
    this.doc = doc;
    this.groups = groupByTag(doc);
  }

  // resolve follows a local $ref ("#/components/…") and returns the target,
  // or undefined when the pointer leads nowhere.
  resolve(ref) {
    if (typeof ref !== "string" || !ref.startsWith("#/")) return undefined;
    let target = this.doc;
    for (const raw of ref.slice(2).split("/")) {
      const key = decodeURIComponent(raw).replaceAll("~1", "/").replaceAll("~0", "~");
      if (target === null || typeof target !== "object" || !(key in target)) return undefined;
      target = target[key];
    }
    return target;
  }

  // deref resolves OBJECT if it is a reference, following chains of them.
  deref(object) {
    let current = object;
    for (let hops = 0; current && current.$ref && hops < 10; hops++) {
      current = this.resolve(current.$ref);
    }
    return current;
  }

  renderNav() {
    const filter = el("input", { type: "search", class: "docs-filter", placeholder: text.filter, "aria-label": text.filter });
    filter.addEventListener("input", () => applyFilter(filter.value));
    const items = [filter];
    for (const [tag, operations] of this.groups) {
      const list = el("ul");
      for (const operation of operations) {
        list.append(el("li", { "data-op": operation.anchor, "data-search": operation.searchText },
          el("a", { href: "#" + operation.anchor },
            el("span", { class: "method method-" + operation.method }, operation.method.toUpperCase()),
            " ", el("span", { class: "nav-path" }, breakablePath(operation.path)))));
      }
      items.push(el("div", { class: "nav-group", "data-tag": tag }, el("h4", {}, tag), list));
    }
    return items;
  }

  renderMain() {
    const info = this.doc.info || {};
    const parts = [
      el("h1", {}, info.title || text.title, info.version ? el("span", { class: "version" }, info.version) : null),
      info.description ? prose(info.description, "doc-description") : null,
      el("p", {}, el("a", { href: "/openapi.json" }, text.openapi)),
      this.renderAuthentication(),
    ];
    if (this.groups.size === 0) parts.push(el("p", {}, text.noOperations));
    for (const [tag, operations] of this.groups) {
      const tagInfo = (this.doc.tags || []).find((t) => t.name === tag);
      parts.push(el("section", { class: "tag", "data-tag": tag },
        el("h2", { id: "tag-" + slug(tag) }, tag),
        tagInfo && tagInfo.description ? prose(tagInfo.description) : null,
        operations.map((operation) => this.renderOperation(operation))));
    }
    parts.push(this.renderSchemas());
    return parts.filter(Boolean);
  }

  renderAuthentication() {
    const schemes = (this.doc.components || {}).securitySchemes || {};
    const names = Object.keys(schemes);
    if (names.length === 0) return null;
    const list = el("ul");
    for (const name of names) {
      const scheme = this.deref(schemes[name]) || {};
      list.append(el("li", { id: "auth-" + slug(name) },
        el("code", {}, name), " — ", describeScheme(scheme),
        scheme.description ? el("span", { class: "muted" }, " (", inlineCode(scheme.description), ")") : null));
    }
    return el("section", { class: "auth" }, el("h2", {}, text.authentication), el("p", {}, text.authAlternatives), list);
  }

  renderOperation(operation) {
    const op = operation.op;
    return el("article", { class: "op", id: operation.anchor, "data-search": operation.searchText },
      el("h3", {},
        el("span", { class: "method method-" + operation.method }, operation.method.toUpperCase()),
        " ", renderPath(operation.path),
        op.deprecated ? el("span", { class: "badge badge-deprecated" }, text.deprecated) : null),
      op.summary ? el("p", { class: "summary" }, inlineCode(op.summary)) : null,
      op.description ? prose(op.description, "op-description") : null,
      this.renderSecurity(op),
      op.operationId ? el("p", { class: "muted small" }, `${text.operationID}: `, el("code", {}, op.operationId)) : null,
      this.renderExtensions(op),
      this.renderParameters(operation),
      this.renderRequestBody(op.requestBody),
      this.renderResponses(op.responses || {}));
  }

  renderSecurity(op) {
    const requirements = op.security !== undefined ? op.security : this.doc.security;
    if (!requirements || requirements.length === 0 || requirements.some((r) => Object.keys(r).length === 0)) {
      return el("p", { class: "security" }, text.noAuth);
    }
    const alternatives = requirements.map((requirement) => {
      const names = Object.keys(requirement);
      const links = names.map((name) => el("a", { href: "#auth-" + slug(name) }, name));
      return el("span", {}, links.flatMap((link, i) => (i === 0 ? [link] : [` ${text.authAll} `, link])));
    });
    return el("p", { class: "security" }, `${text.needs}: `,
      alternatives.flatMap((alternative, i) => (i === 0 ? [alternative] : [text.or, alternative])));
  }

  // renderExtensions shows the operation's x-… fields, which is where an API
  // states rules OpenAPI has no field for.
  renderExtensions(op) {
    const keys = Object.keys(op).filter((key) => key.startsWith("x-"));
    if (keys.length === 0) return null;
    return el("dl", { class: "extensions" }, keys.flatMap((key) => [
      el("dt", {}, key),
      el("dd", {}, typeof op[key] === "string" ? op[key] : JSON.stringify(op[key])),
    ]));
  }

  renderParameters(operation) {
    // Operation parameters override path-level ones with the same name and location.
    const byKey = new Map();
    for (const raw of [...(operation.pathItem.parameters || []), ...(operation.op.parameters || [])]) {
      const parameter = this.deref(raw);
      if (parameter) byKey.set(parameter.in + ":" + parameter.name, parameter);
    }
    if (byKey.size === 0) return null;
    const order = { path: 0, query: 1, header: 2, cookie: 3 };
    const parameters = [...byKey.values()].sort((a, b) => (order[a.in] ?? 9) - (order[b.in] ?? 9));

    const head = el("tr", {}, text.parameterColumns.map((column) => el("th", {}, column)));
    const rows = parameters.map((parameter) => {
      const schema = this.deref(parameter.schema) || {};
      const description = parameter.description || schema.description;
      return el("tr", {},
        el("td", {}, el("code", {}, parameter.name), parameter.required ? el("span", { class: "badge badge-required" }, text.required) : null,
          parameter.deprecated ? el("span", { class: "badge badge-deprecated" }, text.deprecated) : null),
        el("td", {}, parameter.in),
        el("td", {}, this.typeLabel(parameter.schema || {})),
        el("td", {}, description ? inlineCode(description) : null, this.renderConstraints(schema, parameter),
          schema.items ? this.renderConstraints(this.deref(schema.items) || {}) : null));
    });
    return el("section", { class: "op-part" }, el("h4", {}, text.parameters),
      el("table", { class: "params" }, el("thead", {}, head), el("tbody", {}, rows)));
  }

  renderRequestBody(raw) {
    const body = this.deref(raw);
    if (!body) return null;
    return el("section", { class: "op-part" },
      el("h4", {}, text.requestBody, " ",
        el("span", { class: body.required ? "badge badge-required" : "badge" }, body.required ? text.bodyRequired : text.bodyOptional)),
      body.description ? prose(body.description) : null,
      this.renderContent(body.content, "request"));
  }

  renderResponses(responses) {
    const codes = Object.keys(responses).sort((a, b) => statusRank(a) - statusRank(b));
    if (codes.length === 0) return null;
    const items = codes.map((code) => {
      const response = this.deref(responses[code]) || {};
      const status = code === "default" ? text.defaultResponse : code;
      const content = response.content || {};
      const problem = Object.keys(content).some((type) => type.includes("problem+json"));
      const headers = Object.entries(response.headers || {});
      return el("div", { class: "response" },
        el("h5", {}, el("span", { class: "status status-" + code.charAt(0) }, status), " ",
          response.description ? inlineCode(response.description) : null,
          problem ? el("span", { class: "muted" }, " — " + text.problemDetails) : null),
        headers.length ? el("p", { class: "small" }, `${text.headers}: `, headers.flatMap(([name, header], i) => [
          i ? ", " : "", el("code", {}, name), " ", el("span", { class: "muted" }, this.typeLabel((this.deref(header) || {}).schema || {})),
        ])) : null,
        Object.keys(content).length ? this.renderContent(content, "response", problem) : el("p", { class: "muted small" }, text.noBody));
    });
    return el("section", { class: "op-part" }, el("h4", {}, text.responses), items);
  }

  // renderContent shows each media type with its schema. Problem details
  // repeat on every operation, so their schema starts collapsed.
  renderContent(content, mode, collapsed) {
    const parts = [];
    for (const [type, media] of Object.entries(content || {})) {
      const schema = this.renderSchema(media.schema || {}, mode, new Set(), 0);
      const label = el("p", { class: "media-type" }, el("code", {}, type), " ", this.typeLabel(media.schema || {}));
      if (collapsed && type.includes("problem+json")) {
        parts.push(el("details", {}, el("summary", {}, text.problemSchema), schema));
      } else {
        parts.push(label, schema, media.example !== undefined ? renderExample(media.example) : null);
        for (const example of Object.values(media.examples || {})) {
          const value = (this.deref(example) || {}).value;
          if (value !== undefined) parts.push(renderExample(value));
        }
      }
    }
    return parts;
  }

  // typeLabel names SCHEMA's type: "string (uuid)", "array of ClinicJSON",
  // "integer, nullable". Component names link to the Schemas section.
  typeLabel(schemaOrRef) {
    const ref = schemaOrRef && schemaOrRef.$ref;
    if (ref) {
      const name = refName(ref);
      if (!this.resolve(ref)) return el("span", { class: "type" }, text.unresolved(ref));
      return el("a", { class: "type", href: "#schema-" + slug(name) }, name);
    }
    const schema = schemaOrRef || {};
    const types = [].concat(schema.type || []);
    const nullable = types.includes("null") || schema.nullable === true;
    const main = types.filter((t) => t !== "null");
    let label;
    if (schema.oneOf || schema.anyOf) {
      const variants = schema.oneOf || schema.anyOf;
      label = el("span", {}, variants.flatMap((variant, i) => (i ? [" | ", this.typeLabel(variant)] : [this.typeLabel(variant)])));
    } else if (schema.allOf && schema.allOf.length === 1) {
      label = this.typeLabel(schema.allOf[0]);
    } else if (main.includes("array") || schema.items) {
      label = el("span", {}, text.arrayOf(""), this.typeLabel(schema.items || {}));
    } else if (main.length === 0 && (schema.const !== undefined || Array.isArray(schema.enum))) {
      // A const or enum without a type still implies one.
      const value = schema.const !== undefined ? schema.const : schema.enum[0];
      label = el("span", {}, value === null ? "null" : Array.isArray(value) ? "array" : typeof value);
    } else if (main.length === 0 && !schema.properties && !schema.allOf) {
      label = el("span", {}, text.any);
    } else {
      const name = main.length ? main.join(" | ") : "object";
      const map = name === "object" && schema.additionalProperties && typeof schema.additionalProperties === "object" && !schema.properties;
      label = map ? el("span", {}, text.mapOf(""), this.typeLabel(schema.additionalProperties)) : el("span", {}, name);
      if (schema.format) label.append(el("span", { class: "format" }, ` (${schema.format})`));
    }
    return el("span", { class: "type" }, label, nullable ? el("span", { class: "muted" }, `, ${text.nullable}`) : null);
  }

  // renderSchema draws SCHEMA as a tree of properties. MODE "request" hides
  // read-only properties and "response" hides write-only ones. SEEN holds the
  // references on the current branch, so a recursive schema stops at its
  // second appearance instead of looping.
  renderSchema(schemaOrRef, mode, seen, depth) {
    let schema = schemaOrRef || {};
    if (schema.$ref) {
      const name = refName(schema.$ref);
      if (seen.has(schema.$ref) || depth > maxSchemaDepth) return el("p", { class: "muted small" }, text.cycle(name));
      const target = this.resolve(schema.$ref);
      if (!target) return el("p", { class: "muted small" }, text.unresolved(schema.$ref));
      seen = new Set(seen).add(schema.$ref);
      schema = target;
    }
    schema = this.mergeAllOf(schema);

    const variants = schema.oneOf || schema.anyOf;
    if (variants) {
      return el("div", { class: "variants" }, el("p", { class: "small" }, schema.oneOf ? text.oneOf : text.anyOf),
        el("ol", {}, variants.map((variant) => el("li", {}, this.typeLabel(variant), this.renderSchema(variant, mode, seen, depth + 1)))));
    }
    if (schema.items) return this.renderSchema(schema.items, mode, seen, depth + 1);
    if (schema.properties) return this.renderProperties(schema, mode, seen, depth);
    if (schema.additionalProperties && typeof schema.additionalProperties === "object") {
      return this.renderSchema(schema.additionalProperties, mode, seen, depth + 1);
    }
    return el("div", { class: "small" }, schema.description ? inlineCode(schema.description) : null, this.renderConstraints(schema));
  }

  renderProperties(schema, mode, seen, depth) {
    const required = new Set(schema.required || []);
    const list = el("ul", { class: "props" });
    // Required properties come first, in the order the schema lists them
    // (Huma keeps the struct's field order there); the rest follow.
    const declared = Object.keys(schema.properties);
    const rank = (name) => {
      const index = (schema.required || []).indexOf(name);
      return index >= 0 ? index : declared.length + declared.indexOf(name);
    };
    const names = [...declared].sort((a, b) => rank(a) - rank(b));
    for (const name of names) {
      const raw = schema.properties[name];
      const property = this.mergeAllOf(this.deref(raw) || {});
      if (mode === "request" && property.readOnly) continue;
      if (mode === "response" && property.writeOnly) continue;

      const description = (raw && raw.description) || property.description;
      const item = el("li", {},
        el("div", { class: "prop-head" },
          el("code", { class: "prop-name" }, name), " ", this.typeLabel(raw || {}),
          required.has(name) ? el("span", { class: "badge badge-required" }, text.required) : null,
          property.readOnly ? el("span", { class: "badge" }, text.readOnly) : null,
          property.writeOnly ? el("span", { class: "badge" }, text.writeOnly) : null,
          property.deprecated ? el("span", { class: "badge badge-deprecated" }, text.deprecated) : null),
        description ? el("div", { class: "prop-doc" }, inlineCode(description)) : null,
        this.renderConstraints(property));
      if (this.hasChildren(raw)) {
        const child = this.renderSchema(raw, mode, seen, depth + 1);
        item.append(el("details", { open: depth < 1 }, el("summary", {}, this.typeLabel(raw)), child));
      }
      list.append(item);
    }
    return list;
  }

  // hasChildren reports whether SCHEMA (through references, arrays and
  // maps) leads to an object with properties or to variants.
  hasChildren(schemaOrRef) {
    let schema = this.mergeAllOf(this.deref(schemaOrRef) || {});
    for (let hops = 0; hops < 5; hops++) {
      if (schema.properties || schema.oneOf || schema.anyOf) return true;
      const next = schema.items || (typeof schema.additionalProperties === "object" ? schema.additionalProperties : null);
      if (!next) return false;
      schema = this.mergeAllOf(this.deref(next) || {});
    }
    return false;
  }

  // mergeAllOf folds the properties and required lists of allOf members into
  // one object schema, which is how readers think of composed objects.
  mergeAllOf(schema) {
    if (!schema.allOf) return schema;
    const merged = { ...schema, properties: { ...(schema.properties || {}) }, required: [...(schema.required || [])] };
    delete merged.allOf;
    for (const member of schema.allOf) {
      const part = this.mergeAllOf(this.deref(member) || {});
      Object.assign(merged.properties, part.properties || {});
      merged.required.push(...(part.required || []));
      for (const key of ["type", "description", "format"]) {
        if (merged[key] === undefined && part[key] !== undefined) merged[key] = part[key];
      }
    }
    if (Object.keys(merged.properties).length === 0) delete merged.properties;
    return merged;
  }

  // renderConstraints lists SCHEMA's validation keywords and examples;
  // PARAMETER adds a parameter's own example.
  renderConstraints(schema, parameter) {
    const c = text.constraints;
    const items = [];
    for (const key of ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength", "minItems", "maxItems", "multipleOf"]) {
      if (typeof schema[key] === "number") items.push(c[key](schema[key]));
    }
    if (schema.uniqueItems) items.push(c.uniqueItems());
    if (schema.pattern) {
      items.push(el("span", {}, c.pattern(""), el("code", {}, schema.pattern),
        schema.patternDescription ? ` (${schema.patternDescription})` : null));
    }
    if (Array.isArray(schema.enum)) {
      items.push(el("span", {}, c.enum(""), schema.enum.flatMap((v, i) => [i ? ", " : "", el("code", {}, JSON.stringify(v))])));
    }
    if (schema.const !== undefined) items.push(el("span", {}, c.const(""), el("code", {}, JSON.stringify(schema.const))));
    if (schema.default !== undefined) items.push(el("span", {}, c.default(""), el("code", {}, JSON.stringify(schema.default))));

    const examples = [];
    if (parameter && parameter.example !== undefined) examples.push(parameter.example);
    if (Array.isArray(schema.examples)) examples.push(...schema.examples);
    if (schema.example !== undefined) examples.push(schema.example);
    if (examples.length > 0 && !isSchemaURL(schema)) {
      items.push(el("span", {}, c.examples(""), examples.flatMap((v, i) => [i ? ", " : "", el("code", {}, JSON.stringify(v))])));
    }
    if (items.length === 0) return null;
    return el("ul", { class: "constraints" }, items.map((item) => el("li", {}, item)));
  }

  renderSchemas() {
    const schemas = (this.doc.components || {}).schemas || {};
    const names = Object.keys(schemas).sort();
    if (names.length === 0) return null;
    return el("section", { class: "schemas" }, el("h2", {}, text.schemas), names.map((name) =>
      el("details", { id: "schema-" + slug(name), class: "schema" },
        el("summary", {}, el("code", {}, name)),
        schemas[name].description ? prose(schemas[name].description) : null,
        this.renderSchema({ $ref: "#/components/schemas/" + name.replaceAll("~", "~0").replaceAll("/", "~1") }, "all", new Set(), 0))));
  }
}

// groupByTag returns a Map from tag to operations, tags in the document's
// declared order first, then in the order they appear; untagged operations
// come last.
function groupByTag(doc) {
  const groups = new Map();
  for (const tag of doc.tags || []) groups.set(tag.name, []);
  const untagged = [];
  for (const [path, pathItem] of Object.entries(doc.paths || {})) {
    for (const method of methodOrder) {
      const op = pathItem[method];
      if (!op) continue;
      const anchor = "op-" + slug(op.operationId || `${method}-${path}`);
      const searchText = [method, path, op.summary, op.operationId, ...(op.tags || [])].join(" ").toLowerCase();
      const operation = { method, path, op, pathItem, anchor, searchText };
      const tag = (op.tags || [])[0];
      if (!tag) {
        untagged.push(operation);
        continue;
      }
      if (!groups.has(tag)) groups.set(tag, []);
      groups.get(tag).push(operation);
    }
  }
  for (const [tag, operations] of groups) {
    if (operations.length === 0) groups.delete(tag);
  }
  if (untagged.length > 0) groups.set(text.untagged, untagged);
  return groups;
}

// applyFilter hides operations, nav entries and emptied groups that do not
// contain QUERY in their method, path, summary, id or tag.
function applyFilter(query) {
  const needle = query.trim().toLowerCase();
  for (const node of document.querySelectorAll("[data-search]")) {
    node.hidden = needle !== "" && !node.dataset.search.includes(needle);
  }
  for (const group of document.querySelectorAll(".nav-group, section.tag")) {
    const entries = group.querySelectorAll("[data-search]");
    group.hidden = entries.length > 0 && [...entries].every((entry) => entry.hidden);
  }
}

function describeScheme(scheme) {
  if (scheme.type === "http") return text.bearer(scheme.scheme || "");
  if (scheme.type === "apiKey") return el("span", {}, text.apiKey(scheme.in, ""), el("code", {}, scheme.name));
  return scheme.type || "";
}

// breakablePath lets a long PATH wrap after its slashes rather than inside
// a segment.
function breakablePath(path) {
  return path.split("/").flatMap((segment, i) => (i === 0 ? [segment] : [el("wbr"), "/" + segment]));
}

// renderPath shows PATH with its {parameters} highlighted.
function renderPath(path) {
  const code = el("code", { class: "path" });
  for (const part of path.split(/(\{[^}]+\})/)) {
    if (part) code.append(part.startsWith("{") ? el("span", { class: "path-param" }, part) : part);
  }
  return code;
}

function renderExample(example) {
  return el("pre", { class: "example" }, JSON.stringify(example, null, 2));
}

function refName(ref) {
  return ref.split("/").pop().replaceAll("~1", "/").replaceAll("~0", "~");
}

// isSchemaURL reports whether SCHEMA is the $schema link Huma adds to every
// body; its example URL points at example.com and only adds noise.
function isSchemaURL(schema) {
  return schema.readOnly && schema.format === "uri" && /schema/i.test(schema.description || "");
}

function statusRank(code) {
  if (code === "default") return 1000;
  const number = Number.parseInt(code.replace(/X/gi, "0"), 10);
  return Number.isNaN(number) ? 999 : number;
}

function slug(value) {
  return String(value).toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "");
}

main();
