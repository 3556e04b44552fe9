// Usage: spend per day and per model (and per kind), from the ledger, as charts and tables.

import { billing } from "../api.js";
import { onBalance } from "../balance.js";
import { field, h, replace, select } from "../dom.js";
import { credits, t } from "../i18n.js";
import { barChart } from "../charts.js";
import { emptyState, errorBox, loading, pageHeader, table } from "../ui.js";

function isoDay(date) {
  return date.toISOString().slice(0, 10);
}

/** Every day of the range, zero where nothing was spent, so the chart's time axis is honest. */
function fillDays(buckets, days) {
  const byKey = new Map(buckets.map((b) => [b.key, b]));
  const out = [];
  const today = new Date();
  for (let i = days - 1; i >= 0; i -= 1) {
    const day = new Date(Date.UTC(today.getFullYear(), today.getMonth(), today.getDate() - i));
    const key = isoDay(day);
    out.push(byKey.get(key) || { key, spend: "0", count: 0 });
  }
  return out;
}

export default async function render({ main }) {
  main.append(pageHeader(t("usage.title"), t("usage.intro")));
  const range = select([["7", t("usage.days", { n: 7 })], ["30", t("usage.days", { n: 30 })], ["90", t("usage.days", { n: 90 })]], { name: "range", value: "30" });
  const body = h("div", {}, loading());
  main.append(field(t("usage.range"), range), body);
  const load = async () => {
    const days = Number(range.value);
    const from = new Date();
    from.setHours(0, 0, 0, 0);
    from.setDate(from.getDate() - (days - 1));
    const query = { from: from.toISOString(), to: new Date(Date.now() + 60_000).toISOString() };
    try {
      const [byDay, byModel, byKind] = await Promise.all(["day", "model", "kind"].map((group_by) => billing.usage({ ...query, group_by })));
      const modelBuckets = byModel.buckets || [];
      const parts = [h("p", { class: "price", id: "usage-total" }, t("usage.total", { amount: credits(byDay.total ?? "0") }))];
      if (!modelBuckets.length) parts.push(emptyState(t("usage.empty")));
      const spentDays = (byDay.buckets || []).filter((b) => b.spend !== "0");
      parts.push(
        h(
          "section",
          { class: "card", id: "chart-day" },
          barChart(t("usage.per_day"), fillDays(byDay.buckets || [], days)),
          spentDays.length
            ? h("div", { class: "visually-hidden" }, table(t("usage.per_day"), [[t("usage.day"), (b) => b.key], [t("usage.spend"), (b) => b.spend]], spentDays))
            : null,
        ),
        h("section", { class: "card", id: "chart-model" }, barChart(t("usage.per_model"), modelBuckets)),
      );
      if (modelBuckets.length) {
        parts.push(
          table(t("usage.per_model"), [[t("usage.model"), (b) => b.key], [t("usage.count"), (b) => String(b.count ?? "")], [t("usage.spend"), (b) => b.spend]], modelBuckets),
          table(t("usage.per_kind"), [[t("usage.kind"), (b) => t(`kind.${b.key}`)], [t("usage.count"), (b) => String(b.count ?? "")], [t("usage.spend"), (b) => b.spend]], byKind.buckets || []),
        );
      }
      replace(body, parts);
    } catch (error) {
      replace(body, errorBox(error));
    }
  };
  range.addEventListener("change", load);
  await load();
  let timer = null;
  const stop = onBalance(() => {
    clearTimeout(timer);
    timer = setTimeout(load, 500); // spend changes move the balance: redraw shortly after
  });
  return () => {
    stop();
    clearTimeout(timer);
  };
}
