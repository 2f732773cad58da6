import { chromium, type Browser, type Page } from 'playwright-core';
import { executable } from './requirements';

/**
 * Headless Chromium for end-to-end tests: Debian's `chromium` package driven by playwright-core
 * (no browser download at install time). Without it the end-to-end suite skips itself with a line
 * saying so, or fails under SHOAL_SYSTEM_TESTS=required; `.ci/run` installs the package.
 */

export const CHROMIUM_PATH = process.env.SHOAL_CHROMIUM ?? '/usr/bin/chromium';

export const CHROMIUM_INSTALLED = executable(
  CHROMIUM_PATH,
  'Chromium',
  'apt-get install chromium, or SHOAL_CHROMIUM=<path of a Chromium>',
);

/** Flags for a container without a GPU, a sandbox or the internet. */
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export async function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    args: CHROMIUM_ARGS,
    headless: true,
    timeout: 60_000,
  });
}

/**
 * Collects what would show up as red in the browser's console: uncaught exceptions and console
 * errors (a Content-Security-Policy violation is one). Resource loads the test provokes on purpose,
 * such as a 401 before the API key is given, are left out by `ignore`.
 */
export function watchPageErrors(page: Page, ignore: RegExp[] = []): string[] {
  const errors: string[] = [];
  page.on('pageerror', (err) => errors.push(`uncaught: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    const text = msg.text();
    if (!ignore.some((re) => re.test(text))) errors.push(`console: ${text}`);
  });
  return errors;
}
