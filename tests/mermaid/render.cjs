// Renders mermaid charts with mermaid's own bundle in one headless Chromium page, as GitHub's
// viewer does in the browser: mmdc opens a fresh page per chart (~1.5 s each on 2 cores), this
// renders a report's 30 charts in a few seconds. Used by tests/test_report_curves.py.
//
//   NODE_PATH=.tools/mermaid/node_modules CHROMIUM=/usr/bin/chromium \
//     node tests/mermaid/render.cjs charts.json > results.json
//
// charts.json: a JSON list of chart texts. Prints a JSON list, one {"ok", "svg" | "error"} each.
"use strict";
const fs = require("fs");
const path = require("path");
const puppeteer = require("puppeteer");

async function main() {
  const charts = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
  const mermaidJs = path.join(path.dirname(require.resolve("mermaid/package.json")), "dist/mermaid.min.js");
  const browser = await puppeteer.launch({
    headless: true,
    executablePath: process.env.CHROMIUM,
    // no sandbox: Chromium refuses to start one as root (containers, CI images)
    args: ["--no-sandbox", "--disable-gpu"],
  });
  try {
    const page = await browser.newPage();
    await page.setContent("<!doctype html><html><body></body></html>");
    await page.addScriptTag({ path: mermaidJs });
    const results = await page.evaluate(async (texts) => {
      mermaid.initialize({ startOnLoad: false });
      const out = [];
      for (const [i, text] of texts.entries()) {
        try {
          const { svg } = await mermaid.render(`chart${i}`, text);
          out.push({ ok: true, svg });
        } catch (error) {
          out.push({ ok: false, error: String((error && error.message) || error) });
        }
      }
      return out;
    }, charts);
    process.stdout.write(JSON.stringify(results));
  } finally {
    await browser.close();
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(2);
});
