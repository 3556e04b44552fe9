// Admin: models (enable, price, specs, capabilities), templates, recharge rules and plans, channels,
// users and credit adjustments, and the audit log. Every call goes through api.admin (/v1/admin/*).

import { admin, newIdempotencyKey } from "../api.js";
import { field, h, replace } from "../dom.js";
import { credits, formatDate, money, t } from "../i18n.js";
import { busy, emptyState, errorBox, loading, notice, pageHeader, statusBadge, submitForm, table } from "../ui.js";

const SECTIONS = ["models", "templates", "recharge", "channels", "users", "audit"];
const DECIMAL = /^-?\d{1,12}(\.\d{1,3})?$/;

const list = (value) =>
  String(value || "")
    .split(/[,\s]+/)
    .map((s) => s.trim())
    .filter(Boolean);

function priceOf(model) {
  return model.billing?.price ?? model.price ?? "";
}

function capabilityCodes(model) {
  return (model.capabilities || model.effective_capabilities || []).map((c) => (typeof c === "string" ? c : c.code));
}

function toggle(label, checked, onChange, note) {
  const box = h("input", { type: "checkbox", checked, "aria-label": label });
  box.addEventListener("change", async () => {
    box.disabled = true;
    try {
      await onChange(box.checked);
    } catch (error) {
      box.checked = !box.checked;
      note.error(error);
    } finally {
      box.disabled = false;
    }
  });
  return box;
}

async function models(body, note) {
  const rows = await admin.models();
  if (!rows.length) return replace(body, emptyState(t("admin.none")));
  const editor = h("div", {});
  const edit = (model) => {
    const price = h("input", { type: "text", inputmode: "decimal", value: priceOf(model) });
    const ratios = h("input", { type: "text", value: (model.ratios || []).join(", ") });
    const resolutions = h("input", { type: "text", value: (model.resolutions || []).join(", ") });
    const durations = h("input", { type: "text", value: (model.durations || []).join(", ") });
    const capabilities = h("input", { type: "text", value: capabilityCodes(model).join(", ") });
    const save = h("button", { type: "submit" }, t("admin.save"));
    replace(
      editor,
      submitForm(
        { class: "card", "aria-label": t("admin.edit_named", { name: model.code }) },
        async () => {
          if (!DECIMAL.test(price.value.trim())) return note.error(t("admin.bad_price"));
          return busy(save, note, async () => {
            await admin.saveModel(model.code, {
              ...model,
              billing: { ...(model.billing || {}), price: price.value.trim() },
              ratios: list(ratios.value),
              resolutions: list(resolutions.value),
              durations: list(durations.value).map(Number),
              capabilities: list(capabilities.value),
            });
            note.success(t("admin.saved"));
            await models(body, note);
          });
        },
        h("h3", {}, model.code),
        field(t("admin.price"), price),
        field(t("spec.ratios"), ratios, t("admin.comma_list")),
        field(t("spec.resolutions"), resolutions, t("admin.comma_list")),
        model.kind === "video" ? field(t("spec.durations"), durations, t("admin.comma_list")) : null,
        field(t("spec.capabilities"), capabilities, t("admin.capabilities_hint")),
        h("div", { class: "actions" }, save),
      ),
    );
    price.focus();
  };
  replace(
    body,
    table(t("admin.models"), [
      [t("admin.enabled"), (m) => toggle(t("admin.enable_named", { name: m.code }), m.enabled, (on) => admin.setModelEnabled(m.code, on), note)],
      [t("admin.code"), (m) => h("code", {}, m.code)],
      [t("admin.kind"), (m) => t(`kind.${m.kind}`)],
      [t("admin.name"), (m) => (typeof m.name === "string" ? m.name : m.name?.en ?? "")],
      [t("admin.price"), (m) => priceOf(m)],
      [t("spec.capabilities"), (m) => capabilityCodes(m).join(", ")],
      ["", (m) => h("button", { type: "button", class: "secondary small", onclick: () => edit(m) }, t("admin.edit"))],
    ], rows),
    editor,
  );
  return undefined;
}

