// ESLint for the web console (docs/web-console.md): plain ES modules that the browser runs as they are,
// so the checks are the ones that catch real bugs there. vendor/ is third-party and pinned unmodified.
import js from "@eslint/js";
import globals from "globals";

export default [
  { ignores: ["gateway/web/static/vendor/**"] },
  js.configs.recommended,
  {
    files: ["gateway/web/static/js/**/*.js"],
    languageOptions: {
      ecmaVersion: "latest",
      sourceType: "module",
      globals: globals.browser,
    },
    linterOptions: { reportUnusedDisableDirectives: "error" },
    rules: {
      "no-undef": "error",
      "no-unused-vars": ["error", { args: "after-used", caughtErrors: "all" }],
      eqeqeq: ["error", "always"],
      "no-implicit-globals": "error",
      "prefer-const": "error",
    },
  },
];
