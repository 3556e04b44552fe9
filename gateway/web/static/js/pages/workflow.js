// Workflow: the templates with their inputs and price, starting a run, and the run history with each
// step's status and outputs.

import { catalog, newIdempotencyKey, tasks, workflows } from "../api.js";
import { onLive, refreshBalance } from "../balance.js";
import { field, h, replace, select } from "../dom.js";
import { credits, formatDate, t } from "../i18n.js";
import { busy, emptyState, errorBox, loadInto, loading, notice, outputView, pageHeader, statusBadge, submitForm } from "../ui.js";

const FINAL = new Set(["succeeded", "failed", "canceled"]);

function inputControl(input, uploadsByName, note) {
  const label = input.label || input.name;
  if (input.type === "choice") {
    const control = select(input.allowed_values.map((v) => [v, v]), { name: input.name, required: input.required });
    return { el: field(label, control), value: () => control.value };
  }
  if (input.type === "image_uploads") {
    const uploads = [];
    uploadsByName[input.name] = uploads;
    const file = h("input", { type: "file", name: input.name, accept: "image/png,image/jpeg,image/webp", multiple: (input.max_items || 1) > 1 });
    const thumbs = h("ul", { class: "thumbs" });
    file.addEventListener("change", async () => {
      for (const chosen of [...file.files]) {
        try {
          const upload = await tasks.upload(chosen);
          uploads.push(upload);
          thumbs.append(h("li", {}, h("img", { src: upload.url || URL.createObjectURL(chosen), alt: chosen.name })));
        } catch (error) {
          note.error(error);
        }
      }
      file.value = "";
    });
    const hint = t("workflow.uploads_hint", { min: input.min_items || (input.required ? 1 : 0), max: input.max_items || 1 });
    return { el: h("div", {}, field(label, file, hint), thumbs), value: () => uploads.map((u) => u.id) };
  }
  const control = h("textarea", { name: input.name, rows: "3", required: input.required, maxlength: input.max_length ? String(input.max_length) : undefined });
  return { el: field(label, control), value: () => control.value.trim() };
}

function runCard(run, onCancel) {
  const card = h("article", { class: "card run", "data-run": run.id });
  card.update = (current) => {
    card.dataset.status = current.status;
    replace(
      card,
      h("div", { class: "actions" }, statusBadge(current.status), h("strong", {}, current.template), h("span", { class: "hint" }, credits(current.price)), h("span", { class: "hint" }, formatDate(current.created_at))),
      current.refund_amount && current.refund_amount !== "0" ? h("p", { class: "hint" }, t("workflow.refunded", { amount: current.refund_amount })) : null,
      h(
        "ol",
        { class: "steps" },
        current.steps.map((step) =>
          h(
            "li",
            { class: `status-${step.status}`, "data-step": step.key },
            h("div", { class: "actions" }, h("strong", {}, step.key), statusBadge(step.status), h("code", {}, step.model || "")),
            step.error ? h("p", { class: "notice error" }, step.error.message || step.error.code) : null,
            step.outputs.length ? h("div", { class: "outputs" }, step.outputs.map((o, i) => outputView(o, t("workflow.output_alt", { step: step.key, n: i + 1 })))) : null,
          ),
        ),
      ),
      !FINAL.has(current.status) && onCancel ? h("button", { type: "button", class: "secondary small", onclick: () => onCancel(current) }, t("workflow.cancel")) : null,
    );
  };
  card.update(run);
  return card;
}

