// Opens an HTML file in headless Chromium and fails (exit 1) when the page logs a console
// error, throws, fails a request, or lacks one of the named charts — a `figure.chart` whose
// `data-chart` is that name, holding an SVG with at least one drawn rectangle — at each of
// three widths: a laptop (1280 px), a narrow window (900 px) and a phone (390 px), where
// the page must also not scroll sideways as a whole (a wide table scrolls in its own box).
// Takes a full-page screenshot at each width (SHOT, SHOT-1280.png, SHOT-390.png).
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
const widths = [
  { name: "", width: 900, height: 1200 },
  { name: "-1280", width: 1280, height: 900 },
  { name: "-390", width: 390, height: 844, isMobile: true },
];
const report = {};
try {
  for (const view of widths) {
    const at = `${view.width} px`;
    const page = await browser.newPage({
      viewport: { width: view.width, height: view.height },
      isMobile: view.isMobile || false,
      javaScriptEnabled: !noScript,
    });
    page.on("console", (m) => {
      if (m.type() === "error" || m.type() === "warning") {
        problems.push(`${at}: console ${m.type()}: ${m.text()}`);
      }
    });
    page.on("pageerror", (e) => problems.push(`${at}: page error: ${e.message}`));
    page.on("requestfailed", (r) =>
      problems.push(`${at}: request failed: ${r.url()} (${r.failure()?.errorText})`),
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
      if (!found) problems.push(`${at}: chart missing: ${name}`);
      else if (found.rects < 2 || !found.visible) problems.push(`${at}: chart not drawn: ${name}`);
    }
    for (const selector of selectors) {
      if ((await page.locator(selector).count()) === 0) problems.push(`${at}: missing: ${selector}`);
    }
    const overflow = await page.evaluate(
      () => document.documentElement.scrollWidth - document.documentElement.clientWidth,
    );
    if (overflow > 1) problems.push(`${at}: the page scrolls sideways by ${overflow} px`);
    const path = view.name ? shot.replace(/\.png$/, `${view.name}.png`) : shot;
    await page.screenshot({ path, fullPage: true });
    if (!view.name) report.charts = drawn;
    await page.close();
  }
  console.log(JSON.stringify({ charts: report.charts, problems }));
} finally {
  await browser.close();
}
process.exit(problems.length ? 1 : 0);
