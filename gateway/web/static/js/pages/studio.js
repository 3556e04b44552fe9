// Image Studio and Video Studio: an enabled model, a prompt, only the specs that model supports,
// uploads, the exact price from POST /v1/quotes before submitting, then the task's progress and results.

import { catalog, newIdempotencyKey, tasks } from "../api.js";
import { onLive } from "../balance.js";
import { field, h, id, replace, select } from "../dom.js";
import { credits, t } from "../i18n.js";
import { busy, emptyState, loadInto, notice, outputView, pageHeader, progressBar, statusBadge, submitForm } from "../ui.js";

const FINAL = new Set(["succeeded", "failed", "canceled"]);
// Which input role an uploaded image plays for a capability.
const ROLE = {
  reference_image: "reference",
  first_frame: "first_frame",
  image_to_video: "first_frame",
  image_edit: "edit",
  product_image: "product",
};

export function taskCard(task, { onCancel } = {}) {
  const card = h("article", { class: "card task", "data-task": task.id, "data-status": task.status });
  const draw = (current) => {
    card.dataset.status = current.status;
    const parts = [
      h("div", { class: "actions" }, statusBadge(current.status), h("code", {}, current.model), h("span", { class: "hint" }, credits(current.price))),
      current.prompt ? h("p", {}, current.prompt) : null,
    ];
    if (!FINAL.has(current.status)) {
      parts.push(progressBar(current.progress, t("task.progress")));
      if (onCancel) parts.push(h("button", { type: "button", class: "secondary small", onclick: () => onCancel(current) }, t("task.cancel")));
    }
    if (current.status === "failed" && current.error) parts.push(h("p", { class: "notice error" }, current.error.message || current.error.code || t("status.failed")));
    if (current.outputs?.length) {
      parts.push(h("div", { class: "outputs" }, current.outputs.map((output, i) => outputView(output, t("task.output_alt", { n: i + 1, prompt: current.prompt || "" })))));
    }
    replace(card, parts);
  };
  draw(task);
  card.update = draw;
  return card;
}

/** Follows a task until it is final: live `task` events, with a slow poll as a safety net. */
export function follow(task, onUpdate) {
  let stopped = false;
  let current = task;
  const refresh = async () => {
    try {
      current = await tasks.get(task.id);
      onUpdate(current);
    } catch {
      /* keep the last known state */
    }
  };
  const unsubscribe = onLive("task", (event) => {
    if (event.task_id !== task.id) return;
    refresh();
  });
  (async () => {
    while (!stopped && !FINAL.has(current.status)) {
      await new Promise((resolve) => setTimeout(resolve, 2000));
      if (!stopped) await refresh();
    }
    unsubscribe();
  })();
  return () => {
    stopped = true;
    unsubscribe();
  };
}

