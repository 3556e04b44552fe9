// Billing: the balance, a recharge (amount with minimum and bonus tiers, or a plan; card, Alipay or
// WeChat Pay with a QR code; the sandbox payer locally), and every record with type filters.

import { billing, catalog, newIdempotencyKey } from "../api.js";
import { balance, onBalance, onLive, refreshBalance } from "../balance.js";
import { field, h, replace, select } from "../dom.js";
import { credits, formatDate, money, t } from "../i18n.js";
import { qrSvg } from "../qr.js";
import { busy, emptyState, errorBox, loading, notice, pageHeader, statusBadge, submitForm, table } from "../ui.js";

const RECORD_TYPES = ["recharge", "consumption", "refund", "adjustment", "callback"];

function balanceCard() {
  const available = h("output", { class: "price", id: "billing-available", "aria-live": "polite" }, "…");
  const held = h("span", { id: "billing-held" }, "");
  const draw = (value) => {
    available.textContent = value ? credits(value.available) : "…";
    held.textContent = value ? t("billing.held", { amount: value.held }) : "";
  };
  draw(balance());
  const stop = onBalance(draw);
  return { el: h("section", { class: "card", "aria-labelledby": "balance-title" }, h("h2", { id: "balance-title" }, t("billing.balance")), available, h("p", { class: "hint" }, held)), stop };
}

function nextStepView(order, onPaid) {
  const step = order.next_step || {};
  const parts = [h("p", {}, t("billing.order", { id: order.id }), " ", statusBadge(order.status))];
  if (order.status !== "pending") return h("div", { class: "card", id: "recharge-step" }, parts);
  if (step.type === "qr_code" && step.code_url) {
    parts.push(h("p", {}, t("billing.scan_wechat")), h("div", { class: "qr" }, qrSvg(step.code_url, t("billing.qr_label"))));
  } else if (step.type === "redirect" && step.url) {
    parts.push(h("p", {}, h("a", { href: step.url, target: "_blank", rel: "noopener noreferrer", class: "button" }, t("billing.pay_now"))));
  }
  if (order.provider === "sandbox") {
    const note = notice();
    const pay = h("button", { type: "button", id: "sandbox-pay" }, t("billing.sandbox_pay"));
    pay.addEventListener("click", () =>
      busy(pay, note, async () => {
        await billing.sandboxPay(order.id);
        note.success(t("billing.sandbox_sent"));
        onPaid();
      }),
    );
    parts.push(h("p", { class: "hint" }, t("billing.sandbox_hint")), h("div", { class: "actions" }, pay), note.el);
  }
  parts.push(h("p", { class: "hint" }, t("billing.waiting")));
  return h("div", { class: "card", id: "recharge-step", "aria-live": "polite" }, parts);
}

function rechargeSection(options, stops) {
  const rules = options.rules || {};
  const minimum = rules.minimum?.amount ?? "30";
  const note = notice();
  const methods = options.payment_methods || [];
  const methodBox = h(
    "fieldset",
    {},
    h("legend", {}, t("billing.method")),
    h(
      "div",
      { class: "choices" },
      methods.map((m, i) => h("label", {}, h("input", { type: "radio", name: "method", value: m.code, checked: i === 0 }), m.name)),
    ),
  );
  const plans = options.plans || [];
  const choice = select(
    [["amount", t("billing.custom_amount")], ...plans.map((p) => [`plan:${p.code}`, t("billing.plan_option", { name: p.name, price: money(p.price), credits: p.credits })])],
    { name: "choice" },
  );
  const amount = h("input", { type: "text", name: "amount", inputmode: "decimal", value: minimum, pattern: "^\\d{1,9}(\\.\\d{1,2})?$", autocomplete: "off" });
  const amountField = field(t("billing.amount", { currency: rules.currency || "CNY" }), amount, t("billing.minimum", { amount: money(rules.minimum || { amount: minimum, currency: "CNY" }) }));
  const preview = h("output", { id: "recharge-preview", "aria-live": "polite" }, "");
  const submit = h("button", { type: "submit" }, t("billing.recharge"));
  const stepBox = h("div", {});
  let key = newIdempotencyKey();

  const method = () => methodBox.querySelector("input[name=method]:checked")?.value;
  const body = () => (choice.value === "amount" ? { method: method(), amount: amount.value.trim(), currency: rules.currency || "CNY" } : { method: method(), plan: choice.value.slice(5) });
  const valid = () => {
    if (choice.value !== "amount") return true;
    const value = amount.value.trim();
    if (!/^\d{1,9}(\.\d{1,2})?$/.test(value)) return false;
    // Compare decimal strings as integers of minor units, never as floats.
    const minor = (text) => {
      const [whole, frac = ""] = text.split(".");
      return BigInt(whole) * 100n + BigInt((frac + "00").slice(0, 2));
    };
    return minor(value) >= minor(minimum);
  };
  let previewSeq = 0;
  const refreshPreview = async () => {
    amountField.hidden = choice.value !== "amount";
    const seq = ++previewSeq;
    if (!valid()) {
      amount.setAttribute("aria-invalid", "true");
      preview.textContent = t("billing.below_minimum", { amount: minimum });
      return;
    }
    amount.setAttribute("aria-invalid", "false");
    try {
      const quote = await catalog.rechargeQuote(body());
      if (seq === previewSeq) preview.textContent = t("billing.preview", { paid: quote.paid_credits, bonus: quote.bonus_credits, total: quote.total_credits });
    } catch {
      if (seq === previewSeq) preview.textContent = "";
    }
  };
  amount.addEventListener("input", () => {
    key = newIdempotencyKey();
    refreshPreview();
  });
  choice.addEventListener("change", () => {
    key = newIdempotencyKey();
    refreshPreview();
  });
  methodBox.addEventListener("change", () => {
    key = newIdempotencyKey();
  });

  let poll = null;
  let check = null;
  const watch = (order) => {
    const draw = (current) => replace(stepBox, nextStepView(current, () => refreshBalance()));
    draw(order);
    clearInterval(poll);
    check = async () => {
      try {
        const current = await billing.recharge(order.id);
        if (current.status !== "pending") {
          clearInterval(poll);
          check = null;
          draw(current);
          if (current.status === "completed") note.success(t("billing.credited", { credits: current.total_credits }));
          refreshBalance();
        }
      } catch {
        /* try again on the next tick */
      }
    };
    poll = setInterval(() => check?.(), 2000);
  };
  stops.push(() => clearInterval(poll));
  // A completed recharge (or any balance change) settles the order shown at once, not at the next poll.
  stops.push(onLive("recharge", () => check?.()));
  stops.push(onBalance(() => check?.()));

  const tiers = (rules.bonus_tiers || []).map((tier) => h("li", {}, t("billing.tier", { amount: money(tier.amount), credits: tier.credits })));
  const form = submitForm(
    { id: "recharge-form" },
    async () => {
      if (!method()) return note.error(t("billing.no_methods"));
      if (!valid()) {
        note.error(t("billing.below_minimum", { amount: minimum }));
        amount.focus();
        return undefined;
      }
      return busy(submit, note, async () => {
        note.clear();
        const order = await billing.createRecharge(body(), key);
        key = newIdempotencyKey();
        watch(order);
      });
    },
    methodBox,
    field(t("billing.what"), choice),
    amountField,
    h("p", {}, preview),
    note.el,
    h("div", { class: "actions" }, submit),
  );
  refreshPreview();
  return h(
    "section",
    { class: "card", "aria-labelledby": "recharge-title" },
    h("h2", { id: "recharge-title" }, t("billing.recharge")),
    h("p", { class: "hint" }, t("billing.rate", { rate: rules.credits_per_unit || "1", currency: rules.currency || "CNY" })),
    tiers.length ? h("div", {}, h("h3", {}, t("billing.bonus_tiers")), h("ul", { id: "bonus-tiers" }, tiers)) : null,
    plans.length ? h("div", {}, h("h3", {}, t("billing.plans")), h("ul", { id: "plans" }, plans.map((p) => h("li", {}, t("billing.plan_option", { name: p.name, price: money(p.price), credits: p.credits }))))) : null,
    form,
    stepBox,
  );
}

