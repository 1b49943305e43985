// The FlowBus web console: log in, browse any endpoint, edit objects with a form from their
// schema, watch them change live, run flows and answer them. Built on /client/flowbus.js only.
import { FlowBus, FlowBusError } from "/client/flowbus.js";

const WS = location.origin.replace(/^http/, "ws") + "/ws";
const $ = (selector) => document.querySelector(selector);
const view = $("#view");
let bus = null;
let watching = null; // the subscription of the view shown

const escape = (value) => String(value ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const describe = (error) =>
  `${error.message} (${error.errorcode ?? "CLIENT"}${error.errorid ? `, errorid ${error.errorid}` : ""})`;

function say(text, error = null) {
  const status = $("#status");
  status.className = error ? "error" : "";
  status.textContent = error ? describe(error) : text;
}

async function attempt(action) {
  try {
    return await authorized(action);
  } catch (error) {
    if (error instanceof FlowBusError) say("", error);
    else say("", { message: String(error), errorcode: "CLIENT" });
    return undefined;
  }
}

// -- the session: log in, refresh the token before it expires, log in again when it cannot -----

let session = null; // {token, id, username} of the logged-in user
let authenticated = false; // the bus took the session's token the last time it was asked
let connected = false; // the websocket is open
let refreshing = null; // the timer of the next refresh
let due = Infinity; // when that refresh is due (ms since the epoch)
let prompt = null; // while the login prompt is open: the promise of the next login

const AUTH_ERRORS = new Set(["AUTH_FAILED", "AUTH_REQUIRED"]);
const authError = (error) => AUTH_ERRORS.has(error?.errorcode);

function showConnection() {
  $("#connection").textContent = !session ? ""
    : !authenticated ? "not logged in"
    : connected ? `connected as ${session.username}` : "reconnecting…";
  $("#login-again").hidden = !(session && !authenticated);
  $("#logout").hidden = !session;
}

// Run a call; if the bus no longer takes the session's token, ask the user to log in again (the
// page stays as it is) and run it once more with the new token.
async function authorized(action) {
  for (;;) {
    try {
      return await action();
    } catch (error) {
      if (!authError(error) || !session) throw error;
      await expired();
    }
  }
}

// What a token says of itself: its lifetime decides when to refresh it (the bus's clock and the
// browser's need not agree, so only the difference of two of its times is used).
function claims(token) {
  try {
    return JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
  } catch {
    return {};
  }
}

// Refresh with a third of the token's lifetime left (a minute, for lifetimes over three).
function schedule() {
  clearTimeout(refreshing);
  const { iat, exp } = claims(session.token);
  if (!Number.isFinite(exp - iat)) return;
  const lifetime = exp - iat;
  const delay = Math.max(1, lifetime - Math.min(60, lifetime / 3)) * 1000;
  due = Date.now() + delay;
  refreshing = setTimeout(refresh, delay);
}

async function refresh() {
  clearTimeout(refreshing);
  if (!session || prompt) return;
  const client = bus;
  try {
    const answer = await client.run("auth/token", "refresh");
    if (bus === client && session) await adopt(answer, session.username); // not logged out meanwhile
  } catch (error) {
    if (bus !== client || !session) return;
    if (authError(error)) { expired(); return; }
    refreshing = setTimeout(refresh, 5000); // the bus is out of reach: try again
  }
}

// Timers of a hidden page may fire late: catch up when it is shown or reconnects.
document.addEventListener("visibilitychange", () => { if (session && Date.now() >= due) refresh(); });

async function adopt(answer, username) {
  session = { token: answer.token, id: answer.id, username };
  sessionStorage.setItem("flowbus-session", JSON.stringify(session));
  authenticated = true;
  showConnection();
  schedule();
  await bus.setToken(answer.token);
}

async function login(client, form) {
  const data = new FormData(form);
  const answer = await client.create("auth/token", { username: data.get("username"), password: data.get("password") });
  form.elements.password.value = "";
  return [answer, data.get("username")];
}

// The bus refused the session's token and it can no longer be refreshed: show the login prompt
// over the page, which stays as it is, and answer when the user has logged in again.
function expired() {
  if (prompt) return prompt;
  clearTimeout(refreshing);
  authenticated = false;
  showConnection();
  const dialog = $("#relogin");
  const form = dialog.querySelector("form");
  form.elements.username.value = session.username;
  form.querySelector(".form-error").textContent = "";
  prompt = new Promise((resolve) => {
    form.onsubmit = async (submitted) => {
      submitted.preventDefault();
      const answer = await submit(form, () => login(bus, form));
      if (!answer) return;
      dialog.close();
      prompt = null;
      await adopt(...answer);
      say("Logged in again.");
      resolve();
    };
  });
  dialog.showModal();
  dialog.querySelector("[name=password]").focus();
  return prompt;
}

// Closed without logging in (Escape): the header's button opens it again.
$("#login-again").onclick = () => { if (prompt) $("#relogin").showModal(); };

// Log out: the bus revokes the token, and the tab forgets it and everything it showed.
async function logout() {
  let note = "Logged out.";
  if (session && bus) {
    try {
      await bus.delete("auth/token", session.id);
    } catch (error) {
      if (!authError(error)) note = `Logged out here, but the bus did not revoke the token, which stays valid until it expires: ${describe(error)}`;
    }
  }
  forget();
  say(note);
}

function forget() {
  clearTimeout(refreshing);
  session = null;
  authenticated = false;
  allowed = null;
  prompt = null;
  sessionStorage.removeItem("flowbus-session");
  if ($("#relogin").open) $("#relogin").close();
  if (watching) { watching.unsubscribe(); watching = null; }
  bus?.close();
  bus = window.flowbus = null;
  views++;
  view.innerHTML = "";
  $("#endpoints").innerHTML = "";
  $("#app").hidden = true;
  $("#login").hidden = false;
  showConnection();
  $("#login").elements.username.focus();
}

$("#logout").onclick = logout;
$("#relogin .logout").onclick = logout;

// Ask before deleting: answers whether the user said yes (Escape and Cancel say no).
function confirmed(what) {
  const dialog = $("#confirm");
  $("#confirm-title").textContent = `Delete ${what}?`;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => dialog.addEventListener("close", () => resolve(dialog.returnValue === "yes"), { once: true }));
}