export default async function render({ main, view }) {
  const kind = view; // image | video
  main.append(pageHeader(t(`studio.${kind}.title`), t(`studio.${kind}.intro`)));
  const { holder, ok, value: models } = await loadInto(main, () => catalog.models(kind).then((r) => r.models || []));
  if (!ok) return undefined;
  if (!models.length) {
    holder.replaceChildren(emptyState(t("pricing.empty")));
    return undefined;
  }

  const stops = [];
  const note = notice();
  const priceOut = h("output", { class: "price", id: "quote-price", "aria-live": "polite" }, "—");
  const modelSelect = select(models.map((m) => [m.code, m.name]), { name: "model" });
  const prompt = h("textarea", { name: "prompt", required: true, maxlength: "4000", rows: "4" });
  const specsBox = h("div", { class: "specs-fields" });
  const uploads = [];
  const thumbs = h("ul", { class: "thumbs", "aria-label": t("studio.uploaded") });
  const fileInput = h("input", { type: "file", accept: "image/png,image/jpeg,image/webp", multiple: true });
  const uploadNote = notice();
  const uploadBox = h("div", {}, field(t("studio.uploads"), fileInput, t("studio.uploads_hint")), uploadNote.el, thumbs);
  const submit = h("button", { type: "submit", disabled: true }, t("studio.submit"));
  const results = h("section", { "aria-labelledby": "results-title" }, h("h2", { id: "results-title" }, t("studio.results")));
  const resultList = h("div", { class: "grid" });
  results.append(resultList);
  let controls = {};
  let quoteSeq = 0;
  let quoted = null;
  let idempotencyKey = newIdempotencyKey();

  const model = () => models.find((m) => m.code === modelSelect.value);

  function drawSpecs() {
    const m = model();
    const parts = [];
    controls = {};
    if (m.ratios?.length) {
      controls.ratio = select(m.ratios.map((r) => [r, r]), { name: "ratio" });
      parts.push(field(t("spec.ratio"), controls.ratio));
    }
    if (m.resolutions?.length) {
      controls.resolution = select(m.resolutions.map((r) => [r, r]), { name: "resolution" });
      parts.push(field(t("spec.resolution"), controls.resolution));
    }
    if (kind === "video" && m.durations?.length) {
      controls.duration = select(m.durations.map((d) => [d, t("spec.seconds", { n: d })]), { name: "duration" });
      parts.push(field(t("spec.duration"), controls.duration));
    }
    if (kind === "image" && (m.max_images || 1) > 1) {
      controls.n = h("input", { type: "number", name: "n", min: "1", max: String(m.max_images), value: "1" });
      parts.push(field(t("spec.count"), controls.n));
    }
    const caps = m.capabilities || [];
    if (caps.length) {
      controls.capability = select([["", t("studio.capability_none")], ...caps.map((c) => [c.code, c.name])], { name: "capability" });
      parts.push(field(t("spec.capability"), controls.capability));
    }
    for (const control of Object.values(controls)) control.addEventListener("change", refreshQuote);
    replace(specsBox, parts);
    uploadBox.hidden = !caps.some((c) => ROLE[c.code]);
  }

  function body() {
    const m = model();
    const capability = controls.capability?.value || "";
    return {
      model: m.code,
      ratio: controls.ratio?.value || "",
      resolution: controls.resolution?.value || "",
      duration_seconds: controls.duration ? Number(controls.duration.value) : 0,
      n: controls.n ? Math.max(1, Number(controls.n.value) || 1) : 1,
      capability,
      input_image_count: capability ? uploads.length : 0,
    };
  }

  async function refreshQuote() {
    const seq = ++quoteSeq;
    quoted = null;
    submit.disabled = true;
    priceOut.textContent = t("studio.quoting");
    try {
      const quote = await catalog.quote(body());
      if (seq !== quoteSeq) return;
      quoted = quote;
      priceOut.textContent = credits(quote.total);
      submit.disabled = false;
      note.clear();
    } catch (error) {
      if (seq !== quoteSeq) return;
      priceOut.textContent = "—";
      note.error(error);
    }
  }

  fileInput.addEventListener("change", async () => {
    const files = [...fileInput.files];
    fileInput.value = "";
    for (const file of files) {
      uploadNote.info(t("studio.uploading", { name: file.name }));
      try {
        const upload = await tasks.upload(file);
        uploads.push(upload);
        const remove = h("button", { type: "button", class: "secondary small", "aria-label": t("studio.remove_upload", { name: file.name }) }, "×");
        const item = h("li", {}, h("img", { src: upload.url || URL.createObjectURL(file), alt: file.name }), remove);
        remove.addEventListener("click", () => {
          uploads.splice(uploads.indexOf(upload), 1);
          item.remove();
          refreshQuote();
        });
        thumbs.append(item);
        uploadNote.clear();
      } catch (error) {
        uploadNote.error(error);
      }
    }
    refreshQuote();
  });

  const onCancel = async (task) => {
    try {
      await tasks.cancel(task.id);
    } catch (error) {
      note.error(error);
    }
  };

  function show(task) {
    const card = taskCard(task, { onCancel });
    resultList.prepend(card);
    stops.push(follow(task, (current) => card.update(current)));
  }

  const form = submitForm(
    { class: "card" },
    async () => {
      if (!prompt.value.trim()) {
        prompt.setAttribute("aria-invalid", "true");
        note.error(t("studio.prompt_required"));
        prompt.focus();
        return;
      }
      prompt.setAttribute("aria-invalid", "false");
      if (!quoted) return;
      await busy(submit, note, async () => {
        const b = body();
        const role = ROLE[b.capability] || "reference";
        const task = await tasks.submit(
          {
            kind,
            model: b.model,
            prompt: prompt.value.trim(),
            ratio: b.ratio,
            resolution: b.resolution,
            duration_seconds: b.duration_seconds,
            n: b.n,
            capability: b.capability,
            inputs: b.capability ? uploads.map((u) => ({ upload_id: u.id, role })) : [],
          },
          idempotencyKey,
        );
        idempotencyKey = newIdempotencyKey();
        note.success(t("studio.submitted", { price: credits(task.price ?? quoted.total) }));
        show(task);
      });
    },
    field(t("studio.model"), modelSelect),
    field(t("studio.prompt"), prompt),
    specsBox,
    uploadBox,
    h("p", {}, h("span", { id: id("price-label") }, t("studio.price")), " ", priceOut),
    note.el,
    h("div", { class: "actions" }, submit),
  );
  modelSelect.addEventListener("change", () => {
    drawSpecs();
    refreshQuote();
  });
  drawSpecs();
  holder.replaceChildren(h("div", { class: "columns" }, form, results));
  refreshQuote();

  try {
    const recent = await tasks.list({ kind, limit: 6 });
    for (const task of recent.items.reverse()) show(task);
  } catch {
    /* the list is a convenience; the form works without it */
  }
  return () => stops.forEach((stop) => stop());
}
