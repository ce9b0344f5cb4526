// The token console in a real browser: Debian's Chromium, headless, driven by
// playwright-core, against the page the token API serves in a running stack
// (real Envoy + filter.wasm). harness/tests/console_browser.rs starts the stack
// and runs this script with:
//   CONSOLE_URL   http://127.0.0.1:<token api>/console/
//   API_URL       http://127.0.0.1:<token api>
//   GATEWAY_MCP   http://127.0.0.1:<gateway>/mcp
//   ADMIN_KEY     the stack's admin key
//   POLL_MS       the filter's revocation_poll_ms
//   SCREENSHOTS   folder for one PNG per page (created)
//   CHROMIUM      the browser binary (default /usr/bin/chromium)

import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const env = (name, fallback) => {
  const v = process.env[name] ?? fallback;
  if (v === undefined) throw new Error(`${name} is not set (console_browser.rs sets it)`);
  return v;
};
const CONSOLE_URL = env('CONSOLE_URL');
const API_URL = env('API_URL');
const GATEWAY_MCP = env('GATEWAY_MCP');
const ADMIN_KEY = env('ADMIN_KEY');
const POLL_MS = Number(env('POLL_MS'));
const SCREENSHOTS = env('SCREENSHOTS');
const CHROMIUM = env('CHROMIUM', '/usr/bin/chromium');
// Feed round trip and scheduling on a busy 2-core machine, on top of one poll period.
const REVOKE_SLACK_MS = 400;
const XSS_NAME = '<img src=x onerror=alert(1)>';

let passed = 0;
let failed = 0;
const t0 = Date.now();

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
}

function eq(actual, expected, what) {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) throw new Error(`${what}: got ${a}, want ${e}`);
}

async function step(name, fn) {
  const start = Date.now();
  try {
    await fn();
    passed += 1;
    console.log(`ok   ${name} (${Date.now() - start} ms)`);
  } catch (e) {
    failed += 1;
    console.log(`FAIL ${name}: ${e.stack || e}`);
    throw e;
  }
}