$("#login").addEventListener("submit", async (submitted) => {
  submitted.preventDefault();
  const anonymous = new FlowBus(WS);
  const answer = await submit(submitted.target, () => login(anonymous, submitted.target));
  anonymous.close();
  if (answer) start(...answer);
});

async function start(answer, username) {
  bus = new FlowBus(WS, { token: answer.token });
  window.flowbus = bus; // for the browser's console
  bus.onstatus = (state) => {
    connected = state === "open";
    showConnection();
    if (connected && session && Date.now() >= due) refresh();
  };
  await adopt(answer, username);
  const [endpoints, me] = await Promise.all([
    attempt(() => bus.list("system/endpoint", { limit: 1000 })),
    authorized(() => bus.run("system/whoami", "me")).catch((error) => error),
  ]);
  if (!endpoints) return;
  if (me instanceof Error) {
    // A role defined without RUN on system/whoami: every endpoint is shown, and the bus refuses
    // what the role may not do when it is tried.
    allowed = null;
    say("", { ...me, message: `Cannot ask the bus what this login may do, so everything is shown: ${me.message}` });
  } else {
    allowed = me.endpoints;
    say("Logged in.");
  }
  $("#login").hidden = true;
  $("#app").hidden = false;
  const list = $("#endpoints");
  list.innerHTML = "";
  const item = (label, show) => {
    const li = list.appendChild(document.createElement("li"));
    li.innerHTML = `<button type="button">${escape(label)}</button>`;
    const button = li.querySelector("button");
    button.onclick = () => {
      for (const other of list.querySelectorAll("[aria-current]")) other.removeAttribute("aria-current");
      button.setAttribute("aria-current", "page");
      openMenu(false);
      show();
    };
  };
  if (may("flows/flow", "LIST") && may("flows/execution", "LIST")) item("Flows and executions", () => showFlows());
  for (const endpoint of endpoints) {
    endpoint.methods = endpoint.methods.filter((method) => may(endpoint.name, method));
    if (endpoint.methods.length) item(endpoint.name, () => showEndpoint(endpoint));
  }
}

// What system/whoami said the login may call: {endpoint: [methods]} (null: it could not ask).
let allowed = null;
const may = (endpoint, method) => allowed === null || (allowed[endpoint] ?? []).includes(method);

// Each view drawn is numbered: an answer that comes back after the user went on to another view
// is dropped, and a view is cleared as soon as another is asked for.
let views = 0;