export default async function render({ main }) {
  main.append(pageHeader(t("workflow.title"), t("workflow.intro")));
  const { holder, ok, value: templates } = await loadInto(main, () => catalog.templates().then((r) => r.templates || []));
  if (!ok) return undefined;
  const stops = [];
  const note = notice();
  const runsList = h("div", { class: "runs" }, loading());
  const cards = new Map();
  const onCancel = async (run) => {
    try {
      cards.get(run.id)?.update(await workflows.cancel(run.id));
    } catch (error) {
      note.error(error);
    }
  };
  const follow = (run) => {
    let card = cards.get(run.id);
    if (!card) {
      card = runCard(run, onCancel);
      cards.set(run.id, card);
      runsList.querySelector(".empty")?.remove();
      runsList.prepend(card);
    } else card.update(run);
    if (FINAL.has(run.status)) return;
    let stopped = false;
    const refresh = async () => {
      try {
        const current = await workflows.get(run.id);
        card.update(current);
        if (FINAL.has(current.status)) {
          stopped = true;
          refreshBalance();
        }
      } catch {
        /* keep the last state */
      }
    };
    const unsubscribe = onLive("run", (event) => {
      if (event.run_id === run.id) refresh();
    });
    (async () => {
      while (!stopped) {
        await new Promise((resolve) => setTimeout(resolve, 2000));
        if (!stopped) await refresh();
      }
      unsubscribe();
    })();
    stops.push(() => {
      stopped = true;
      unsubscribe();
    });
  };

  if (!templates.length) {
    holder.replaceChildren(emptyState(t("workflow.empty")));
  } else {
    const chooser = select(templates.map((tpl) => [tpl.code, `${tpl.name} · ${credits(tpl.price)}`]), { name: "template" });
    const details = h("div", {});
    const inputsBox = h("div", {});
    const submit = h("button", { type: "submit" }, t("workflow.start"));
    let controls = {};
    let uploads = {};
    let key = newIdempotencyKey();
    const template = () => templates.find((tpl) => tpl.code === chooser.value);
    const draw = () => {
      const tpl = template();
      controls = {};
      uploads = {};
      key = newIdempotencyKey();
      replace(
        details,
        h("p", { class: "price", id: "template-price" }, credits(tpl.price)),
        tpl.description ? h("p", {}, tpl.description) : null,
        h("p", { class: "hint" }, t("workflow.steps"), " ", tpl.steps.map((s) => `${s.label || s.key} (${s.model})`).join(" → ")),
        tpl.notes ? h("p", { class: "hint" }, tpl.notes) : null,
        h("p", { class: "hint" }, t(`workflow.refund.${tpl.refund_policy}`)),
      );
      replace(
        inputsBox,
        tpl.inputs.map((input) => {
          const control = inputControl(input, uploads, note);
          controls[input.name] = control;
          return control.el;
        }),
      );
    };
    chooser.addEventListener("change", draw);
    draw();
    const form = submitForm(
      { class: "card" },
      async () => {
        const tpl = template();
        const inputs = {};
        for (const input of tpl.inputs) {
          const value = controls[input.name].value();
          const missing = Array.isArray(value) ? value.length < (input.min_items || (input.required ? 1 : 0)) : input.required && !value;
          if (missing) {
            note.error(t("workflow.missing", { name: input.label || input.name }));
            return;
          }
          inputs[input.name] = value;
        }
        await busy(submit, note, async () => {
          const run = await workflows.start(tpl.code, inputs, key);
          key = newIdempotencyKey();
          note.success(t("workflow.started", { price: credits(run.price ?? tpl.price) }));
          follow(run);
          refreshBalance();
        });
      },
      field(t("workflow.template"), chooser),
      details,
      inputsBox,
      note.el,
      h("div", { class: "actions" }, submit),
    );
    holder.replaceChildren(h("div", { class: "columns" }, form, h("section", { "aria-labelledby": "runs-title" }, h("h2", { id: "runs-title" }, t("workflow.history")), runsList)));
  }
  if (!templates.length) holder.append(h("section", {}, h("h2", {}, t("workflow.history")), runsList));
  try {
    const runs = await workflows.list();
    replace(runsList);
    if (!runs.items.length) runsList.append(emptyState(t("workflow.no_runs")));
    for (const run of runs.items.reverse()) follow(run);
  } catch (error) {
    replace(runsList, errorBox(error));
  }
  return () => stops.forEach((stop) => stop());
}
