// The one module that knows the HTTP API: every path, query and body shape the console uses is here,
// so names can be adjusted in one place. Everything else calls these functions.
//
// Sessions: the access token (short-lived JWT) and the refresh token live in localStorage under one
// key, shared by the tabs of this origin. Refresh tokens are single use (a reuse revokes the whole
// session), so refreshing is serialized across tabs with the Web Locks API and each tab re-reads the
// stored session inside the lock before spending the refresh token.

import { currentLang } from "./i18n.js";

const SESSION_KEY = "atelier.session";
const EARLY_REFRESH_MS = 30_000;

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.code = problem?.code || (status === 0 ? "network_error" : `http_${status}`);
    this.problem = problem || {};
  }
}

// -- session ----------------------------------------------------------------------------------------
const listeners = new Set();

export function session() {
  try {
    return JSON.parse(localStorage.getItem(SESSION_KEY) || "null");
  } catch {
    return null;
  }
}

function storeSession(value) {
  if (value) localStorage.setItem(SESSION_KEY, JSON.stringify(value));
  else localStorage.removeItem(SESSION_KEY);
  for (const listener of listeners) listener(value);
}

export function onSessionChange(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

window.addEventListener("storage", (event) => {
  if (event.key === SESSION_KEY) for (const listener of listeners) listener(session());
});

function fromSessionOut(body) {
  return {
    access_token: body.access_token,
    expires_at: Date.now() + (body.expires_in || 0) * 1000,
    refresh_token: body.refresh_token,
    user: body.user,
  };
}

async function withRefreshLock(fn) {
  if (navigator.locks?.request) return navigator.locks.request("atelier.refresh", fn);
  return fn();
}

/** A valid access token, refreshed when it is about to expire or when the server `rejected` it;
 *  null when signed out. Concurrent callers (requests, tabs) that saw the same token rejected share
 *  one refresh: whoever comes second finds a newer token stored and uses it. */
export async function accessToken({ rejected = null } = {}) {
  const usable = (s) => s.expires_at - Date.now() > EARLY_REFRESH_MS && s.access_token !== rejected;
  const current = session();
  if (!current) return null;
  if (usable(current)) return current.access_token;
  return withRefreshLock(async () => {
    const latest = session(); // another request or tab may have refreshed while we waited
    if (!latest) return null;
    if (usable(latest)) return latest.access_token;
    try {
      const body = await request("POST", "/v1/auth/refresh", {
        body: { refresh_token: latest.refresh_token },
        auth: false,
      });
      const next = fromSessionOut(body);
      storeSession(next);
      return next.access_token;
    } catch (error) {
      if (error.status === 401 || error.status === 400 || error.status === 403) storeSession(null);
      throw error;
    }
  });
}

export function newIdempotencyKey() {
  return crypto.randomUUID();
}

// -- transport --------------------------------------------------------------------------------------
function url(path, query) {
  const target = new URL(path, window.location.origin);
  for (const [key, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") target.searchParams.set(key, value);
  }
  return target.pathname + target.search;
}

async function headersFor({ auth, idempotencyKey, json, accept }) {
  const headers = { "Accept-Language": currentLang(), Accept: accept || "application/json" };
  if (json) headers["Content-Type"] = "application/json";
  if (idempotencyKey) headers["Idempotency-Key"] = idempotencyKey;
  if (auth) {
    const token = await accessToken();
    if (token) headers.Authorization = `Bearer ${token}`;
  }
  return headers;
}

async function problemOf(response) {
  try {
    return await response.json();
  } catch {
    return { detail: response.statusText };
  }
}

/** fetch with auth, language and problem+json errors; one retry after a refresh on 401. */
export async function send(method, path, options = {}) {
  const { body, query, auth = true, idempotencyKey, form, raw, contentType, accept, signal } = options;
  let used = null;
  const attempt = async () => {
    const headers = await headersFor({ auth, idempotencyKey, json: body !== undefined, accept });
    used = headers.Authorization?.slice("Bearer ".length) ?? null;
    let payload;
    if (form) payload = form;
    else if (raw !== undefined) {
      payload = raw;
      headers["Content-Type"] = contentType || "application/octet-stream";
    } else if (body !== undefined) payload = JSON.stringify(body);
    try {
      return await fetch(url(path, query), { method, headers, body: payload, signal });
    } catch (error) {
      if (error.name === "AbortError") throw error;
      throw new ApiError(0, { detail: error.message });
    }
  };
  let response = await attempt();
  if (response.status === 401 && auth && session()) {
    const problem = await problemOf(response);
    if (problem.code === "token_expired" || problem.code === "invalid_token") {
      await accessToken({ rejected: used });
      response = await attempt();
    } else {
      throw new ApiError(401, problem);
    }
  }
  if (!response.ok) throw new ApiError(response.status, await problemOf(response));
  return response;
}

export async function request(method, path, options = {}) {
  const response = await send(method, path, options);
  if (response.status === 204) return null;
  const type = response.headers.get("content-type") || "";
  return type.includes("json") ? response.json() : response.text();
}

/** Reads a text/event-stream body, calling onEvent({event, data, id}) per message. */
export async function readEventStream(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let message = { event: "message", data: [], id: null };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let newline;
    while ((newline = buffer.search(/\r\n|\r|\n/)) >= 0) {
      const line = buffer.slice(0, newline);
      buffer = buffer.slice(newline + (buffer.slice(newline, newline + 2) === "\r\n" ? 2 : 1));
      if (line === "") {
        if (message.data.length) {
          const text = message.data.join("\n");
          let data = text;
          try {
            data = JSON.parse(text);
          } catch {
            /* plain text data */
          }
          onEvent({ event: message.event, data, id: message.id });
        }
        message = { event: "message", data: [], id: message.id };
        continue;
      }
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") message.event = value;
      else if (field === "data") message.data.push(value);
      else if (field === "id") message.id = value;
    }
  }
}

// -- normalizers: tolerate the protobuf-JSON spellings of enums ("TASK_STATUS_SUCCEEDED") --------------
export function enumValue(value, prefix) {
  if (typeof value !== "string") return value;
  const upper = value.toUpperCase();
  return (upper.startsWith(prefix) ? upper.slice(prefix.length) : upper).toLowerCase();
}

// -- auth -------------------------------------------------------------------------------------------
export const auth = {
  async register(email, password) {
    return request("POST", "/v1/auth/register", { body: { email, password, locale: currentLang() }, auth: false });
  },
  verifyEmail: (token) => request("POST", "/v1/auth/verify-email", { body: { token }, auth: false }),
  resendVerification: (email) =>
    request("POST", "/v1/auth/resend-verification", { body: { email }, auth: false }),
  async login(email, password) {
    const body = await request("POST", "/v1/auth/login", { body: { email, password }, auth: false });
    storeSession(fromSessionOut(body));
    return body.user;
  },
  async logout() {
    const current = session();
    storeSession(null);
    if (current?.refresh_token) {
      await request("POST", "/v1/auth/logout", {
        body: { refresh_token: current.refresh_token },
        auth: false,
      }).catch(() => {});
    }
  },
  requestPasswordReset: (email) => request("POST", "/v1/auth/password-reset", { body: { email }, auth: false }),
  confirmPasswordReset: (token, newPassword) =>
    request("POST", "/v1/auth/password-reset/confirm", {
      body: { token, new_password: newPassword },
      auth: false,
    }),
  async me() {
    const user = await request("GET", "/v1/me");
    const current = session();
    if (current) storeSession({ ...current, user: { ...current.user, ...user } });
    return user;
  },
  apiKeys: () => request("GET", "/v1/api-keys"),
  createApiKey: (name) => request("POST", "/v1/api-keys", { body: { name } }),
  revokeApiKey: (id) => request("DELETE", `/v1/api-keys/${encodeURIComponent(id)}`),
};

// -- catalog ----------------------------------------------------------------------------------------
export const catalog = {
  // {catalog_version, admin_must_enable_models, models: [{code, kind, name, billing: {unit, price}, ratios,
  //  resolutions, durations, capabilities: [{code, name}], max_images, max_input_images}]}
  models: (kind) => request("GET", "/v1/models", { query: { kind }, auth: false }),
  // {admin_must_enable_models, groups: [{kind, models}], templates, default_capabilities}
  pricing: () => request("GET", "/v1/pricing", { auth: false }),
  // {templates: [{code, name, description, price, inputs: [{name, type, required, allowed_values, label,
  //  min_items, max_items, max_length}], steps: [{key, kind, model, label}], notes, refund_policy}]}
  templates: () => request("GET", "/v1/workflow-templates", { auth: false }),
  // {rules: {currency, credits_per_unit, minimum: {amount, currency}, bonus_tiers: [{amount, credits}]},
  //  plans: [{code, name, price, credits}], payment_methods: [{code, name, currencies}]}
  rechargeOptions: () => request("GET", "/v1/recharge-options", { auth: false }),
  // body: {model, ratio, resolution, duration_seconds, n, capability, input_image_count} → {total, unit, ...}
  quote: (body) => request("POST", "/v1/quotes", { body, auth: false }),
  // body: {method, amount} | {method, plan} → {paid_credits, bonus_credits, total_credits}
  rechargeQuote: (body) => request("POST", "/v1/recharge-quotes", { body, auth: false }),
};

// -- generation -------------------------------------------------------------------------------------
/** A task or a workflow step as the pages read them: short enum names, `model` and `outputs` always set. */
function normalizeJob(job, statusPrefix) {
  return {
    ...job,
    status: enumValue(job.status, statusPrefix),
    kind: enumValue(job.kind, "MODEL_KIND_"),
    model: job.model ?? job.model_code,
    outputs: job.outputs || [],
  };
}

function normalizeTask(task) {
  return task && normalizeJob(task, "TASK_STATUS_");
}

/** One page of a paged list: {items (normalized), next_cursor}; `field` is the older name of `items`. */
async function listPage(path, field, normalize, query) {
  const reply = await request("GET", path, { query: { limit: 20, ...query } });
  const items = reply.items ?? reply[field] ?? [];
  return { items: items.map(normalize), next_cursor: reply.next_cursor ?? reply.page?.next_cursor ?? null };
}

export const tasks = {
  // body: {kind, model, prompt, ratio, resolution, duration_seconds, n, capability, inputs: [{upload_id, role}]}
  async submit(body, idempotencyKey) {
    const reply = await request("POST", "/v1/tasks", { body, idempotencyKey });
    return normalizeTask(reply.task ?? reply);
  },
  list: (query = {}) => listPage("/v1/tasks", "tasks", normalizeTask, query),
  async get(id) {
    const reply = await request("GET", `/v1/tasks/${encodeURIComponent(id)}`);
    return normalizeTask(reply.task ?? reply);
  },
  async cancel(id) {
    const reply = await request("POST", `/v1/tasks/${encodeURIComponent(id)}/cancel`, {
      idempotencyKey: `cancel-${id}`,
    });
    return normalizeTask(reply.task ?? reply);
  },
  /** Upload one image (the raw file as the body) → {id, url, mime_type, width, height}. */
  async upload(file) {
    const reply = await request("POST", "/v1/uploads", {
      raw: file,
      contentType: file.type,
      query: { filename: file.name },
      idempotencyKey: newIdempotencyKey(),
    });
    return reply.upload ?? reply;
  },
};

function normalizeMessage(message) {
  return message && { ...message, role: enumValue(message.role, "MESSAGE_ROLE_"), status: enumValue(message.status, "MESSAGE_STATUS_") };
}

export const copy = {
  async conversations() {
    const reply = await request("GET", "/v1/copy/conversations", { query: { limit: 50 } });
    return reply.items ?? reply.conversations ?? [];
  },
  async conversation(id) {
    const reply = await request("GET", `/v1/copy/conversations/${encodeURIComponent(id)}`);
    const conversation = reply.conversation ?? reply;
    return { ...conversation, messages: (conversation.messages || []).map(normalizeMessage) };
  },
  async create(model, idempotencyKey) {
    const reply = await request("POST", "/v1/copy/conversations", { body: { model }, idempotencyKey });
    return reply.conversation ?? reply;
  },
  /** Sends a message and streams the answer: onDelta(text) per chunk; resolves with the final message.
   *  The stream is server-sent events: `user_message`, `delta` ({text}), `final` (the assistant message). */
  async send(conversationId, content, model, idempotencyKey, onDelta) {
    const response = await send("POST", `/v1/copy/conversations/${encodeURIComponent(conversationId)}/messages`, {
      body: { content, model },
      idempotencyKey,
      accept: "text/event-stream",
    });
    if (!(response.headers.get("content-type") || "").includes("event-stream")) {
      const reply = await response.json();
      return normalizeMessage(reply.final ?? reply.message ?? reply);
    }
    let final = null;
    let failure = null;
    await readEventStream(response, ({ event, data }) => {
      if (event === "delta") onDelta(data.text ?? "");
      else if (event === "final") final = normalizeMessage(data.message ?? data);
      else if (event === "error") failure = new ApiError(data.status || 500, data);
    });
    if (failure) throw failure;
    return final;
  },
};

// -- workflows --------------------------------------------------------------------------------------
function normalizeRun(run) {
  if (!run) return run;
  return {
    ...run,
    status: enumValue(run.status, "RUN_STATUS_"),
    template: run.template ?? run.template_code,
    steps: (run.steps || []).map((step) => normalizeJob(step, "STEP_STATUS_")),
  };
}

// Shapes: gateway/routes/workflows.py (workflow branch). Start answers {run, created}; get and cancel
// answer the run: {id, template_code, status, inputs, price, refund_amount, refund_policy, error,
// steps: [{key, index, kind, model_code, status, task_id, outputs, error}], created_at, ...}.
export const workflows = {
  async start(template, inputs, idempotencyKey) {
    const reply = await request("POST", "/v1/workflow-runs", {
      body: { template_code: template, inputs },
      idempotencyKey,
    });
    return normalizeRun(reply.run ?? reply);
  },
  list: (query = {}) => listPage("/v1/workflow-runs", "runs", normalizeRun, query),
  async get(id) {
    const reply = await request("GET", `/v1/workflow-runs/${encodeURIComponent(id)}`);
    return normalizeRun(reply.run ?? reply);
  },
  async cancel(id) {
    const reply = await request("POST", `/v1/workflow-runs/${encodeURIComponent(id)}/cancel`, {
      idempotencyKey: `cancel-${id}`,
    });
    return normalizeRun(reply.run ?? reply);
  },
};

// -- billing and usage ------------------------------------------------------------------------------
// Shapes: gateway/routes/billing.py and payments.py on main.
export const billing = {
  // {user_id, available, held, posted, version, updated_at}
  async balance() {
    const reply = await request("GET", "/v1/billing/balance");
    return reply.balance ?? reply;
  },
  // type: recharge | consumption | refund | adjustment | callback → {items: [{id, type, occurred_at, delta,
  //  transfer?: {kind, amount, reference: {type, id}, metadata, reason}, callback?: {provider, outcome,
  //  reason, verified, amount}}], next_cursor}
  async records(query = {}) {
    const reply = await request("GET", "/v1/billing/records", { query: { limit: 50, ...query } });
    const items = (reply.items ?? reply.records ?? []).map((r) => ({ ...r, type: enumValue(r.type, "RECORD_TYPE_") }));
    return { items, next_cursor: reply.next_cursor ?? reply.page?.next_cursor ?? null };
  },
  // body: {method, amount, currency} | {method, plan} → {id, status, provider, next_step: {type, url, code_url}}
  createRecharge: (body, idempotencyKey) => request("POST", "/v1/billing/recharges", { body, idempotencyKey }),
  recharge: (id) => request("GET", `/v1/billing/recharges/${encodeURIComponent(id)}`),
  /** The sandbox provider's payer: sends the signed callback for a sandbox order (local only). */
  sandboxPay: (orderId) => request("POST", `/sandbox/pay/${encodeURIComponent(orderId)}`, { auth: false }),
  // group_by: day | model | kind; from / to (RFC 3339); tz (IANA, for day buckets)
  //  → {group_by, from, to, total, buckets: [{key, spend, count}]}
  usage: (query) =>
    request("GET", "/v1/usage", {
      query: { tz: Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC", ...query },
    }),
};

// -- docs -------------------------------------------------------------------------------------------
export const docs = {
  index: (lang) => request("GET", "/v1/docs", { query: { lang }, auth: false }),
  page: (page, lang) =>
    request("GET", `/v1/docs/${encodeURIComponent(page)}`, { query: { lang, format: "json" }, auth: false }),
};

// -- live events ------------------------------------------------------------------------------------
/** Opens `GET /v1/events` with fetch (EventSource cannot send an Authorization header, and a token in
 *  the URL would land in access logs) and reconnects with backoff. Returns a function that stops it.
 *  handlers: {balance(data), task(data), run(data), recharge(data), open(), down()} */
export function liveEvents(handlers) {
  const controller = new AbortController();
  let stopped = false;
  let lastEventId = null;
  (async () => {
    let delay = 1000;
    while (!stopped) {
      try {
        const extra = lastEventId ? { "Last-Event-ID": lastEventId } : {};
        const token = await accessToken();
        if (!token) return;
        const response = await fetch("/v1/events", {
          headers: { Accept: "text/event-stream", Authorization: `Bearer ${token}`, ...extra },
          signal: controller.signal,
          cache: "no-store",
        });
        if (response.status === 401) {
          await accessToken({ rejected: token });
          continue;
        }
        if (!response.ok || !response.body) throw new ApiError(response.status, null);
        handlers.open?.();
        delay = 1000;
        await readEventStream(response, ({ event, data, id }) => {
          if (id) lastEventId = id;
          handlers[event]?.(data);
        });
      } catch (error) {
        if (stopped || error.name === "AbortError") return;
        if (error.status === 401 || error.status === 403) return;
      }
      handlers.down?.();
      if (stopped) return;
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 15_000);
    }
  })();
  return () => {
    stopped = true;
    controller.abort();
  };
}

// -- admin ------------------------------------------------------------------------------------------
// DESIGN.md §8: /v1/admin/models, /templates, /recharge-rules, /channels, /users (+ credit adjustments),
// /audit. Lists answer {items} (or the resource name); updates are PUT of the whole resource or PATCH.
function items(reply, name) {
  return reply?.items ?? reply?.[name] ?? (Array.isArray(reply) ? reply : []);
}

export const admin = {
  models: async () => items(await request("GET", "/v1/admin/models"), "models"),
  saveModel: (code, body) => request("PUT", `/v1/admin/models/${encodeURIComponent(code)}`, { body }),
  setModelEnabled: (code, enabled) =>
    request("PATCH", `/v1/admin/models/${encodeURIComponent(code)}`, { body: { enabled } }),
  templates: async () => items(await request("GET", "/v1/admin/templates"), "templates"),
  setTemplate: (code, body) => request("PATCH", `/v1/admin/templates/${encodeURIComponent(code)}`, { body }),
  rechargeRules: () => request("GET", "/v1/admin/recharge-rules"),
  saveRechargeRules: (body) => request("PUT", "/v1/admin/recharge-rules", { body }),
  savePlan: (code, body) => request("PUT", `/v1/admin/plans/${encodeURIComponent(code)}`, { body }),
  channels: async () => items(await request("GET", "/v1/admin/channels"), "channels"),
  saveChannel: (code, body) => request("PUT", `/v1/admin/channels/${encodeURIComponent(code)}`, { body }),
  users: async (query) => {
    const reply = await request("GET", "/v1/admin/users", { query: { limit: 50, ...query } });
    return { items: items(reply, "users"), next_cursor: reply.next_cursor ?? null };
  },
  adjustCredits: (userId, body, idempotencyKey) =>
    request("POST", `/v1/admin/users/${encodeURIComponent(userId)}/credit-adjustments`, { body, idempotencyKey }),
  audit: async (query) => {
    const reply = await request("GET", "/v1/admin/audit", { query: { limit: 50, ...query } });
    return { items: items(reply, "entries"), next_cursor: reply.next_cursor ?? null };
  },
};