// On a narrow screen the endpoints are in a menu (a disclosure above the view), closed once one
// is chosen; on a wide one they are a column beside it, and the menu's button is not shown.
const menu = $("#menu");
function openMenu(open) {
  menu.setAttribute("aria-expanded", String(open));
  menu.parentElement.classList.toggle("open", open);
}
menu.onclick = () => openMenu(menu.getAttribute("aria-expanded") !== "true");

// Narrow screens show each table row as a block of "column: value" lines: every cell is given its
// column's name, whenever rows are added.
new MutationObserver(() => {
  for (const table of view.querySelectorAll("table")) {
    const names = [...(table.tHead?.rows[0]?.cells ?? [])].map((cell) => cell.textContent.trim());
    for (const tr of table.tBodies[0]?.rows ?? []) {
      [...tr.cells].forEach((cell, i) => { if (names[i] && !cell.dataset.label) cell.dataset.label = names[i]; });
    }
  }
}).observe(view, { childList: true, subtree: true });

// A form opened below the fold is brought into view, its first control focused.
function reveal(form) {
  form.scrollIntoView({ block: "nearest" });
  form.querySelector("input:not([type=hidden]), textarea, select")?.focus({ preventScroll: true });
}

function leave(title, description = "") {
  if (watching) { watching.unsubscribe(); watching = null; }
  window.scrollTo(0, 0);
  view.innerHTML = `<h2>${escape(title)}</h2>${description ? `<p>${escape(description)}</p>` : ""}<p>Loading…</p>`;
  return ++views;
}

// A page reloaded in the same tab goes on with its session, if the bus still takes its token.
async function resume() {
  let kept;
  try { kept = JSON.parse(sessionStorage.getItem("flowbus-session")); } catch { kept = null; }
  if (!kept?.token) return;
  const client = new FlowBus(WS, { token: kept.token });
  try {
    const answer = await client.run("auth/token", "refresh");
    start(answer, kept.username);
  } catch {
    sessionStorage.removeItem("flowbus-session");
  } finally {
    client.close();
  }
}

// The subscription of the view shown: made again from the last change it saw when the bus
// ended it because the session's token was refused (after the user logged in again).
function watch(endpoint, onevent) {
  if (watching) watching.unsubscribe();
  const follow = (since) => {
    const subscription = bus.subscribe(endpoint, { since }, onevent, async (error) => {
      if (!authError(error) || !session) { say("", error); return; }
      await expired();
      if (watching === subscription) follow(subscription.last ?? undefined);
    });
    watching = subscription;
  };
  follow(undefined);
}

// -- any endpoint: browse, search, page, create, edit, delete, live -----------------------------

const PAGE = 20; // objects per page

