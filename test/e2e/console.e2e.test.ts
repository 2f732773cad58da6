import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import type { Browser, Page } from 'playwright-core';
import { CHROMIUM_INSTALLED, launchChromium, watchPageErrors } from '../helpers/browser';
import { upload } from '../helpers/client';
import { TestCluster, resolveFromRoot } from '../helpers/cluster';
import { systemDescribe } from '../helpers/requirements';

/**
 * The web console in a real browser against a real 3-node cluster that wants an API key: the page
 * asks for the key, uploads through the picker and by drag and drop with a progress bar each,
 * lists, shows where the copies are, downloads the same bytes, deletes after a confirmation, and
 * its cluster page follows a node that is killed and comes back. Screenshots go to `.bench/` for
 * a person to look at.
 */

const KEY = 'console-e2e-' + randomBytes(6).toString('hex');
const SHOTS = resolveFromRoot('.bench');

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Runs `source` (browser JavaScript, kept as text: the project's TypeScript has no DOM types) in the page. */
async function inPage<T>(page: Page, source: string): Promise<T> {
  return (await page.evaluate(source)) as T;
}

const describeSystem = systemDescribe({ needs: [CHROMIUM_INSTALLED] });

describeSystem('web console in headless Chromium', () => {
  let browser: Browser;
  let cluster: TestCluster;
  let page: Page;
  let pageErrors: string[];
  const picked = { name: 'picked <img src=x onerror=alert(1)> & notes.txt', data: randomBytes(200_000) };
  const dropped = { name: 'dropped-photo.bin', data: randomBytes(3 * 1024 * 1024 + 17) };

  beforeAll(async () => {
    browser = await launchChromium();
    cluster = await TestCluster.start({ nodes: 3, apiKeys: [KEY] });
    const context = await browser.newContext({
      viewport: { width: 1280, height: 860 },
      acceptDownloads: true,
    });
    page = await context.newPage();
    // 401s before the key is given are the page's cue to ask for it; the browser logs them.
    pageErrors = watchPageErrors(page, [/status of 401/]);
    mkdirSync(SHOTS, { recursive: true });
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await cluster?.stopAll();
  });

  test('asks for the API key, then lists files', async () => {
    await page.goto(cluster.url(0) + '/');
    await expectVisible(page, '#key-dialog');
    expect(await page.textContent('#key-reason')).toMatch(/needs an API key/);
    await page.getByLabel('Key', { exact: true }).fill(KEY);
    await page.getByRole('button', { name: 'Save' }).click();
    await page.waitForSelector('#key-dialog', { state: 'hidden' });
    await page.getByText('No files yet').waitFor();
    await eventually(() => page.textContent('#key-button')).toBe('API key: set');
  });

  test('uploads with the picker and by drag and drop, each with its own progress bar', async () => {
    await page.setInputFiles('#picker', {
      name: picked.name,
      mimeType: 'text/plain',
      buffer: picked.data,
    });
    // A drop as the browser delivers it: a DataTransfer holding a File, dropped on the page.
    const transfer = await page.evaluateHandle(
      `(() => {
        const dt = new DataTransfer();
        const bytes = Uint8Array.from(atob(${JSON.stringify(dropped.data.toString('base64'))}), (c) => c.charCodeAt(0));
        dt.items.add(new File([bytes], ${JSON.stringify(dropped.name)}, { type: 'application/octet-stream' }));
        return dt;
      })()`,
    );
    await page.dispatchEvent('#dropzone', 'dragenter', { dataTransfer: transfer });
    await eventually(() => page.getAttribute('#dropzone', 'class')).toContain('over');
    await page.dispatchEvent('#dropzone', 'drop', { dataTransfer: transfer });

    const items = page.locator('#uploads li');
    await expect2(async () => (await items.count()) === 2, 'two upload entries');
    for (const f of [picked, dropped]) {
      const item = items.filter({ hasText: f.name });
      await item.locator('.upload-status', { hasText: /^Stored on node-\d, node-\d, node-\d$/ }).waitFor();
      const bar = item.getByRole('progressbar', { name: 'Upload of ' + f.name });
      await eventually(() => bar.getAttribute('value')).toBe('100');
    }
  });

  test('lists the uploaded files with name, size and date, the name as text', async () => {
    const row = fileRow(page, picked.name);
    await row.waitFor();
    // The markup in the name is shown, not rendered.
    expect(await row.locator('a.file-name').textContent()).toBe(picked.name);
    expect(await row.locator('a.file-name img').count()).toBe(0);
    expect(await row.locator('td').nth(1).textContent()).toBe('195 KiB');
    expect(await row.locator('time').getAttribute('datetime')).toMatch(/^\d{4}-\d\d-\d\dT/);
    expect(await fileRow(page, dropped.name).locator('td').nth(1).textContent()).toBe('3.0 MiB');
    await page.screenshot({ path: `${SHOTS}/console.png`, fullPage: true });
  });

  test('downloads the same bytes (through a signed link, as the cluster wants a key)', async () => {
    for (const f of [picked, dropped]) {
      const [download] = await Promise.all([
        page.waitForEvent('download'),
        fileRow(page, f.name).locator('a.file-name').click(),
      ]);
      // The key cannot ride on a link: the page asked for a signed one.
      expect(download.url()).toMatch(
        /\/files\/[A-Za-z0-9_-]+\?expires=\d+&kid=[0-9a-f]{16}&sig=[0-9a-f]{64}$/,
      );
      if (f === dropped) expect(download.suggestedFilename()).toBe(f.name);
      const path = await download.path();
      expect(sha256(readFileSync(path))).toBe(sha256(f.data));
    }
  });

  test('shows where the copies of a file are and their state', async () => {
    const row = fileRow(page, dropped.name);
    const toggle = row.getByRole('button', { name: 'Copies of ' + dropped.name });
    await toggle.click();
    await eventually(() => toggle.getAttribute('aria-expanded')).toBe('true');
    const detail = page.locator('tr.detail');
    await detail.getByText('3 of 3 copies healthy').waitFor();
    await eventually(() => detail.locator('tbody .badge').allTextContents()).toEqual(['ok', 'ok', 'ok']);
    const id = await row.getAttribute('data-id');
    await eventually(() => detail.locator('dd.mono').first().textContent()).toBe(id);
    await toggle.click();
    await eventually(() => page.locator('tr.detail').count()).toBe(0);
    await eventually(() => toggle.getAttribute('aria-expanded')).toBe('false');
  });

  test('pages through a longer list', async () => {
    for (let i = 0; i < 10; i++) {
      const res = await upload(
        cluster.url(1),
        Buffer.from(`file ${i}`),
        `bulk-${i}.txt`,
        cluster.authHeaders(),
      );
      expect(res.status).toBe(201);
    }
    await page.selectOption('#page-size', '10');
    await expect2(async () => (await page.locator('#files-body tr').count()) === 10, 'a page of 10');
    await page.getByRole('button', { name: 'Next' }).click();
    await page.getByText('Page 2', { exact: true }).waitFor();
    await eventually(() => page.locator('#files-body tr[data-id]').count()).toBe(2);
    await eventually(() => page.getByRole('button', { name: 'Next' }).isDisabled()).toBe(true);
    await page.getByRole('button', { name: 'Previous' }).click();
    await page.getByText('Page 1', { exact: true }).waitFor();
    await page.selectOption('#page-size', '25');
    await expect2(async () => (await page.locator('#files-body tr[data-id]').count()) === 12, 'all 12 files');
  });

  test('deletes a file only after a confirmation', async () => {
    const row = fileRow(page, picked.name);
    const id = await row.getAttribute('data-id');
    await row.getByRole('button', { name: 'Delete ' + picked.name }).click();
    const dialog = page.getByRole('dialog', { name: 'Delete this file?' });
    await dialog.waitFor();
    // Cancel is the default and keeps the file.
    await dialog.getByRole('button', { name: 'Cancel' }).click();
    await dialog.waitFor({ state: 'hidden' });
    expect(await fileRow(page, picked.name).count()).toBe(1);

    await row.getByRole('button', { name: 'Delete ' + picked.name }).click();
    await dialog.waitFor();
    await eventually(() => dialog.textContent()).toContain(picked.name);
    await dialog.getByRole('button', { name: 'Delete' }).click();
    await fileRow(page, picked.name).waitFor({ state: 'detached' });
    const res = await fetch(`${cluster.url(2)}/files/${id}`, { headers: cluster.authHeaders() });
    expect(res.status).toBe(404);
  });

  test('the cluster page shows three alive nodes and refreshes by itself', async () => {
    await page.getByRole('link', { name: 'Cluster' }).click();
    // The page switches views on hashchange, after the click has returned.
    const link = page.getByRole('link', { name: 'Cluster' });
    await eventually(() => link.getAttribute('aria-current')).toBe('page');
    const rows = page.locator('#nodes-body tr');
    await expect2(async () => (await rows.count()) === 3, 'three node rows');
    await eventually(() => rows.locator('.badge').allTextContents()).toEqual(['alive', 'alive', 'alive']);
    await eventually(() => rows.locator('td:first-child .mono:not(.node-url)').allTextContents()).toEqual([
      'node-1',
      'node-2',
      'node-3',
    ]);
    await eventually(() => page.textContent('#card-nodes .value')).toBe('3 / 3');
    await eventually(() => page.textContent('#card-policy .value')).toBe('N 3 · W 2');
    // Files and bytes per node: the 11 live files, 3 copies each, spread over 3 nodes.
    await eventually(async () =>
      (await rows.locator('td:nth-child(3)').allTextContents()).map(Number),
    ).toEqual([11, 11, 11]);
    await expect2(
      async () => (await page.textContent('#card-under .value')) === '0',
      'no under-replicated files',
    );

    const first = await page.textContent('#cluster-updated');
    await expect2(
      async () => (await page.textContent('#cluster-updated')) !== first,
      'a live refresh',
      6_000,
    );
    await page.screenshot({ path: `${SHOTS}/console-cluster.png`, fullPage: true });
  });

  test('the cluster page follows a node that is killed and comes back', async () => {
    const rows = page.locator('#nodes-body tr');
    const node3 = rows.filter({ has: page.locator('td:first-child', { hasText: 'node-3' }) });
    await cluster.kill(2);
    await expect2(
      async () => (await node3.locator('.badge').textContent()) !== 'alive',
      'node-3 not alive',
      15_000,
    );
    await expect2(
      async () => (await node3.locator('.badge').textContent()) === 'dead',
      'node-3 dead',
      20_000,
    );
    await eventually(() => page.textContent('#card-nodes .value')).toBe('2 / 3');
    // A screen reader hears the change once, from the live region.
    await eventually(() => page.textContent('#cluster-announce')).toMatch(/node-3 is now (suspect|dead)/);
    await page.screenshot({ path: `${SHOTS}/console-cluster-dead.png`, fullPage: true });

    await cluster.restart(2);
    await expect2(
      async () => (await node3.locator('.badge').textContent()) === 'alive',
      'node-3 alive',
      20_000,
    );
    await eventually(() => page.textContent('#card-nodes .value')).toBe('3 / 3');
  }, 90_000);

  test('the page logged no errors and broke no Content-Security-Policy rule', async () => {
    const csp = await inPage<string>(
      page,
      `document.querySelector('meta[http-equiv="Content-Security-Policy"]').content`,
    );
    expect(csp).toContain("script-src 'sha256-");
    expect(pageErrors).toEqual([]);
  });
});

function fileRow(page: Page, name: string) {
  return page.locator('#files-body tr[data-id]').filter({
    has: page.locator('a.file-name', { hasText: name }),
  });
}

async function expectVisible(page: Page, selector: string): Promise<void> {
  await page.waitForSelector(selector, { state: 'visible', timeout: 10_000 });
}

/**
 * expect() for what the page sets after an action has returned (an event, a fetch): reads again
 * until the matcher passes and, if it never does, fails with the matcher's last Expected/Received.
 * playwright's expect.poll does this, but playwright-core has no expect.
 *
 *   await eventually(() => link.getAttribute('aria-current')).toBe('page');
 */
function eventually<T>(read: () => Promise<T>, timeoutMs = 10_000): jest.Matchers<Promise<void>, T> {
  type Matcher = (...expected: unknown[]) => void;
  return new Proxy({} as jest.Matchers<Promise<void>, T>, {
    get: (_, matcher) => {
      if (typeof matcher !== 'string' || matcher === 'then') return undefined;
      return async (...expected: unknown[]) => {
        const deadline = Date.now() + timeoutMs;
        for (;;) {
          try {
            (expect(await read()) as unknown as Record<string, Matcher>)[matcher]!(...expected);
            return;
          } catch (err) {
            if (Date.now() > deadline) throw err;
          }
          await new Promise((r) => setTimeout(r, 100));
        }
      };
    },
  });
}

/** Polls until `check` holds; the failure names what was awaited. */
async function expect2(check: () => Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