async function templates(body, note) {
  const rows = await admin.templates();
  if (!rows.length) return replace(body, emptyState(t("admin.none")));
  replace(
    body,
    table(t("admin.templates"), [
      [t("admin.enabled"), (tpl) => toggle(t("admin.enable_named", { name: tpl.code }), tpl.enabled, (on) => admin.setTemplate(tpl.code, { enabled: on }), note)],
      [t("admin.code"), (tpl) => h("code", {}, tpl.code)],
      [t("admin.name"), (tpl) => (typeof tpl.name === "string" ? tpl.name : tpl.name?.en ?? "")],
      [
        t("admin.price"),
        (tpl) => {
          const input = h("input", { type: "text", inputmode: "decimal", value: tpl.price, "aria-label": t("admin.price_named", { name: tpl.code }), size: "6" });
          const save = h("button", { type: "button", class: "secondary small" }, t("admin.save"));
          save.addEventListener("click", () => {
            if (!DECIMAL.test(input.value.trim())) return note.error(t("admin.bad_price"));
            return busy(save, note, async () => {
              await admin.setTemplate(tpl.code, { price: input.value.trim() });
              note.success(t("admin.saved"));
            });
          });
          return h("span", { class: "actions" }, input, save);
        },
      ],
    ], rows),
  );
  return undefined;
}

async function recharge(body, note) {
  const current = await admin.rechargeRules();
  const rules = current.rules ?? current;
  const minimum = h("input", { type: "text", inputmode: "decimal", value: rules.minimum?.amount ?? "" });
  const tiers = h("textarea", { rows: "4" }, (rules.bonus_tiers || []).map((tier) => `${tier.amount.amount} = ${tier.credits}`).join("\n"));
  const save = h("button", { type: "submit" }, t("admin.save"));
  const form = submitForm(
    { class: "card narrow" },
    async () => {
      const parsed = [];
      for (const line of tiers.value.split("\n").map((l) => l.trim()).filter(Boolean)) {
        const [amount, creditsValue] = line.split("=").map((s) => s.trim());
        if (!DECIMAL.test(amount || "") || !DECIMAL.test(creditsValue || "")) return note.error(t("admin.bad_tier", { line }));
        parsed.push({ amount: { amount, currency: rules.currency || "CNY" }, credits: creditsValue });
      }
      if (!DECIMAL.test(minimum.value.trim())) return note.error(t("admin.bad_price"));
      return busy(save, note, async () => {
        await admin.saveRechargeRules({ ...rules, minimum: { amount: minimum.value.trim(), currency: rules.currency || "CNY" }, bonus_tiers: parsed });
        note.success(t("admin.saved"));
      });
    },
    h("h3", {}, t("admin.recharge_rules")),
    field(t("admin.minimum", { currency: rules.currency || "CNY" }), minimum),
    field(t("admin.tiers"), tiers, t("admin.tiers_hint")),
    h("div", { class: "actions" }, save),
  );
  const plans = current.plans || [];
  replace(
    body,
    form,
    h("h3", {}, t("billing.plans")),
    plans.length
      ? table(t("billing.plans"), [
          [t("admin.code"), (p) => h("code", {}, p.code)],
          [t("admin.price"), (p) => money(p.price)],
          [t("admin.credits"), (p) => credits(p.credits)],
          [
            "",
            (p) => {
              const creditsInput = h("input", { type: "text", value: p.credits, size: "6", "aria-label": t("admin.credits_named", { name: p.code }) });
              const save2 = h("button", { type: "button", class: "secondary small" }, t("admin.save"));
              save2.addEventListener("click", () =>
                busy(save2, note, async () => {
                  await admin.savePlan(p.code, { ...p, credits: creditsInput.value.trim() });
                  note.success(t("admin.saved"));
                }),
              );
              return h("span", { class: "actions" }, creditsInput, save2);
            },
          ],
        ], plans)
      : emptyState(t("admin.none")),
  );
  return undefined;
}

async function channels(body, note) {
  const rows = await admin.channels();
  const code = h("input", { type: "text", required: true, maxlength: "64" });
  const provider = h("input", { type: "text", required: true, maxlength: "64" });
  const baseUrl = h("input", { type: "url", maxlength: "512" });
  // Write-only: an API key is sent when set and never shown back.
  const apiKey = h("input", { type: "password", autocomplete: "off", maxlength: "512" });
  const save = h("button", { type: "submit" }, t("admin.save"));
  const form = submitForm(
    { class: "card narrow" },
    async () => {
      if (!code.value.trim() || !provider.value.trim()) return note.error(t("admin.channel_required"));
      return busy(save, note, async () => {
        const payload = { code: code.value.trim(), provider: provider.value.trim(), base_url: baseUrl.value.trim() };
        if (apiKey.value) payload.api_key = apiKey.value;
        await admin.saveChannel(payload.code, payload);
        apiKey.value = "";
        note.success(t("admin.saved"));
        await channels(body, note);
      });
    },
    h("h3", {}, t("admin.channel_form")),
    field(t("admin.code"), code),
    field(t("admin.provider"), provider),
    field(t("admin.base_url"), baseUrl),
    field(t("admin.api_key"), apiKey, t("admin.api_key_hint")),
    h("div", { class: "actions" }, save),
  );
  replace(
    body,
    rows.length
      ? table(t("admin.channels"), [
          [t("admin.code"), (c) => h("code", {}, c.code)],
          [t("admin.provider"), (c) => c.provider],
          [t("admin.base_url"), (c) => c.base_url || ""],
          [t("admin.enabled"), (c) => (c.enabled === false ? t("common.no") : t("common.yes"))],
          [
            "",
            (c) =>
              h("button", { type: "button", class: "secondary small", onclick: () => {
                code.value = c.code;
                provider.value = c.provider || "";
                baseUrl.value = c.base_url || "";
                code.focus();
              } }, t("admin.edit")),
          ],
        ], rows)
      : emptyState(t("admin.none")),
    form,
  );
  return undefined;
}

