// Pricing: the enabled public models by kind with billing, specs and capabilities, and the templates.

import { catalog } from "../api.js";
import { h } from "../dom.js";
import { credits, t } from "../i18n.js";
import { emptyState, loadInto, pageHeader } from "../ui.js";

export function billingText(billing) {
  if (!billing) return "";
  if (billing.unit === "per_1k_tokens") {
    return t("billing.per_1k_tokens", { input: billing.input_price_per_1k_tokens, output: billing.output_price_per_1k_tokens });
  }
  return t(`billing.${billing.unit}`, { price: billing.price });
}

function specs(model) {
  const rows = [
    [t("spec.ratios"), model.ratios],
    [t("spec.resolutions"), model.resolutions],
    [t("spec.durations"), (model.durations || []).map((d) => t("spec.seconds", { n: d }))],
  ].filter(([, values]) => values && values.length);
  return h("dl", { class: "specs" }, rows.map(([label, values]) => [h("dt", {}, label), h("dd", {}, values.join(", "))]));
}

export function modelCard(model) {
  return h(
    "article",
    { class: "card model", "data-model": model.code },
    h("h3", {}, model.name),
    h("p", { class: "hint" }, h("code", {}, model.code)),
    model.description ? h("p", {}, model.description) : null,
    h("p", { class: "price" }, billingText(model.billing)),
    specs(model),
    h(
      "div",
      {},
      h("span", { class: "hint" }, t("spec.capabilities")),
      model.capabilities?.length
        ? h("ul", { class: "tags" }, model.capabilities.map((c) => h("li", {}, c.name)))
        : h("p", { class: "hint" }, t("spec.no_capabilities")),
    ),
  );
}

export default async function render({ main }) {
  main.append(pageHeader(t("pricing.title"), t("pricing.intro")));
  const { holder: body, ok, value: pricing } = await loadInto(main, () => catalog.pricing());
  if (!ok) return;
  const groups = (pricing.groups || []).filter((g) => g.models?.length);
  const parts = [];
  if (!groups.length || pricing.admin_must_enable_models) {
    parts.push(emptyState(t("pricing.empty")));
  }
  for (const group of groups) {
    parts.push(h("section", { "aria-labelledby": `kind-${group.kind}` }, h("h2", { id: `kind-${group.kind}` }, t(`kind.${group.kind}`)), h("div", { class: "grid" }, group.models.map(modelCard))));
  }
  if (pricing.templates?.length) {
    parts.push(
      h(
        "section",
        { "aria-labelledby": "kind-templates" },
        h("h2", { id: "kind-templates" }, t("pricing.templates")),
        h(
          "div",
          { class: "grid" },
          pricing.templates.map((template) =>
            h("article", { class: "card" }, h("h3", {}, template.name), h("p", { class: "price" }, credits(template.price)), h("p", { class: "hint" }, template.notes || template.description || "")),
          ),
        ),
      ),
    );
  }
  body.replaceChildren(...parts);
}