// Browse an endpoint: a page of its objects (LIST, or INDEX when searching), paged, and live.
async function showEndpoint(endpoint, page = 0, query = "") {
  const methods = new Set(endpoint.methods);
  if (!methods.has("LIST")) { callForm(endpoint, methods); return; }
  const shown = leave(endpoint.name, endpoint.description);
  const search = methods.has("INDEX") && query !== "";
  const parameters = search ? { q: query, limit: PAGE, page } : { limit: PAGE, page };
  const answer = await attempt(() => bus.envelope(search ? "INDEX" : "LIST", endpoint.name, { parameters }));
  if (!answer || shown !== views) return;
  const items = Array.isArray(answer.data) ? answer.data : [];
  const offset = answer.page?.offset ?? page * PAGE;
  // How many there are in all: from the page's metadata; for an endpoint that answers a bare
  // list, a short page is the last one.
  let total = answer.page?.total ?? (items.length < PAGE ? offset + items.length : Infinity);
  const fields = columns(endpoint, items);
  view.innerHTML = `<h2>${escape(endpoint.name)}</h2>${endpoint.description ? `<p>${escape(endpoint.description)}</p>` : ""}
    ${methods.has("INDEX") ? `<form id="search" class="panel" role="search"><label>Search <input name="q" value="${escape(query)}"></label>
      <button>Search</button></form>` : ""}
    <div class="scroll"><table><thead><tr><th>id</th>${fields.map((name) => `<th>${escape(name)}</th>`).join("")}<th></th></tr></thead>
      <tbody></tbody></table></div>
    <p id="empty">${search ? "Nothing found." : "Nothing here."}</p>
    <p class="pager"><button type="button" id="previous">Previous</button> <span id="position"></span>
       <button type="button" id="next">Next</button>
       ${methods.has("CREATE") ? '<button type="button" id="new">New</button>' : ""}</p>
    <div id="editor"></div>`;
  const body = view.querySelector("tbody");
  const draw = (obj) => row(endpoint, obj, methods, fields);
  for (const obj of items) body.append(draw(obj));
  const pager = () => {
    const pages = Number.isFinite(total) ? Math.max(1, Math.ceil(total / PAGE)) : null;
    view.querySelector("#position").textContent = `page ${page + 1}${pages ? ` of ${pages}` : ""}`;
    view.querySelector("#previous").disabled = page === 0;
    view.querySelector("#next").disabled = offset + PAGE >= total;
    view.querySelector("#empty").hidden = body.rows.length > 0;
  };
  pager();
  const searchForm = view.querySelector("#search");
  if (searchForm) searchForm.onsubmit = (e) => { e.preventDefault(); showEndpoint(endpoint, 0, new FormData(e.target).get("q").trim()); };
  view.querySelector("#previous").onclick = () => showEndpoint(endpoint, Math.max(0, page - 1), query);
  view.querySelector("#next").onclick = () => showEndpoint(endpoint, page + 1, query);
  if (methods.has("CREATE")) view.querySelector("#new").onclick = () => editor(endpoint, null);
  // Live: a row shown follows its object; a new object is added only where it belongs, at the end
  // of the last page (LIST lists in creation order), never among a search's results, which are
  // the bus's ranking.
  watch(endpoint.name, (event) => {
    const known = [...body.rows].find((r) => r.dataset.id === event.objectid);
    if (event.event === "DELETED") {
      known?.remove();
      if (known || !search) total = Math.max(0, total - 1);
    } else if (known) {
      const fresh = draw(event.data);
      fresh.classList.add("changed");
      known.replaceWith(fresh);
    } else if (event.event === "CREATED" && !search) {
      const last = offset + body.rows.length >= total;
      total += 1;
      if (last && body.rows.length < PAGE) {
        const fresh = draw(event.data);
        fresh.classList.add("changed");
        body.append(fresh);
      }
    }
    pager();
  });
}

// The columns of an endpoint's table besides id: its title field, up to four more fields of its
// schema (or, without one, of the objects listed) that read well in a cell and that some object
// listed has, and when it changed.
function columns(endpoint, items) {
  const present = (name) => items.some((obj) => obj[name] !== undefined);
  const title = endpoint.title ?? ["name", "title", "username", "label"].find(present);
  const skip = new Set(["id", "created", "updated", "version", "title", title]);
  const properties = endpoint.schema?.properties;
  const candidates = properties
    ? Object.keys(properties).filter((name) => {
      const { type } = kind(properties[name]);
      return type !== "object" && (type !== "array" || strings(properties[name]));
    })
    : [...new Set(items.flatMap((obj) => Object.keys(obj)))].filter((name) =>
      items.every((obj) => readable(obj[name])));
  const filled = (name) => items.length === 0 || items.some((obj) => !["", null, undefined].includes(obj[name]));
  const more = candidates.filter((name) => !skip.has(name) && filled(name)).slice(0, 4);
  const updated = properties || present("updated") ? ["updated"] : [];
  return [...(title ? [title] : []), ...more, ...updated];
}

const readable = (value) => value === undefined || value === null || typeof value !== "object"
  || (Array.isArray(value) && value.every((item) => item === null || typeof item !== "object"));

// A field's value as a cell shows it (cut at `limit` characters; its tooltip has it whole).
function text(value, limit = Infinity) {
  if (value === undefined || value === null) return "";
  const shown = Array.isArray(value) ? value.map((item) => (typeof item === "object" ? JSON.stringify(item) : String(item))).join(", ")
    : typeof value === "object" ? JSON.stringify(value) : String(value);
  return shown.length > limit ? `${shown.slice(0, limit - 1)}…` : shown;
}