async function api(method, path, body, key = ADMIN_KEY) {
  const resp = await fetch(API_URL + path, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await resp.text();
  return { status: resp.status, json: text ? JSON.parse(text) : null };
}

async function gateway(token, message) {
  const resp = await fetch(GATEWAY_MCP, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${token}`,
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
    },
    body: JSON.stringify(message),
  });
  await resp.arrayBuffer();
  return resp.status;
}

const initialize = {
  jsonrpc: '2.0', id: 1, method: 'initialize',
  params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'console-test', version: '1' } },
};
const toolCall = (name) => ({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name, arguments: {} } });

async function shot(page, name) {
  await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage: true });
}

/** No element wider than the viewport: the page works at this width without sideways scrolling. */
async function fitsWidth(page, what) {
  const { scroll, inner } = await page.evaluate(() => ({
    scroll: document.documentElement.scrollWidth, inner: window.innerWidth,
  }));
  check(scroll <= inner, `${what}: page is ${scroll} px wide in a ${inner} px viewport`);
}

/** Every form control is labelled (a <label for>, or aria-label). */
async function allLabelled(page, what) {
  const unlabelled = await page.evaluate(() => Array.from(document.querySelectorAll('main input, main select, main textarea, dialog input, dialog textarea'))
    .filter((el) => el.labels.length === 0 && !el.getAttribute('aria-label'))
    .map((el) => el.id || el.name || el.outerHTML.slice(0, 60)));
  eq(unlabelled, [], `${what}: unlabelled controls`);
}

async function signIn(page, credential) {
  await page.goto(CONSOLE_URL);
  await page.locator('#credential').waitFor();
  // Keyboard only: the field has focus, Enter submits.
  check(await page.evaluate(() => document.activeElement.id === 'credential'), 'the credential field has focus');
  await page.keyboard.type(credential);
  await page.keyboard.press('Enter');
}

async function main() {
  mkdirSync(SCREENSHOTS, { recursive: true });
  const profile = mkdtempSync(join(tmpdir(), 'mcpgw-console-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-quic', '--no-first-run'],
    viewport: { width: 1280, height: 800 },
  });
  const origin = new URL(CONSOLE_URL).origin;
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin });
  const alerts = [];
  const pageErrors = [];
  const watch = (page) => {
    page.on('dialog', (d) => { alerts.push(d.message()); d.dismiss().catch(() => {}); });
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    page.on('console', (m) => { if (m.type() === 'error' && !/status of 40[0-9]/.test(m.text())) pageErrors.push(m.text()); });
    return page;
  };
  try {
    const page = watch(context.pages()[0] || await context.newPage());
    let token = null;
    let tokenId = null;

    await step('the page is served with a strict CSP and no framing', async () => {
      const r = await fetch(CONSOLE_URL);
      eq(r.status, 200, 'status');
      const csp = r.headers.get('content-security-policy') || '';
      for (const part of ["script-src 'self'", "frame-ancestors 'none'", "require-trusted-types-for 'script'"]) {
        check(csp.includes(part), `CSP has ${part}: ${csp}`);
      }
      check(!csp.includes('unsafe'), 'no unsafe-* source');
      eq(r.headers.get('x-frame-options'), 'DENY', 'x-frame-options');
    });

    await step('a wrong key is refused with the API\'s error', async () => {
      await signIn(page, 'not-the-admin-key');
      const err = page.locator('#signin-result [role=alert]');
      await err.waitFor();
      const text = await err.textContent();
      check(text.includes('401') && text.includes('unauthorized'), `error names 401 unauthorized: ${text}`);
      eq(await page.evaluate(() => sessionStorage.length), 0, 'nothing stored after a failed sign-in');
      await shot(page, '01-sign-in-error');
    });

    await step('sign in with the admin key, kept in sessionStorage only', async () => {
      await page.fill('#credential', ADMIN_KEY);
      await page.click('#signin button[type=submit]');
      await page.locator('h1', { hasText: 'Tokens' }).waitFor();
      const stored = await page.evaluate(() => Object.values(sessionStorage));
      eq(stored, [ADMIN_KEY], 'sessionStorage holds the key');
      eq(await page.evaluate(() => localStorage.length + document.cookie.length), 0, 'no localStorage, no cookie');
      check(!page.url().includes(ADMIN_KEY), 'the key is not in the URL');
      check(await page.locator('#mint-button').isVisible(), 'the admin sees the mint button');
      await shot(page, '02-tokens-empty');
    });

    await step('the scope builder speaks the API\'s grammar and error messages', async () => {
      const cases = ['mcp:*', 'mcp:tools/list', 'mcp:tools/call:search_*', 'mcp:resources/read:file:///a:b',
        'tokens:read', 'tokens:write', 'tokens:admin', 'mcp:', 'mcp:tools/list:x', 'mcp:tools/call:',
        'mcp:tools list', 'mcp:tools\tlist', 'mcp:a"b', 'MCP:*', 'mcp:é', `mcp:${'a'.repeat(253)}`,
        `mcp:${'a'.repeat(252)}`, 'mcp:tools/call:a\u0007', 'mcp:prompts/get:*'];
      const fromPage = await page.evaluate(async (list) => {
        const m = await import('./app.js');
        return list.map((s) => m.scopeError(s));
      }, cases);
      for (const [i, s] of cases.entries()) {
        const r = await api('POST', '/api/v1/mcptokens', { tenant: 'grammar', name: `case-${i}`, scopes: [s] });
        if (fromPage[i] === null) {
          eq(r.status, 201, `API accepts ${JSON.stringify(s)} as the page does`);
        } else {
          eq([r.status, r.json.error.code, r.json.error.message], [400, 'invalid_scopes', fromPage[i]],
            `API refuses ${JSON.stringify(s)} with the page's message`);
        }
      }
    });

    await step('mint: form, scope builder, token shown once with client configurations', async () => {
      await page.click('#mint-button');
      await page.locator('#mint').waitFor();
      await allLabelled(page, 'mint form');
      await page.fill('#mint-tenant', 'acme');
      await page.fill('#mint-name', 'laptop-alice');
      await page.selectOption('#mint-expiry', '7d');
      // Replace mcp:* with two narrow scopes.
      await page.click('button[aria-label="Remove scope mcp:*"]');
      await page.selectOption('#scope-kind', 'custom');
      await page.fill('#scope-custom', 'mcp:tools/list:x');
      const problem = await page.locator('#scope-error').textContent();
      eq(problem, 'invalid scope "mcp:tools/list:x": a name part is allowed only after tools/call, prompts/get or resources/read', 'builder error');
      check(await page.locator('#scope-add').isDisabled(), 'an invalid scope cannot be added');
      await page.selectOption('#scope-kind', 'method');
      await page.fill('#scope-method', 'tools/list');
      await page.click('#scope-add');
      await page.selectOption('#scope-kind', 'named');
      await page.selectOption('#scope-named-method', 'tools/call');
      await page.fill('#scope-name', 'whoami');
      eq(await page.locator('#scope-preview').textContent(), 'mcp:tools/call:whoami', 'preview');
      await page.click('#scope-add');
      eq(await page.locator('#scope-list code').allTextContents(), ['mcp:tools/list', 'mcp:tools/call:whoami'], 'scopes');
      await shot(page, '03-mint-form');
      await page.click('#mint-submit');
      await page.locator('#shown-once').waitFor();
      token = (await page.locator('#new-token').textContent()).trim();
      check(/^mcpctl_pat_[0-9A-Za-z]{49}$/.test(token), `a token is shown: ${token.slice(0, 15)}…`);
      await page.click('#copy-token');
      eq(await page.evaluate(() => navigator.clipboard.readText()), token, 'the copy button puts the token on the clipboard');
      const claude = JSON.parse(await page.locator('#config-claude').textContent());
      eq(claude.mcpServers['acme-via-gateway'].args, ['mcp-remote', GATEWAY_MCP, '--header', `Authorization: Bearer ${token}`], 'Claude Desktop config');
      const cursor = JSON.parse(await page.locator('#config-cursor').textContent());
      eq(cursor.mcpServers['acme-via-gateway'], { url: GATEWAY_MCP, headers: { Authorization: `Bearer ${token}` } }, 'Cursor config');
      const vscode = JSON.parse(await page.locator('#config-vscode').textContent());
      eq(vscode.servers['acme-via-gateway'], { type: 'http', url: GATEWAY_MCP, headers: { Authorization: `Bearer ${token}` } }, 'VS Code config');
      const curl = await page.locator('#config-curl').textContent();
      check(curl.startsWith(`curl -s '${GATEWAY_MCP}'`) && curl.includes(`'Authorization: Bearer ${token}'`), 'curl command');
      await page.click('#copy-vscode');
      eq(JSON.parse(await page.evaluate(() => navigator.clipboard.readText())), vscode, 'copy VS Code config');
      eq(await page.evaluate(() => Object.values(sessionStorage)), [ADMIN_KEY], 'the token is not stored');
      await shot(page, '04-shown-once');
    });

    await step('the minted token works at the gateway, within the scopes picked', async () => {
      eq(await gateway(token, initialize), 200, 'initialize through the gateway');
      eq(await gateway(token, toolCall('list_findings')), 403, 'a tool outside the scopes');
      check(await gateway(token, toolCall('whoami')) !== 403, 'the tool the scopes name passes the filter');
    });

    await step('done: the token leaves the page; the detail shows use, expiry warning, audit', async () => {
      await page.click('#done');
      await page.locator('dl.detail').waitFor();
      const html = await page.content();
      check(!html.includes(token), 'the raw token is gone from the DOM');
      eq(await page.evaluate(() => Object.values(sessionStorage)), [ADMIN_KEY], 'the token is not stored');
      tokenId = page.url().split('#/token/')[1];
      check(/^tok_[0-9A-Z]{26}$/.test(tokenId), `detail of ${tokenId}`);
      const expiry = page.locator('#expiry');
      check((await expiry.getAttribute('class')) === 'warn', 'a 7-day token is flagged as expiring soon');
      check((await expiry.textContent()).includes('renew soon'), 'the warning says what to do');
      const lastUsed = await page.evaluate(() => Array.from(document.querySelectorAll('dl.detail dt'))
        .find((dt) => dt.textContent === 'Last used').nextElementSibling.textContent);
      check(/^\d{4}-\d\d-\d\d \d\d:\d\d UTC$/.test(lastUsed), `last used is a time: ${lastUsed}`);
      await page.locator('#events td', { hasText: 'created' }).first().waitFor();
      await shot(page, '05-token-detail');
    });

    await step('list: filters and paging', async () => {
      await page.goto(`${CONSOLE_URL}#/tokens?status=active`);
      await page.locator('table.tokens').waitFor();
      await allLabelled(page, 'token list');
      await page.fill('#filter-tenant', 'acme');
      await page.click('form.filters button[type=submit]');
      await page.waitForFunction(() => location.hash.includes('tenant=acme'));
      await page.locator('table.tokens .token-name', { hasText: 'laptop-alice' }).waitFor();
      eq(await page.locator('table.tokens .token-name').allTextContents(), ['laptop-alice'], 'acme, active');
      check(await page.locator('table.tokens .warn').isVisible(), 'the list flags the close expiry');
      await shot(page, '06-token-list');
      // The grammar step minted 8 tokens: pages of 3, newest first, no overlap.
      const all = (await api('GET', '/api/v1/mcptokens?tenant=grammar&limit=500')).json.tokens.map((t) => t.name);
      eq(all.length, 8, 'grammar tokens');
      await page.goto(`${CONSOLE_URL}#/tokens?tenant=grammar&limit=3`);
      const names = () => page.locator('table.tokens .token-name').allTextContents();
      await page.locator('.pager span', { hasText: 'page 1' }).waitFor();
      eq(await names(), all.slice(0, 3), 'page 1');
      await page.click('#next-page');
      await page.locator('.pager span', { hasText: 'page 2' }).waitFor();
      eq(await names(), all.slice(3, 6), 'page 2');
      await page.click('#next-page');
      await page.locator('.pager span', { hasText: 'page 3' }).waitFor();
      eq(await names(), all.slice(6), 'page 3');
      check(await page.locator('#next-page').isDisabled(), 'no page after the last');
      await page.click('text=← Newer');
      await page.locator('.pager span', { hasText: 'page 2' }).waitFor();
      eq(await names(), all.slice(3, 6), 'back to page 2');
      // Long scopes (a 256-byte one among them) wrap instead of widening the page.
      await page.goto(`${CONSOLE_URL}#/tokens?tenant=grammar`);
      await page.locator('table.tokens code', { hasText: 'aaaa' }).waitFor();
      await fitsWidth(page, 'token list at 1280 px');
      await page.goto(`${CONSOLE_URL}#/audit`);
      await page.locator('table.events').waitFor();
      await fitsWidth(page, 'audit log at 1280 px');
    });

    await step('revoke with a reason: status updates, the gateway refuses it within one poll period', async () => {
      await page.goto(`${CONSOLE_URL}#/token/${tokenId}`);
      await page.locator('#revoke').click();
      await page.locator('#revoke-dialog').waitFor();
      await allLabelled(page, 'revoke dialog');
      await shot(page, '07-revoke-confirm');
      await page.fill('#revoke-reason', 'laptop lost');
      const revoked = page.waitForResponse((r) => r.url().endsWith(`/api/v1/mcptokens/${tokenId}/revoke`));
      await page.click('#revoke-dialog-confirm');
      const resp = await revoked;
      const at = Date.now();
      eq(resp.status(), 200, 'revoke answered');
      // Every gateway worker polls the feed once per period, so a request sent one period
      // (plus slack) after the revoke must be refused, whichever worker takes it; before
      // that, a worker that has not polled yet may still accept it.
      const bound = POLL_MS + REVOKE_SLACK_MS;
      let firstRefused = null;
      let refusedPastBound = 0;
      while (refusedPastBound < 10) {
        const sent = Date.now() - at;
        check(sent < bound + 10000, 'too slow to probe past the bound');
        const status = await gateway(token, initialize);
        if (status === 200) {
          check(sent < bound, `accepted ${sent} ms after the revoke (poll period ${POLL_MS} ms)`);
        } else {
          eq(status, 401, 'a revoked token is refused with 401');
          if (firstRefused === null) firstRefused = sent;
          if (sent >= bound) refusedPastBound += 1;
        }
        await new Promise((r) => setTimeout(r, 20));
      }
      console.log(`     revoked token first refused ${firstRefused} ms after the revoke, always from ${bound} ms on`);
      await page.locator('dd .badge.revoked').waitFor();
      check(!(await page.locator('#revoke').count()), 'a revoked token offers no revoke');
      await page.locator('#events td', { hasText: 'reason: laptop lost' }).waitFor();
      await shot(page, '08-token-revoked');
    });

    await step('a hostile name stays text everywhere', async () => {
      await page.goto(`${CONSOLE_URL}#/mint`);
      await page.fill('#mint-tenant', 'acme');
      await page.fill('#mint-name', XSS_NAME);
      await page.click('#mint-submit');
      await page.locator('#shown-once').waitFor();
      eq(await page.locator('#once-title').textContent(), `Token ${XSS_NAME} minted`, 'title text');
      await page.click('#done');
      await page.locator('dl.detail').waitFor();
      eq(await page.locator('h1').textContent(), `Token ${XSS_NAME}`, 'detail title');
      await page.goto(`${CONSOLE_URL}#/tokens?tenant=acme`);
      await page.locator('table.tokens').waitFor();
      check((await page.locator('table.tokens .token-name').allTextContents()).includes(XSS_NAME), 'the name is listed as text');
      eq(await page.locator('main img, dialog img').count(), 0, 'no <img> element was made');
      await page.goto(`${CONSOLE_URL}#/audit?tenant=acme`);
      await page.locator('table.events').waitFor();
      eq(await page.locator('main img').count(), 0, 'no <img> in the audit log');
      await page.waitForTimeout(200);
      eq(alerts, [], 'no script ran');
      await shot(page, '09-hostile-name');
    });

    await step('delete asks first; cancel keeps the token, confirm removes it', async () => {
      const list = (await api('GET', '/api/v1/mcptokens?tenant=acme')).json.tokens;
      const victim = list.find((t) => t.name === XSS_NAME);
      await page.goto(`${CONSOLE_URL}#/token/${victim.id}`);
      await page.locator('#delete').click();
      await page.keyboard.press('Escape');
      await page.locator('#delete-dialog').waitFor({ state: 'detached' });
      eq((await api('GET', `/api/v1/mcptokens/${victim.id}`)).status, 200, 'Escape cancels');
      await page.locator('#delete').click();
      await page.click('#delete-dialog-confirm');
      await page.locator('h1', { hasText: 'Tokens' }).waitFor();
      eq((await api('GET', `/api/v1/mcptokens/${victim.id}`)).status, 404, 'deleted');
    });

    await step('a tokens:read sign-in sees no mint, revoke or delete', async () => {
      const reader = await api('POST', '/api/v1/mcptokens', { tenant: 'acme', name: 'auditor', scopes: ['tokens:read'] });
      eq(reader.status, 201, 'reader minted');
      const readerPage = watch(await context.newPage());
      await signIn(readerPage, reader.json.token);
      await readerPage.locator('table.tokens').waitFor();
      eq(await readerPage.locator('#mint-button').count(), 0, 'no mint button');
      check(await readerPage.locator('#nav-mint').isHidden(), 'no mint link');
      check((await readerPage.locator('#who').textContent()).includes('read only'), 'says read only');
      check(await readerPage.locator('#filter-tenant').evaluate((el) => el.readOnly), 'its tenant is fixed');
      await readerPage.goto(`${CONSOLE_URL}#/token/${tokenId}`);
      await readerPage.locator('dl.detail').waitFor();
      eq(await readerPage.locator('#revoke, #delete').count(), 0, 'no revoke or delete');
      await readerPage.goto(`${CONSOLE_URL}#/mint`);
      await readerPage.locator('table.tokens').waitFor();
      await shot(readerPage, '10-read-only');
      await readerPage.click('#signout');
      await readerPage.locator('#credential').waitFor();
      eq(await readerPage.evaluate(() => sessionStorage.length), 0, 'sign-out clears the credential');
      await readerPage.close();
    });

    await step('phone width: every page fits 390 px', async () => {
      const phone = watch(await context.newPage());
      await phone.setViewportSize({ width: 390, height: 844 });
      await signIn(phone, ADMIN_KEY);
      await phone.locator('table.tokens').waitFor();
      for (const [hash, ready, name] of [
        ['#/tokens?status=revoked', 'table.tokens', '11-phone-tokens'],
        [`#/token/${tokenId}`, 'dl.detail', '12-phone-detail'],
        ['#/mint', '#mint', '13-phone-mint'],
        ['#/audit', 'table.events', '14-phone-audit'],
      ]) {
        await phone.goto(CONSOLE_URL + hash);
        await phone.locator(ready).waitFor();
        await phone.waitForTimeout(50);
        await fitsWidth(phone, hash);
        await shot(phone, name);
      }
      await phone.close();
    });

    await step('no script errors on any page', async () => {
      eq(pageErrors, [], 'page errors');
    });
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
}

try {
  await main();
} catch {
  // The failing step has printed its error.
}
console.log(`screenshots in ${SCREENSHOTS}`);
console.log(`${passed} passed, ${failed} failed (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
process.exit(failed === 0 && passed > 0 ? 0 : 1);
