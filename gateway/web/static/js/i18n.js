// Every visible string lives in /assets/i18n/strings.json ({"en": {...}, "zh": {...}}).

const LANG_KEY = "atelier.lang";
let strings = { en: {}, zh: {} };
let lang = "en";
const listeners = new Set();

export async function loadStrings() {
  const response = await fetch("/assets/i18n/strings.json", { cache: "no-cache" });
  strings = await response.json();
  const stored = localStorage.getItem(LANG_KEY);
  lang = stored === "zh" || stored === "en" ? stored : (navigator.language || "en").toLowerCase().startsWith("zh") ? "zh" : "en";
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
}

export function currentLang() {
  return lang;
}

export function setLang(next) {
  if (next !== "en" && next !== "zh") return;
  lang = next;
  localStorage.setItem(LANG_KEY, next);
  document.documentElement.lang = next === "zh" ? "zh-CN" : "en";
  for (const listener of listeners) listener(next);
}

export function onLangChange(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

/** The string for `key` in the current language (English, then the key itself, as fallbacks);
 *  `{name}` placeholders are filled from `vars`. */
export function t(key, vars = {}) {
  const template = strings[lang]?.[key] ?? strings.en?.[key] ?? key;
  return template.replace(/\{(\w+)\}/g, (match, name) => (name in vars ? String(vars[name]) : match));
}

export function formatDate(value) {
  if (!value) return "";
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  return new Intl.DateTimeFormat(lang === "zh" ? "zh-CN" : "en", { dateStyle: "medium", timeStyle: "short" }).format(date);
}

/** Credits arrive as decimal strings ("330", "0.5"); they are shown as given, never via floats. */
export function credits(value) {
  return t("credits.amount", { amount: value ?? "0" });
}

export function money(value) {
  if (!value) return "";
  const symbol = { CNY: "¥", USD: "$" }[value.currency] ?? `${value.currency} `;
  return `${symbol}${value.amount}`;
}
