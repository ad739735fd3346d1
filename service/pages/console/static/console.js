// The linkgate console: one page, a screen per location hash, and nothing but
// calls to the public REST API (/api/v1) with the key kept in sessionStorage.
"use strict";
(function () {
  const KEY_STORAGE = "linkgate.console.key";
  const PAGE_SIZE = 20;
  const main = document.getElementById("main");
  const notice = document.getElementById("notice");
  const nav = document.getElementById("nav");
  const navKeys = document.getElementById("nav-keys");
  const session = { admin: null, passwords: null };

  // --- talking to the API ------------------------------------------------

  class ApiError extends Error {
    constructor(status, problem, retryAfter) {
      super(problem.detail || problem.title || "Request failed");
      this.status = status;
      this.problem = problem;
      this.retryAfter = retryAfter;
    }
  }

  function retryAfterSeconds(response) {
    const header = response.headers.get("Retry-After");
    if (header && /^\d+$/.test(header.trim())) return Number(header.trim());
    // RateLimit: "key";r=0;t=12 (draft-ietf-httpapi-ratelimit-headers)
    const state = response.headers.get("RateLimit");
    const match = state && /;\s*t=(\d+)/.exec(state);
    return match ? Number(match[1]) : null;
  }

  async function api(method, path, body) {
    const headers = { Accept: "application/json", Authorization: "Bearer " + sessionStorage.getItem(KEY_STORAGE) };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(path, {
        method, headers, cache: "no-store", body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (_) {
      throw new ApiError(0, { title: "Server unreachable",
        detail: "linkgate could not be reached. Check your connection, then try again." }, null);
    }
    if (response.status === 204) return null;
    const text = await response.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
    if (response.ok) return data;
    const problem = data && typeof data === "object" ? data : { title: response.statusText || "Error" };
    throw new ApiError(response.status, problem, retryAfterSeconds(response));
  }

  function query(params) {
    const search = new URLSearchParams();
    for (const [name, value] of Object.entries(params)) {
      if (value !== undefined && value !== null && value !== "") search.append(name, value);
    }
    const text = search.toString();
    return text ? "?" + text : "";
  }

  // --- messages ----------------------------------------------------------

  function say(text, kind) {
    notice.hidden = false;
    notice.className = "notice " + (kind || "ok");
    notice.textContent = "";
    // A fresh node each time, so screen readers announce a repeated message too.
    const p = document.createElement("p");
    p.textContent = text;
    notice.appendChild(p);
  }

  function quiet() {
    notice.hidden = true;
    notice.textContent = "";
  }

  function clearFieldErrors(form) {
    form.querySelectorAll(".field-error").forEach((node) => node.remove());
    form.querySelectorAll("[aria-invalid]").forEach((node) => {
      node.removeAttribute("aria-invalid");
      const described = (node.getAttribute("aria-describedby") || "").split(" ").filter((id) => !id.endsWith("-error"));
      if (described.length) node.setAttribute("aria-describedby", described.join(" "));
      else node.removeAttribute("aria-describedby");
    });
  }

  // An input for an API field name such as "query.allow[2]" or "tags[0]".
  function inputFor(form, field) {
    const base = field.replace(/\[.*$/, "").replace(/\.add\..*$/, ".add");
    for (const name of [field, base]) {
      const found = form.querySelector('[name="' + CSS.escape(name) + '"]');
      if (found) return found;
    }
    return null;
  }

  // Turn an API error into something a person can act on; true when handled here.
  function report(error, form) {
    if (!(error instanceof ApiError)) {
      say("Something went wrong in the console: " + error.message, "error");
      return;
    }
    if (error.status === 401) {
      sessionStorage.removeItem(KEY_STORAGE);
      session.admin = null;
      location.hash = "#/signin";
      say("Please sign in again: " + (error.problem.detail || "the key was not accepted."), "error");
      return;
    }
    if (error.status === 429) {
      const when = error.retryAfter != null ? "in " + error.retryAfter + " s" : "in a moment";
      say("Too many requests for now. Try again " + when + ".", "error");
      return;
    }
    const p = error.problem;
    let text = (p.title || "Error") + ": " + (p.detail || "");
    if (error.status === 403) text += " Ask an admin for a key whose role allows this.";
    if (error.status === 503 && error.retryAfter != null) text += " Try again in " + error.retryAfter + " s.";
    if (form) clearFieldErrors(form);
    if (Array.isArray(p.errors) && p.errors.length) {
      const unplaced = [];
      for (const item of p.errors) {
        const input = form ? inputFor(form, item.field) : null;
        if (!input) { unplaced.push(item.field + ": " + item.reason); continue; }
        const id = input.id + "-error";
        let node = document.getElementById(id);
        if (!node) {
          node = document.createElement("p");
          node.id = id;
          node.className = "field-error";
          input.closest(".field, .choices, fieldset").appendChild(node);
          input.setAttribute("aria-describedby", ((input.getAttribute("aria-describedby") || "") + " " + id).trim());
        }
        node.textContent = (node.textContent ? node.textContent + " " : "") + fieldLabel(input) + ": " + item.reason;
        input.setAttribute("aria-invalid", "true");
      }
      text = "Please correct the marked fields." + (unplaced.length ? " " + unplaced.join("; ") : "");
      const first = form && form.querySelector("[aria-invalid]");
      if (first) first.focus();
    }
    say(text, "error");
  }

  function fieldLabel(input) {
    const label = input.id && document.querySelector('label[for="' + input.id + '"]');
    return label ? label.textContent.replace(/\s*\(required\)/, "") : input.name;
  }

  // --- screens -------------------------------------------------------------

  function show(templateId, title) {
    main.textContent = "";
    main.appendChild(document.getElementById(templateId).content.cloneNode(true));
    document.title = title + " · linkgate console";
    const heading = main.querySelector("h1");
    if (heading && heading.textContent === "") heading.textContent = title;
    if (heading) heading.focus();
    return main;
  }

  function formatTime(iso) {
    return iso ? new Date(iso).toLocaleString() : "never";
  }

  const statusLabels = {
    active: "Active", scheduled: "Scheduled", expired: "Expired", exhausted: "Used up",
    disabled: "Disabled", blocked: "Blocked",
  };

  function badge(node, status) {
    node.textContent = statusLabels[status] || status;
    node.className = "badge badge-" + status;
  }

  async function signIn() {
    nav.hidden = true;
    show("tpl-signin", "Sign in");
    const form = document.getElementById("signin-form");
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const key = form.elements.key.value.trim();
      clearFieldErrors(form);
      if (!key) {
        report(new ApiError(422, { title: "Missing key", errors: [{ field: "key", reason: "paste your API key" }] }), form);
        return;
      }
      sessionStorage.setItem(KEY_STORAGE, key);
      try {
        await api("GET", "/api/v1/links?limit=1");
      } catch (error) {
        sessionStorage.removeItem(KEY_STORAGE); // a key not (yet) accepted is not kept
        report(error, form);
        return;
      }
      quiet();
      location.hash = "#/links";
    });
  }

  // Whether the key may manage keys: asked once per sign-in (403 means not).
  async function learnRole() {
    if (session.admin !== null) return;
    try {
      await api("GET", "/api/v1/keys");
      session.admin = true;
    } catch (error) {
      if (error.status === 401) throw error;
      session.admin = false;
    }
    navKeys.hidden = !session.admin;
  }

  async function linksScreen() {
    show("tpl-links", "Links");
    const form = document.getElementById("search-form");
    const list = document.getElementById("links-list");
    const more = document.getElementById("links-more");
    const count = document.getElementById("links-count");
    let cursor = null;
    let shown = 0;
    let latest = 0; // only the newest request's answer is shown (a search may overtake the first load)

    api("GET", "/api/v1/tags").then((tags) => {
      const select = form.elements.tag;
      for (const { tag, links } of tags.data) {
        const option = document.createElement("option");
        option.value = tag;
        option.textContent = tag + " (" + links + ")";
        select.appendChild(option);
      }
    }, (error) => report(error));

    async function load(reset) {
      const filters = {
        q: form.elements.q.value.trim(), status: form.elements.status.value, tag: form.elements.tag.value,
        created_after: dayStart(form.elements.created_from.value, 0),
        created_before: dayStart(form.elements.created_until.value, 1),
        limit: PAGE_SIZE, cursor: reset ? null : cursor,
      };
      const mine = ++latest;
      let page;
      try {
        page = await api("GET", "/api/v1/links" + query(filters));
      } catch (error) {
        if (mine === latest) report(error, form);
        return;
      }
      if (mine !== latest) return;
      if (reset) { list.textContent = ""; shown = 0; }
      for (const link of page.data) list.appendChild(card(link));
      shown += page.data.length;
      cursor = page.next_cursor;
      more.hidden = !cursor;
      count.textContent = shown === 0 ? "No links match." : shown + (cursor ? "+" : "") + " link" + (shown === 1 ? "" : "s") + " shown.";
      return page.data.length;
    }

    form.addEventListener("submit", (event) => { event.preventDefault(); quiet(); load(true); });
    more.addEventListener("click", async () => {
      const before = list.children.length;
      if (await load(false)) {
        const next = list.children[before] && list.children[before].querySelector("a");
        if (next) next.focus(); // keyboard users continue where the new links start
      }
    });
    await load(true);
  }

  // The start of a local calendar day (YYYY-MM-DD), `plus` days later, as RFC 3339 UTC; "" stays "".
  function dayStart(day, plus) {
    if (!day) return "";
    const [year, month, date] = day.split("-").map(Number);
    return new Date(year, month - 1, date + plus).toISOString();
  }

  function card(link) {
    const node = document.getElementById("tpl-link-card").content.cloneNode(true);
    const open = node.querySelector(".js-open");
    open.href = "#/links/" + encodeURIComponent(link.code);
    open.textContent = link.title ? link.title + " (" + link.code + ")" : link.code;
    node.querySelector(".js-url").textContent = link.url;
    badge(node.querySelector(".js-status"), link.status);
    node.querySelector(".js-visits").textContent = link.visits + " visit" + (link.visits === 1 ? "" : "s");
    node.querySelector(".js-tags").textContent = link.tags.length ? "Tags: " + link.tags.join(", ") : "";
    return node;
  }

  // Whether POST /api/v1/links takes a password, as the API's own OpenAPI document says.
  async function passwordsSupported() {
    if (session.passwords !== null) return session.passwords;
    try {
      const response = await fetch("/openapi.json", { cache: "no-store" });
      const doc = await response.json();
      const create = doc.components.schemas.LinkCreate;
      session.passwords = Boolean(create && create.properties && create.properties.password);
    } catch (_) {
      session.passwords = false;
    }
    return session.passwords;
  }

  function list(text) {
    return text.split(",").map((item) => item.trim()).filter(Boolean);
  }

  function linkBody(form) {
    const f = form.elements;
    const body = { url: f.url.value.trim() };
    if (f.alias.value.trim()) body.alias = f.alias.value.trim();
    if (f.title.value.trim()) body.title = f.title.value.trim();
    if (list(f.tags.value).length) body.tags = list(f.tags.value);
    if (f.redirect_status.value) body.redirect_status = Number(f.redirect_status.value);
    if (f.valid_until.value) body.valid_until = new Date(f.valid_until.value).toISOString();
    if (f.max_visits.value) body.max_visits = Number(f.max_visits.value);
    if (!f.password.closest(".field").hidden && f.password.value) body.password = f.password.value;
    if (f["query.mode"].value) {
      const policy = { mode: f["query.mode"].value, on_conflict: form.querySelector('[name="query.on_conflict"]:checked').value };
      if (list(f["query.allow"].value).length) policy.allow = list(f["query.allow"].value);
      if (list(f["query.deny"].value).length) policy.deny = list(f["query.deny"].value);
      const add = {};
      for (const line of f["query.add"].value.split("\n")) {
        if (!line.trim()) continue;
        const at = line.indexOf("=");
        add[(at < 0 ? line : line.slice(0, at)).trim()] = at < 0 ? "" : line.slice(at + 1).trim();
      }
      if (Object.keys(add).length) policy.add = add;
      body.query = policy;
    }
    return body;
  }

  async function newScreen() {
    show("tpl-new", "New link");
    const form = document.getElementById("new-form");
    const passwordField = document.getElementById("new-password-field");
    passwordField.hidden = !(await passwordsSupported());
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearFieldErrors(form);
      if (!form.elements.url.value.trim()) {
        report(new ApiError(422, { title: "Missing URL", errors: [{ field: "url", reason: "give the URL the link sends visitors to" }] }), form);
        return;
      }
      let link;
      try {
        link = await api("POST", "/api/v1/links", linkBody(form));
      } catch (error) {
        // The OpenAPI document said passwords are taken, but the API refuses the field as unknown
        // (pydantic: "Extra inputs are not permitted"): say so and take the field away.
        const unknownPassword = error.status === 422 && (error.problem.errors || []).some(
          (e) => e.field === "password" && /not permitted|extra/i.test(e.reason));
        if (unknownPassword) {
          session.passwords = false;
          passwordField.hidden = true;
          say("This server does not support link passwords, so the link was not created. Create it again without one.", "error");
          return;
        }
        report(error, form);
        return;
      }
      location.hash = "#/links/" + encodeURIComponent(link.code);
      say("Link created: " + link.short_url);
    });
  }

  function fact(list, term, value) {
    const dt = document.createElement("dt");
    dt.textContent = term;
    const dd = document.createElement("dd");
    if (value instanceof Node) dd.appendChild(value); else dd.textContent = value;
    list.append(dt, dd);
  }

  function policySummary(policy) {
    if (!policy) return "Server default";
    const parts = [policy.mode === "drop" ? "drop visitor parameters" : "forward visitor parameters"];
    if (policy.allow && policy.allow.length) parts.push("allow " + policy.allow.join(", "));
    if (policy.deny && policy.deny.length) parts.push("deny " + policy.deny.join(", "));
    parts.push("on conflict: " + ({ target: "keep the target's", request: "use the visitor's", append: "keep both" }[policy.on_conflict] || policy.on_conflict));
    const add = Object.entries(policy.add || {});
    if (add.length) parts.push("add " + add.map(([n, v]) => n + "=" + v).join("&"));
    return parts.join("; ");
  }

  async function linkScreen(code) {
    let link;
    try {
      link = await api("GET", "/api/v1/links/" + encodeURIComponent(code));
    } catch (error) {
      if (error.status === 404) location.hash = "#/links"; // gone or never this key's: back to the list
      report(error);
      return;
    }
    show("tpl-link", link.title || link.code);
    main.querySelector(".js-short").value = link.short_url;
    const facts = main.querySelector(".js-facts");
    const status = document.createElement("span");
    badge(status, link.status);
    fact(facts, "Status", status);
    const target = document.createElement("a");
    target.href = link.url;
    target.textContent = link.url;
    target.rel = "noreferrer";
    fact(facts, "Target", target);
    fact(facts, "Code", link.code);
    fact(facts, "Redirect", String(link.redirect_status));
    fact(facts, "Tags", link.tags.length ? link.tags.join(", ") : "none");
    fact(facts, "Created", formatTime(link.created_at) + (link.created_by ? " by " + link.created_by : ""));
    if (link.valid_since) fact(facts, "Starts", formatTime(link.valid_since));
    fact(facts, "Expires", formatTime(link.valid_until));
    fact(facts, "Visits allowed", link.max_visits ? link.visits_counted + " of " + link.max_visits + " used" : "no limit");
    fact(facts, "Query policy", policySummary(link.query));
    if (link.fallback_url) fact(facts, "Fallback", link.fallback_url);

    main.querySelector(".js-copy").addEventListener("click", () => copy(main.querySelector(".js-short"), "Short URL copied."));
    const qr = main.querySelector(".js-qr");
    qr.href = "/" + encodeURIComponent(link.code) + "/qr?format=png";
    qr.setAttribute("download", link.code + "-qr.png");
    const toggle = main.querySelector(".js-toggle");
    toggle.textContent = link.disabled ? "Enable" : "Disable";
    toggle.addEventListener("click", async () => {
      try {
        const changed = await api("PATCH", "/api/v1/links/" + encodeURIComponent(link.code), { disabled: !link.disabled });
        await linkScreen(changed.code);
        say(changed.disabled ? "Link disabled: visitors get “gone” until you enable it." : "Link enabled.");
      } catch (error) {
        report(error);
      }
    });
    const confirm = main.querySelector(".js-confirm");
    main.querySelector(".js-delete").addEventListener("click", () => {
      confirm.hidden = false;
      confirm.querySelector(".js-delete-no").focus();
    });
    confirm.querySelector(".js-delete-no").addEventListener("click", () => {
      confirm.hidden = true;
      main.querySelector(".js-delete").focus();
    });
    confirm.querySelector(".js-delete-yes").addEventListener("click", async () => {
      try {
        await api("DELETE", "/api/v1/links/" + encodeURIComponent(link.code));
      } catch (error) {
        report(error);
        return;
      }
      location.hash = "#/links";
      say("Link " + link.code + " deleted.");
    });
    main.querySelector(".js-refresh").addEventListener("click", () => loadStats(link.code));
    await loadStats(link.code);
  }

  async function loadStats(code) {
    let stats;
    try {
      stats = await api("GET", "/api/v1/links/" + encodeURIComponent(code) + "/stats");
    } catch (error) {
      report(error);
      return;
    }
    const total = main.querySelector(".js-total");
    if (!total) return; // the person moved on meanwhile
    total.textContent = stats.total.visits + " visit" + (stats.total.visits === 1 ? "" : "s") + ", "
      + stats.total.unique_visitors + " unique visitor-day" + (stats.total.unique_visitors === 1 ? "" : "s") + " (bots excluded).";
    total.dataset.visits = String(stats.total.visits);
    const rows = main.querySelector(".js-days tbody");
    rows.textContent = "";
    for (const day of stats.days) {
      const tr = document.createElement("tr");
      for (const value of [day.date, day.visits, day.unique_visitors]) {
        const td = document.createElement("td");
        td.textContent = String(value);
        tr.appendChild(td);
      }
      rows.appendChild(tr);
    }
    chart(main.querySelector(".js-chart"), stats);
    const tops = main.querySelector(".js-tops");
    tops.textContent = "";
    for (const [name, title] of [["referrers", "Top referrers"], ["countries", "Top countries"], ["browsers", "Top browsers"], ["devices", "Devices"]]) {
      tops.appendChild(topTable(title, stats[name]));
    }
  }

  function topTable(title, counts) {
    const box = document.createElement("div");
    box.className = "top-list";
    const table = document.createElement("table");
    const caption = document.createElement("caption");
    caption.textContent = title;
    table.appendChild(caption);
    const head = table.createTHead().insertRow();
    for (const label of ["Name", "Visits"]) {
      const th = document.createElement("th");
      th.scope = "col";
      th.textContent = label;
      head.appendChild(th);
    }
    const body = table.createTBody();
    if (!counts.length) {
      const cell = body.insertRow().insertCell();
      cell.colSpan = 2;
      cell.textContent = "No visits yet";
    }
    for (const item of counts) {
      const row = body.insertRow();
      row.insertCell().textContent = item.name;
      row.insertCell().textContent = String(item.visits);
    }
    box.appendChild(table);
    return box;
  }

  let plot = null;

  function chart(target, stats) {
    const xs = stats.days.map((day) => Date.parse(day.date + "T00:00:00Z") / 1000);
    const ys = stats.days.map((day) => day.visits);
    const peak = Math.max(0, ...ys);
    target.setAttribute("aria-label", "Bar chart of visits per day from " + stats.days[0].date + " to "
      + stats.days[stats.days.length - 1].date + ": " + stats.total.visits + " in total, at most " + peak + " in one day.");
    if (plot) { plot.destroy(); plot = null; }
    target.textContent = "";
    if (typeof uPlot === "undefined") return;
    const width = () => Math.max(260, target.clientWidth || 600);
    plot = new uPlot({
      width: width(), height: 220, legend: { show: false }, cursor: { show: false },
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
      // x: half a day each side, so the first and last bars are whole.
      scales: { x: { time: true, range: (_, min, max) => [min - 43200, max + 43200] }, y: { range: (_, __, max) => [0, Math.max(4, Math.ceil(max * 1.2))] } },
      axes: [
        { stroke: "#333", grid: { stroke: "#e3e3e3" } },
        { stroke: "#333", grid: { stroke: "#e3e3e3" }, values: (_, ticks) => ticks.map((v) => (Number.isInteger(v) ? String(v) : "")) },
      ],
      series: [{}, { label: "Visits", stroke: "#0b57d0", fill: "rgba(11, 87, 208, 0.35)", paths: uPlot.paths.bars({ size: [0.7, 40] }), points: { show: false } }],
    }, [xs, ys], target);
    target.dataset.days = String(xs.length);
  }

  window.addEventListener("resize", () => {
    if (plot && plot.root.parentNode) plot.setSize({ width: Math.max(260, plot.root.parentNode.clientWidth), height: 220 });
  });

  async function keysScreen() {
    await learnRole();
    if (!session.admin) {
      location.hash = "#/links";
      say("Only admin keys can manage keys.", "error");
      return;
    }
    show("tpl-keys", "API keys");
    const form = document.getElementById("key-form");
    const created = document.getElementById("key-created");
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearFieldErrors(form);
      const body = { name: form.elements.name.value.trim(), role: form.elements.role.value };
      if (form.elements.expires_in.value.trim()) body.expires_in = form.elements.expires_in.value.trim();
      let key;
      try {
        key = await api("POST", "/api/v1/keys", body);
      } catch (error) {
        report(error, form);
        return;
      }
      form.reset();
      created.hidden = false;
      document.getElementById("key-secret").value = key.key;
      created.querySelector("h2").focus();
      say("Key " + key.name + " created. Copy it now: it is shown this once.");
      await loadKeys();
    });
    document.getElementById("key-copy").addEventListener("click", () => copy(document.getElementById("key-secret"), "Key copied."));
    await loadKeys();
  }

  async function loadKeys() {
    let keys;
    try {
      keys = await api("GET", "/api/v1/keys");
    } catch (error) {
      report(error);
      return;
    }
    const rows = document.querySelector("#keys-table tbody");
    if (!rows) return;
    rows.textContent = "";
    const mine = (sessionStorage.getItem(KEY_STORAGE) || "").split("_")[1]; // lg_<id>_<secret>
    for (const key of keys.data) {
      const row = rows.insertRow();
      row.dataset.key = key.id;
      row.insertCell().textContent = key.name + (key.id === mine ? " (the key you signed in with)" : "");
      row.insertCell().textContent = key.role;
      row.insertCell().textContent = key.status;
      row.insertCell().textContent = formatTime(key.created_at);
      row.insertCell().textContent = formatTime(key.last_used_at);
      const cell = row.insertCell();
      if (key.status !== "revoked") {
        const revoke = document.createElement("button");
        revoke.type = "button";
        revoke.className = "danger";
        revoke.textContent = "Revoke";
        revoke.setAttribute("aria-label", "Revoke key " + key.name);
        revoke.addEventListener("click", async () => {
          try {
            await api("DELETE", "/api/v1/keys/" + encodeURIComponent(key.id));
          } catch (error) {
            report(error);
            return;
          }
          say("Key " + key.name + " revoked: it is refused from its next request on.");
          await loadKeys();
          document.querySelector("#keys-table").closest(".scroll").focus();
        });
        cell.appendChild(revoke);
      }
    }
  }

  async function copy(input, done) {
    try {
      await navigator.clipboard.writeText(input.value);
    } catch (_) {
      // No clipboard permission (or not a secure context): select it for the person to copy.
      input.focus();
      input.select();
      say("Selected: press Ctrl+C (or ⌘C) to copy.");
      return;
    }
    say(done);
  }

  // --- routing -------------------------------------------------------------

  async function route() {
    const hash = location.hash || "#/links";
    if (!sessionStorage.getItem(KEY_STORAGE)) {
      if (hash !== "#/signin") { location.hash = "#/signin"; return; }
      return signIn();
    }
    if (hash === "#/signin") return signIn();
    nav.hidden = false;
    try {
      await learnRole();
      const linkMatch = /^#\/links\/(.+)$/.exec(hash);
      if (linkMatch) return await linkScreen(decodeURIComponent(linkMatch[1]));
      if (hash === "#/new") return await newScreen();
      if (hash === "#/keys") return await keysScreen();
      return await linksScreen();
    } catch (error) {
      report(error);
    }
  }

  document.getElementById("sign-out").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_STORAGE);
    session.admin = null;
    navKeys.hidden = true;
    location.hash = "#/signin";
    say("Signed out. The key is gone from this tab.");
  });
  window.addEventListener("hashchange", route);
  route();
})();