// An endpoint the login may not LIST (flows/event, flows/command: RUN only): a form for one call,
// its parameters and data, and the answer.
function callForm(endpoint, methods) {
  leave(endpoint.name);
  const choices = [...methods];
  const objectid = `field-${++controls}`;
  const parameters = `field-${++controls}`;
  const data = `field-${++controls}`;
  const method = `field-${++controls}`;
  view.innerHTML = `<h2>${escape(endpoint.name)}</h2>${endpoint.description ? `<p>${escape(endpoint.description)}</p>` : ""}
    <form class="panel" id="call-form" novalidate>
      ${choices.length > 1 ? `<div class="field"><label for="${method}">method</label><select id="${method}" name="method">
        ${choices.map((m) => `<option>${escape(m)}</option>`).join("")}</select></div>` : ""}
      <div class="field"><label for="${objectid}">objectid</label><input id="${objectid}" name="objectid"></div>
      <div class="field"><label for="${parameters}">parameters <small>(JSON)</small></label>
        <textarea id="${parameters}" name="parameters" rows="2">{}</textarea></div>
      <div class="field"><label for="${data}">data <small>(JSON)</small></label>
        <textarea id="${data}" name="data" rows="4">{}</textarea></div>
      <p class="form-error" role="alert"></p>
      <button>${choices.length > 1 ? "Call" : choices[0] === "RUN" ? "Run" : escape(choices[0])}</button>
    </form>
    <h3>Answer</h3><pre><output for="${objectid} ${parameters} ${data}" aria-live="polite"></output></pre>`;
  const form = view.querySelector("#call-form");
  form.onsubmit = async (submitted) => {
    submitted.preventDefault();
    const answer = await submit(form, () => {
      const json = (name) => {
        const given = form.elements[name].value.trim();
        try { return given ? JSON.parse(given) : undefined; } catch (error) { throw new FieldError(name, `${name}: not JSON (${error.message})`); }
      };
      const call = { parameters: json("parameters"), data: json("data") };
      if (form.elements.objectid.value) call.objectid = form.elements.objectid.value;
      return bus.envelope(form.elements.method?.value ?? choices[0], endpoint.name, call);
    });
    if (answer) {
      view.querySelector("output").textContent = JSON.stringify(answer.data ?? null, null, 2);
      say(`${endpoint.name}: answered.`);
    }
  };
}

function row(endpoint, obj, methods, fields) {
  const tr = document.createElement("tr");
  tr.dataset.id = obj.id;
  // An INDEX entry carries the title as "title", whatever the title field is called.
  const value = (name, i) => obj[name] ?? (i === 0 && name === endpoint.title ? obj.title : undefined);
  tr.innerHTML = `<td>${escape(obj.id)}</td>${fields.map((name, i) => `<td title="${escape(text(value(name, i)))}">${escape(text(value(name, i), 120))}</td>`).join("")}
    <td>${methods.has("UPDATE") ? '<button type="button" class="edit">Edit</button>' : ""}
        ${methods.has("DELETE") ? '<button type="button" class="delete">Delete</button>' : ""}</td>`;
  tr.querySelector(".edit")?.addEventListener("click", async () => {
    const current = methods.has("OPEN") ? await attempt(() => bus.open(endpoint.name, obj.id)) : obj;
    if (current) editor(endpoint, current);
  });
  tr.querySelector(".delete")?.addEventListener("click", async () => {
    const what = obj.name ?? obj.title ?? obj.username;
    if (!(await confirmed(`${what ? `${what} (${obj.id})` : obj.id} from ${endpoint.name}`))) return;
    const gone = await attempt(() => bus.delete(endpoint.name, obj.id, { parameters: { version: obj.version } }));
    if (gone) { tr.remove(); say("Deleted."); }
  });
  return tr;
}

// A form from the endpoint's JSON Schema: one control per top-level property, the rest as JSON.
function editor(endpoint, obj) {
  const properties = endpoint.schema?.properties ?? {};
  const required = new Set(endpoint.schema?.required ?? []);
  const fields = Object.entries(properties).map(([name, spec]) => field(name, spec, obj?.[name], required.has(name)));
  const place = view.querySelector("#editor");
  place.innerHTML = `<form class="panel" id="object-form" novalidate><h3>${obj ? `Edit ${escape(obj.id)}` : "New object"}</h3>
    ${fields.join("")}
    <div class="field"><label for="field-${++controls}">Other fields <small>(JSON)</small></label>
      <textarea id="field-${controls}" name="__json">${escape(JSON.stringify(extra(obj, properties), null, 1))}</textarea></div>
    <p class="form-error" role="alert"></p>
    <button>${obj ? "Save" : "Create"}</button> <button type="button" class="cancel">Cancel</button></form>`;
  const form = place.querySelector("form");
  form.querySelector(".cancel").onclick = () => { place.innerHTML = ""; };
  reveal(form);
  form.onsubmit = async (submitted) => {
    submitted.preventDefault();
    const saved = await submit(form, async () => {
      const data = read(form, properties, required, obj);
      return obj
        ? bus.update(endpoint.name, obj.id, data, { parameters: { version: obj.version } })
        : bus.create(endpoint.name, data);
    });
    if (saved) { say(obj ? "Saved." : "Created."); place.innerHTML = ""; }
  };
}

