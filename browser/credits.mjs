// Drives Debian's Chromium (headless) against a running hub with credits:
//  1. a user logs in and sees their balance in the header badge;
//  2. after their server is charged, the badge shows the new balance without a reload;
//  3. a user without credits who starts a server sees the refusal message.
// Usage: HUB_URL=http://127.0.0.1:8000 RICH_USER=alice BROKE_USER=broke-bob node credits.mjs
import { chromium } from "playwright-core";
import assert from "node:assert/strict";

const base = process.env.HUB_URL ?? "http://127.0.0.1:8000";
const rich = process.env.RICH_USER ?? "alice";
const broke = process.env.BROKE_USER ?? "broke-bob";
const shots = process.env.SCREENSHOT_DIR;
const timeout = Number(process.env.CHARGE_TIMEOUT_MS ?? 90000);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});

async function login(name) {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${base}/hub/login`);
  await page.fill("input[name=username]", name);
  await page.fill("input[name=password]", "any");
  await Promise.all([page.waitForNavigation(), page.click("#login_submit")]);
  return page;
}

let failed = false;
try {
  // 1 and 2: the badge, live.
  const page = await login(rich);
  // Logging in starts the default server; go home once it is ready.
  await page.goto(`${base}/hub/home`);
  await page.waitForSelector("#credits-badge:not([hidden])", { timeout: 30000 });
  const first = (await page.textContent("#credits-balance")).trim();
  console.log(`badge after login: ${first}`);
  assert.match(first, /^\d+\/\d+/);
  await page.waitForFunction(
    (before) => document.getElementById("credits-balance").textContent.trim() !== before,
    first,
    { timeout },
  );
  const second = (await page.textContent("#credits-balance")).trim();
  console.log(`badge after a charge: ${second}`);
  assert.notEqual(second, first);
  if (shots) await page.screenshot({ path: `${shots}/badge.png` });

  // The credits page of the service, reached through the hub's login.
  await page.goto(`${base}/services/credits/`);
  await page.waitForSelector(".pool .balance", { timeout: 30000 });
  const shown = (await page.textContent(".pool .balance")).trim();
  console.log(`credits page balance: ${shown}`);
  assert.match(shown, /^\d+$/);
  if (shots) await page.screenshot({ path: `${shots}/page.png` });

  // 3: the refusal, as the spawn page shows it.
  const poor = await login(broke);
  await poor.goto(`${base}/hub/spawn`);
  await poor.waitForFunction(
    () => /Not enough credits/.test(document.body.innerText),
    null,
    { timeout: 30000 },
  );
  const text = await poor.evaluate(() => document.body.innerText);
  const line = text.split("\n").find((l) => l.includes("Not enough credits"));
  console.log(`refusal shown: ${line}`);
  assert.match(line, /needs \d+ credits every \d+ seconds/);
  if (shots) await poor.screenshot({ path: `${shots}/refused.png` });
} catch (e) {
  failed = true;
  console.error(e);
} finally {
  await browser.close();
}
console.log(failed ? "0 passed, 1 failed" : "1 passed, 0 failed");
process.exit(failed ? 1 : 0);