function describe(record) {
  const transfer = record.transfer;
  const callback = record.callback;
  if (callback) {
    const outcome = String(callback.outcome || "").toLowerCase().replace("callback_outcome_", "");
    const reason = callback.reason && callback.reason.toLowerCase() !== outcome ? callback.reason : "";
    return [callback.provider, outcome ? t(`outcome.${outcome}`) : "", reason].filter(Boolean).join(" · ");
  }
  if (!transfer) return "";
  const meta = transfer.metadata || {};
  return [meta.model, meta.template, transfer.reference?.id, transfer.reason].filter(Boolean).join(" · ");
}

function recordsSection() {
  const filter = select([["", t("records.all")], ...RECORD_TYPES.map((type) => [type, t(`records.${type}`)])], { name: "type", id: "records-type" });
  const list = h("div", {}, loading());
  const more = h("button", { type: "button", class: "secondary", hidden: true }, t("common.more"));
  let cursor = null;
  let rows = [];
  const draw = () => {
    if (!rows.length) return replace(list, emptyState(t("records.empty")));
    return replace(
      list,
      table(t("records.title"), [
        [t("records.when"), (r) => formatDate(r.occurred_at)],
        [t("records.type"), (r) => h("span", { class: "badge", "data-type": r.type }, t(`records.${r.type}`))],
        [t("records.delta"), (r) => (r.type === "callback" ? "—" : r.delta)],
        [t("records.detail"), (r) => describe(r)],
      ], rows),
    );
  };
  const load = async (reset) => {
    if (reset) {
      rows = [];
      cursor = null;
      replace(list, loading());
    }
    try {
      const page = await billing.records({ type: filter.value || undefined, cursor: cursor || undefined });
      rows = rows.concat(page.items);
      cursor = page.next_cursor;
      more.hidden = !cursor;
      draw();
    } catch (error) {
      replace(list, errorBox(error));
    }
  };
  filter.addEventListener("change", () => load(true));
  more.addEventListener("click", () => load(false));
  load(true);
  return {
    el: h("section", { "aria-labelledby": "records-title" }, h("h2", { id: "records-title" }, t("records.title")), field(t("records.filter"), filter), list, more),
    reload: () => load(true),
  };
}

export default async function render({ main }) {
  const stops = [];
  main.append(pageHeader(t("billing.title"), t("billing.intro")));
  const top = balanceCard();
  stops.push(top.stop);
  refreshBalance();
  const rechargeHolder = h("div", {}, loading());
  const records = recordsSection();
  main.append(h("div", { class: "columns" }, h("div", {}, top.el, rechargeHolder), records.el));
  stops.push(onBalance(() => records.reload()));
  try {
    const options = await catalog.rechargeOptions();
    rechargeHolder.replaceChildren(rechargeSection(options, stops));
  } catch (error) {
    rechargeHolder.replaceChildren(errorBox(error));
  }
  return () => stops.forEach((stop) => stop());
}
