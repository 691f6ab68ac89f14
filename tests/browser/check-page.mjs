// Opens an HTML file in headless Chromium and fails (exit 1) when the page logs a console
// error, throws, fails a request, or lacks one of the named charts — a `figure.chart` whose
// `data-chart` is that name, holding an SVG with at least one drawn rectangle. Takes a
// full-page screenshot either way.
//
// node check-page.mjs PAGE.html SHOT.png [--no-js] ITEM [ITEM ...]
//
// An ITEM is a chart's name, or `css:SELECTOR` for an element that must be on the page (a
// form's fields). `--no-js` opens the page with JavaScript off: what it needs must work so.
import { chromium } from "playwright-core";
import { pathToFileURL } from "node:url";
import { resolve } from "node:path";

const [page_file, shot, ...items] = process.argv.slice(2);
const noScript = items.includes("--no-js");
const charts = items.filter((i) => i !== "--no-js" && !i.startsWith("css:"));
const selectors = items.filter((i) => i.startsWith("css:")).map((i) => i.slice(4));
if (!page_file || !shot) {
  console.error("usage: node check-page.mjs PAGE.html SHOT.png CHART...");
  process.exit(2);
}
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
const browser = await chromium.launch({
  executablePath,
  args: ["--no-sandbox", "--disable-gpu"],
});
const problems = [];
try {
  const page = await browser.newPage({
    viewport: { width: 900, height: 1200 },
    javaScriptEnabled: !noScript,
  });
  page.on("console", (m) => {
    if (m.type() === "error" || m.type() === "warning") {
      problems.push(`console ${m.type()}: ${m.text()}`);
    }
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("requestfailed", (r) =>
    problems.push(`request failed: ${r.url()} (${r.failure()?.errorText})`),
  );
  await page.goto(pathToFileURL(resolve(page_file)).href, { waitUntil: "load" });
  const drawn = await page.$$eval("figure.chart", (figures) =>
    figures.map((f) => {
      const rects = [...f.querySelectorAll("svg rect")].filter((r) => {
        const box = r.getBoundingClientRect();
        return box.width > 0 && box.height > 0;
      });
      const svg = f.querySelector("svg");
      const box = svg ? svg.getBoundingClientRect() : { width: 0, height: 0 };
      return {
        chart: f.dataset.chart,
        rects: rects.length,
        visible: box.width > 100 && box.height > 50,
      };
    }),
  );
  for (const name of charts) {
    const found = drawn.find((d) => d.chart === name);
    if (!found) problems.push(`chart missing: ${name}`);
    else if (found.rects < 2 || !found.visible) problems.push(`chart not drawn: ${name}`);
  }
  for (const selector of selectors) {
    if ((await page.locator(selector).count()) === 0) problems.push(`missing: ${selector}`);
  }
  await page.screenshot({ path: shot, fullPage: true });
  console.log(JSON.stringify({ charts: drawn, problems }));
} finally {
  await browser.close();
}
process.exit(problems.length ? 1 : 0);