async function users(body, note) {
  const search = h("input", { type: "search", name: "q", maxlength: "254" });
  const results = h("div", {}, loading());
  const adjustBox = h("div", {});
  const load = async () => {
    try {
      const page = await admin.users({ q: search.value.trim() || undefined });
      replace(
        results,
        page.items.length
          ? table(t("admin.users"), [
              [t("auth.email"), (u) => u.email],
              [t("account.status"), (u) => statusBadge(u.status)],
              [t("account.role"), (u) => u.role],
              [t("balance.label"), (u) => u.balance?.available ?? u.available ?? ""],
              [t("admin.created"), (u) => formatDate(u.created_at)],
              ["", (u) => h("button", { type: "button", class: "secondary small", onclick: () => adjust(u) }, t("admin.adjust"))],
            ], page.items)
          : emptyState(t("admin.none")),
      );
    } catch (error) {
      replace(results, errorBox(error));
    }
  };
  const adjust = (user) => {
    const amount = h("input", { type: "text", inputmode: "decimal", required: true });
    const reason = h("input", { type: "text", required: true, maxlength: "500" });
    const save = h("button", { type: "submit" }, t("admin.adjust"));
    let key = newIdempotencyKey();
    replace(
      adjustBox,
      submitForm(
        { class: "card narrow" },
        async () => {
          if (!DECIMAL.test(amount.value.trim()) || /^-?0+(\.0+)?$/.test(amount.value.trim())) return note.error(t("admin.bad_amount"));
          if (!reason.value.trim()) return note.error(t("admin.reason_required"));
          return busy(save, note, async () => {
            await admin.adjustCredits(user.id, { amount: amount.value.trim(), reason: reason.value.trim() }, key);
            key = newIdempotencyKey();
            note.success(t("admin.adjusted", { email: user.email, amount: amount.value.trim() }));
            await load();
          });
        },
        h("h3", {}, t("admin.adjust_named", { email: user.email })),
        field(t("admin.amount"), amount, t("admin.amount_hint")),
        field(t("admin.reason"), reason),
        h("div", { class: "actions" }, save),
      ),
    );
    amount.focus();
  };
  search.addEventListener("change", load);
  replace(body, field(t("admin.search_users"), search), results, adjustBox);
  await load();
}

async function audit(body) {
  const page = await admin.audit();
  replace(
    body,
    page.items.length
      ? table(t("admin.audit"), [
          [t("records.when"), (e) => formatDate(e.created_at ?? e.at)],
          [t("admin.actor"), (e) => e.actor_email ?? e.actor_id ?? ""],
          [t("admin.action"), (e) => e.action ?? ""],
          [t("admin.target"), (e) => e.target ?? e.entity ?? ""],
          [t("admin.version"), (e) => String(e.catalog_version ?? e.version ?? "")],
        ], page.items)
      : emptyState(t("admin.none")),
  );
}

const VIEWS = { models, templates, recharge, channels, users, audit };

export default async function render({ main, params }) {
  const section = SECTIONS.includes(params.section) ? params.section : "models";
  main.append(pageHeader(t("nav.admin"), t("admin.intro")));
  main.append(
    h(
      "nav",
      { class: "tabs", "aria-label": t("admin.sections") },
      SECTIONS.map((name) => h("a", { href: `/admin/${name}`, "aria-current": name === section ? "page" : false }, t(`admin.${name}`))),
    ),
  );
  const note = notice();
  const body = h("div", { id: "admin-body" }, loading());
  main.append(h("h2", {}, t(`admin.${section}`)), note.el, body);
  try {
    await VIEWS[section](body, note);
  } catch (error) {
    replace(body, errorBox(error));
  }
}