// Run a form's action; any failure (the form's own checks, the bus's refusal, a lost connection)
// is shown in the form, beside its button, and in the status line. Answers the result, or
// undefined when it failed.
async function submit(form, action) {
  const alert = form.querySelector(".form-error");
  alert.textContent = "";
  for (const marked of form.querySelectorAll("[aria-invalid]")) marked.removeAttribute("aria-invalid");
  try {
    return await (form.closest("dialog") || form.id === "login" ? action() : authorized(action));
  } catch (error) {
    if (error instanceof Notice) {
      alert.textContent = error.message;
      say(error.message);
      return undefined;
    }
    const shown = error.errorcode === "CONFLICT"
      ? { ...error, message: `Someone else changed this object meanwhile: reopen it to see their version (${error.message})` }
      : error;
    const text = describe(shown);
    alert.textContent = text;
    say("", shown);
    const name = error instanceof FieldError ? error.field : error.field?.split(/[.[]/)[0];
    const input = name && form.elements[name];
    if (input?.setAttribute) { input.setAttribute("aria-invalid", "true"); input.focus(); }
    return undefined;
  }
}

// Not a failure: something to tell about a form (shown where its errors are).
class Notice extends Error {}

class FieldError extends Error {
  constructor(field, message) {
    super(message);
    this.field = field;
    this.errorcode = "CLIENT";
  }
}

// The JSON type a property's schema gives ("null" aside), and whether it also allows null.
function kind(spec) {
  const types = [spec?.type ?? []].flat();
  const type = types.find((t) => t !== "null") ?? "any";
  return { type, nullable: types.includes("null") };
}

const strings = (spec) => kind(spec).type === "array" && kind(spec.items).type === "string" && !spec.items?.enum;

let controls = 0; // makes each control's id unique on the page

// One control for a property, after its label (a label never holds its control: a control's
// content would be read as part of its name).
function field(name, spec = {}, value = undefined, required = false) {
  const id = `field-${++controls}`;
  const { type } = kind(spec);
  const mark = required ? ' <abbr class="required" title="required">*</abbr>' : "";
  const attributes = `id="${id}" name="${escape(name)}"${required ? ' aria-required="true"' : ""}`;
  const label = (hint = "") => `<label for="${id}">${escape(name)}${mark}${hint ? ` <small>${hint}</small>` : ""}</label>`;
  if (Array.isArray(spec.enum)) {
    const chosen = spec.enum.findIndex((choice) => same(choice, value));
    const options = spec.enum.map((choice, i) =>
      `<option value="${i}"${i === chosen ? " selected" : ""}>${escape(typeof choice === "string" ? choice : JSON.stringify(choice))}</option>`);
    return `<div class="field">${label()}<select ${attributes}>
      <option value=""${chosen < 0 ? " selected" : ""}>${required ? "(choose one)" : "(none)"}</option>${options.join("")}</select></div>`;
  }
  if (type === "boolean") {
    return `<div class="field check"><input ${attributes} type="checkbox" ${value ? "checked" : ""}> ${label()}</div>`;
  }
  if (strings(spec)) {
    const lines = Array.isArray(value) ? value.join("\n") : "";
    return `<div class="field">${label("(one per line)")}<textarea ${attributes} rows="3">${escape(lines)}</textarea></div>`;
  }
  if (type === "array" || type === "object" || (type === "any" && value !== undefined && typeof value !== "string")) {
    const json = value === undefined ? "" : JSON.stringify(value, null, 1);
    return `<div class="field">${label("(JSON)")}<textarea ${attributes} rows="3">${escape(json)}</textarea></div>`;
  }
  const number = type === "number" || type === "integer";
  const step = type === "integer" ? ' step="1"' : number ? ' step="any"' : "";
  return `<div class="field">${label()}<input ${attributes} type="${number ? "number" : "text"}"${step}
    value="${escape(value ?? "")}"></div>`;
}

function extra(obj, properties) {
  const rest = {};
  for (const [key, value] of Object.entries(obj ?? {})) {
    if (!(key in properties) && !["id", "created", "updated", "version"].includes(key)) rest[key] = value;
  }
  return rest;
}

// What a control holds, as the value its schema asks for; undefined when it is empty.
function value(form, name, spec) {
  const input = form.elements[name];
  const { type } = kind(spec);
  if (Array.isArray(spec.enum)) return input.value === "" ? undefined : spec.enum[Number(input.value)];
  if (type === "boolean") return input.checked;
  const text = input.value;
  if (text.trim() === "") return undefined;
  if (type === "number" || type === "integer") {
    const number = Number(text);
    if (!Number.isFinite(number) || (type === "integer" && !Number.isInteger(number))) {
      throw new FieldError(name, `${name}: ${JSON.stringify(text)} is not ${type === "integer" ? "a whole number" : "a number"}`);
    }
    return number;
  }
  if (strings(spec)) return text.split("\n").map((line) => line.trim()).filter((line) => line !== "");
  if (input.tagName === "TEXTAREA") {
    try { return JSON.parse(text); } catch (error) { throw new FieldError(name, `${name}: not JSON (${error.message})`); }
  }
  return text;
}

// The data of a save. For a new object: every field filled in. For an edited one: only what
// changed, and a field emptied is set to the empty value its schema allows (null where it may be
// null, else "", [] or {}): an UPDATE merges the fields it is given, so leaving it out would keep
// the old value.
function read(form, properties, required = new Set(), original = null) {
  let others;
  try {
    others = JSON.parse(form.elements.__json.value || "{}");
  } catch (error) {
    throw new FieldError("__json", `Other fields: not JSON (${error.message})`);
  }
  if (others === null || typeof others !== "object" || Array.isArray(others)) {
    throw new FieldError("__json", "Other fields: a JSON object, {\"field\": value, ...}");
  }
  const data = {};
  for (const [name, given] of Object.entries(others)) {
    if (!original || !same(original[name], given)) data[name] = given;
  }
  for (const name of Object.keys(extra(original, properties))) if (!(name in others)) data[name] = null;
  for (const [name, spec] of Object.entries(properties)) {
    let given = value(form, name, spec);
    if (given === false && original && original[name] === undefined) continue; // an unticked box it never had
    if (given === undefined) {
      if (required.has(name)) throw new FieldError(name, `${name} is required`);
      if (!original || original[name] === undefined) continue;
      given = emptied(name, spec);
    }
    if (!original || !same(original[name], given)) data[name] = given;
  }
  if (original && Object.keys(data).length === 0) throw new Notice("Nothing to save: no field was changed.");
  return data;
}

const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

function emptied(name, spec) {
  const { type, nullable } = kind(spec);
  if (Array.isArray(spec.enum) && !spec.enum.includes(null)) {
    throw new FieldError(name, `${name} cannot be emptied: it is one of ${spec.enum.map((c) => JSON.stringify(c)).join(", ")}`);
  }
  if (nullable || type === "any") return null;
  const empty = { string: "", array: [], object: {} };
  if (type in empty) return empty[type];
  throw new FieldError(name, `${name} cannot be emptied: its schema allows neither null nor an empty ${type}`);
}

// -- flows: start, watch, send events, answer ---------------------------------------------------

async function showFlows() {
  const shown = leave("Flows");
  const [flows, executions] = await Promise.all([
    attempt(() => bus.list("flows/flow", { limit: 100 })),
    attempt(() => bus.list("flows/execution", { limit: EXECUTIONS })),
  ]);
  if (!flows || !executions || shown !== views) return;
  const start = may("flows/flow", "RUN");
  view.innerHTML = `<h2>Flows</h2><div class="scroll"><table><thead><tr><th>flow</th>${start ? "<th>input (JSON)</th><th></th>" : ""}</tr></thead>
    <tbody id="flows"></tbody></table></div>
    ${may("flows/event", "RUN") ? `<form id="event" class="panel"><h3>Send an event</h3>
      <label>Event <input name="name" required></label>
      <label>Input (JSON) <textarea name="input">{}</textarea></label>
      <label>Execution id (empty: every execution waiting for it) <input name="contextId"></label>
      <button>Send</button></form>` : ""}
    <h2>Executions</h2><div class="scroll"><table><thead><tr><th>id</th><th>flow</th><th>status</th><th>progress</th><th>state</th><th></th></tr></thead>
      <tbody id="executions"></tbody></table></div><div id="answer"></div>`;
  const flowRows = view.querySelector("#flows");
  for (const flow of flows) {
    const tr = flowRows.appendChild(document.createElement("tr"));
    tr.innerHTML = `<td>${escape(flow.name)}</td>`;
    if (!start) continue;
    tr.insertAdjacentHTML("beforeend", `<td><label>Input for ${escape(flow.name)}
      <textarea class="input">{}</textarea></label></td><td><button type="button">Start</button></td>`);
    tr.querySelector("button").onclick = async () => {
      let input;
      try { input = JSON.parse(tr.querySelector(".input").value || "{}"); } catch { say("", { message: "Input: not JSON", errorcode: "CLIENT" }); return; }
      const started = await attempt(() => bus.run("flows/flow", flow.id, input));
      if (started) say(`Started ${flow.name}: ${started.id}`);
    };
  }
  const events = view.querySelector("#event");
  if (events) events.onsubmit = async (submitted) => {
    submitted.preventDefault();
    const form = new FormData(submitted.target);
    let input;
    try { input = JSON.parse(form.get("input") || "{}"); } catch { say("", { message: "Input: not JSON", errorcode: "CLIENT" }); return; }
    const data = { input };
    if (form.get("contextId")) data.contextId = form.get("contextId");
    const sent = await attempt(() => bus.run("flows/event", form.get("name"), data));
    if (sent) say(`${sent.message}: ${sent.transitions.length} moved, ${sent.executions.length} started`);
  };
  const body = view.querySelector("#executions");
  const known = new Map(); // what is known of each execution shown: the events bring parts of it
  for (const execution of executions) showExecution(body, known, execution, EXECUTIONS);
  watch("flows/execution", (event) => {
    if (event.event === "DELETED") {
      known.delete(event.objectid);
      [...body.rows].find((r) => r.dataset.id === event.objectid)?.remove();
    } else {
      showExecution(body, known, { id: event.objectid, ...event.data }, EXECUTIONS);
    }
  });
}

const EXECUTIONS = 30; // how many executions the flows page lists

// Executions are shown newest first, as LIST answers them: a new one on top, a known one where it
// is, one older than every execution shown only while the list is not cut short. (Their ids are
// UUIDv7s, which sort by creation time.)
function showExecution(body, known, update, limit) {
  const shown = [...body.rows].find((r) => r.dataset.id === update.id);
  const execution = { ...known.get(update.id), ...update };
  const tr = document.createElement("tr");
  tr.dataset.id = execution.id;
  tr.dataset.status = execution.status;
  const history = (execution.executionHistory ?? []).map((h) => h.stateName).join(" → ");
  tr.innerHTML = `<td>${escape(execution.id)}</td><td>${escape(execution.flow?.name ?? execution.flowName)}</td>
    <td class="status">${escape(execution.status)}</td>
    <td><progress max="100" value="${Number(execution.percentage ?? 0)}" aria-label="progress of ${escape(execution.id)}"></progress></td>
    <td>${escape(execution.currentState)}${history ? `<br><small>${escape(history)}</small>` : ""}</td>
    <td>${execution.status === "USER_INPUT" && may("flows/execution", "RUN") ? '<button type="button">Answer</button>' : ""}</td>`;
  tr.querySelector("button")?.addEventListener("click", () => answerForm(execution));
  if (shown) {
    shown.replaceWith(tr);
  } else {
    const older = [...body.rows].find((r) => r.dataset.id < execution.id);
    if (older) older.before(tr);
    else if (body.rows.length < limit) body.append(tr);
    else return;
  }
  known.set(execution.id, execution);
}

async function answerForm(execution) {
  const progress = await attempt(() => bus.open("flows/execution", execution.id, { parameters: { view: "progress" } }));
  if (!progress) return;
  const properties = progress.schema?.properties ?? {};
  const required = new Set(progress.schema?.required ?? []);
  const place = view.querySelector("#answer");
  place.innerHTML = `<form class="panel" novalidate><h3>${escape(progress.message || "Answer")}</h3>
    ${Object.entries(properties).map(([name, spec]) => field(name, spec, undefined, required.has(name))).join("")}
    <input type="hidden" name="__json" value="{}"><p class="form-error" role="alert"></p>
    <button>Answer</button> <button type="button" class="cancel">Cancel</button></form>`;
  const form = place.querySelector("form");
  form.querySelector(".cancel").onclick = () => { place.innerHTML = ""; };
  reveal(form);
  form.onsubmit = async (submitted) => {
    submitted.preventDefault();
    const answered = await submit(form, () =>
      bus.run("flows/execution", execution.id, read(form, properties, required), { parameters: { operation: "input" } }));
    if (answered) { say("Answered."); place.innerHTML = ""; }
  };
}

resume();
