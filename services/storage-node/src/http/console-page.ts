import { createHash } from 'node:crypto';
import { CONSOLE_SCRIPT } from './console/script';
import { CONSOLE_CSS } from './console/styles';

/**
 * The web console every node serves at `/`: one self-contained page (inline CSS and script,
 * nothing loaded from elsewhere, so it works on a machine without internet) with two views,
 * `#files` (upload, list, copies, delete) and `#cluster` (members, durability, repair, live).
 *
 * The page holds no secret. When the cluster wants an API key the page asks the person for one
 * and keeps it in the tab's sessionStorage. The only server value in the markup is the node id,
 * escaped; everything else arrives as JSON and is put into the DOM as text.
 *
 * A Content-Security-Policy in the page allows exactly this script and this style sheet (by
 * hash) and requests to this node only, so a file name that slipped past escaping still could
 * not run code or send data elsewhere.
 */
export function consoleHtml(nodeId: string): string {
  const node = escapeHtml(nodeId);
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="${CSP}">
<meta name="referrer" content="no-referrer">
<title>Shoal (${node})</title>
<link rel="icon" href="data:,">
<style>${CONSOLE_CSS}</style>
</head>
<body data-node="${node}">
<a class="skip" href="#main">Skip to content</a>
<header class="top">
  <a class="brand" href="#files">${LOGO}<span>Shoal</span></a>
  <nav aria-label="Console sections">
    <ul>
      <li><a id="nav-files" href="#files">Files</a></li>
      <li><a id="nav-cluster" href="#cluster">Cluster</a></li>
    </ul>
  </nav>
  <div class="served">
    <span>Served by <strong>${node}</strong></span>
    <button type="button" id="key-button">Set API key</button>
  </div>
</header>

<main id="main">
  <section id="view-files" aria-labelledby="files-heading">
    <h1 id="files-heading" tabindex="-1">Files</h1>

    <section class="panel" aria-labelledby="upload-heading">
      <div class="panel-head">
        <h2 id="upload-heading">Upload</h2>
        <span class="spacer"></span>
        <button type="button" id="clear-uploads" hidden>Clear finished</button>
      </div>
      <div id="dropzone" class="drop">
        ${UPLOAD_ICON}
        <p><strong>Drop files anywhere on this page</strong> <span class="muted">or</span></p>
        <button type="button" class="primary" id="choose-files">Choose files…</button>
        <input type="file" id="picker" name="file" multiple hidden aria-label="Files to upload">
      </div>
      <ul id="uploads" class="uploads" aria-label="Uploads"></ul>
    </section>

    <section class="panel" aria-labelledby="list-heading">
      <div class="panel-head">
        <h2 id="list-heading">Stored files</h2>
        <span class="spacer"></span>
        <label for="page-size" class="muted">Per page</label>
        <select id="page-size">
          <option>10</option><option selected>25</option><option>50</option><option>100</option>
        </select>
        <button type="button" id="refresh-files">Refresh</button>
      </div>
      <p id="files-error" class="alert" role="alert" hidden></p>
      <div class="table-wrap">
        <table id="files-table" aria-labelledby="list-heading">
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col" class="num">Size</th>
              <th scope="col">Uploaded</th>
              <th scope="col">Copies on</th>
              <th scope="col"><span class="visually-hidden">Actions</span></th>
            </tr>
          </thead>
          <tbody id="files-body"></tbody>
        </table>
      </div>
      <nav class="pager" aria-label="File list pages">
        <button type="button" id="prev-page" disabled>Previous</button>
        <span id="page-label" class="muted">Page 1</span>
        <button type="button" id="next-page" disabled>Next</button>
      </nav>
    </section>
  </section>

  <section id="view-cluster" aria-labelledby="cluster-heading" hidden>
    <h1 id="cluster-heading" tabindex="-1">Cluster</h1>
    <p id="cluster-error" class="alert" role="alert" hidden></p>
    <div id="cluster-view">
      <div class="cards">
        <div class="card" role="group" id="card-nodes" aria-label="Nodes alive"><div class="label">Nodes alive</div><div class="value">—</div><div class="sub"></div></div>
        <div class="card" role="group" id="card-under" aria-label="Under-replicated files"><div class="label">Under-replicated files</div><div class="value">—</div><div class="sub"></div>
          <svg id="spark" class="spark" viewBox="0 0 100 40" preserveAspectRatio="none" role="img" aria-label="Under-replicated files over time">
            <line x1="0" y1="38" x2="100" y2="38"></line><polyline id="spark-line" points=""></polyline>
          </svg>
        </div>
        <div class="card" role="group" id="card-pending" aria-label="Repair pending"><div class="label">Repair pending</div><div class="value">—</div><div class="sub"></div></div>
        <div class="card" role="group" id="card-policy" aria-label="Replication"><div class="label">Replication</div><div class="value">—</div><div class="sub"></div></div>
      </div>
      <section class="panel" aria-labelledby="nodes-heading">
        <div class="panel-head">
          <h2 id="nodes-heading">Nodes</h2>
          <span class="spacer"></span>
          <span id="cluster-updated" class="muted"></span>
        </div>
        <div class="table-wrap">
          <table aria-labelledby="nodes-heading">
            <thead>
              <tr>
                <th scope="col">Node</th>
                <th scope="col">State</th>
                <th scope="col" class="num">Files</th>
                <th scope="col" class="num">Stored</th>
                <th scope="col">Disk</th>
                <th scope="col" class="num">Repair received</th>
                <th scope="col" class="num">Copies made</th>
                <th scope="col" class="num">Surplus dropped</th>
              </tr>
            </thead>
            <tbody id="nodes-body"></tbody>
          </table>
        </div>
      </section>
    </div>
    <p id="cluster-announce" class="visually-hidden" role="status" aria-live="polite"></p>
  </section>
  <noscript><p class="alert">The console needs JavaScript. The HTTP API works without it (docs/openapi.yaml).</p></noscript>
</main>

<dialog id="key-dialog" aria-labelledby="key-title" aria-describedby="key-reason">
  <form method="dialog">
    <h2 id="key-title">API key</h2>
    <p id="key-reason"></p>
    <label for="key-input">Key</label>
    <input id="key-input" type="password" autocomplete="off" spellcheck="false" required>
    <p class="muted">Kept in this browser tab only and sent to this node as a Bearer token.</p>
    <div class="buttons">
      <button type="submit" value="forget" id="key-forget" class="left" formnovalidate>Forget key</button>
      <button type="submit" value="cancel" formnovalidate>Cancel</button>
      <button type="submit" value="save" class="primary">Save</button>
    </div>
  </form>
</dialog>

<dialog id="confirm-dialog" aria-labelledby="confirm-title" aria-describedby="confirm-text">
  <form method="dialog">
    <h2 id="confirm-title">Delete this file?</h2>
    <p id="confirm-text"><strong id="confirm-name"></strong> will be removed from every node. This cannot be undone.</p>
    <div class="buttons">
      <button type="submit" value="cancel" autofocus>Cancel</button>
      <button type="submit" value="delete" class="danger primary">Delete</button>
    </div>
  </form>
</dialog>

<div id="toast" class="toast" role="status" aria-live="polite"></div>
<script>${CONSOLE_SCRIPT}</script>
</body>
</html>`;
}

/** Text made safe for HTML element content and quoted attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ESCAPES[c] ?? c);
}

const ESCAPES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

function cspHash(source: string): string {
  return `'sha256-${createHash('sha256').update(source, 'utf8').digest('base64')}'`;
}

// The script and style never change at run time, so their hashes are computed once.
const CSP_DIRECTIVES = [
  "default-src 'none'",
  `script-src ${cspHash(CONSOLE_SCRIPT)}`,
  `style-src ${cspHash(CONSOLE_CSS)}`,
  "connect-src 'self'",
  "img-src 'self' data:",
  "base-uri 'none'",
  "form-action 'self'",
];
const CSP = CSP_DIRECTIVES.join('; ');

/**
 * The same policy as a response header, where `frame-ancestors` counts (a meta tag's is ignored):
 * no other site may frame the console and trick a click on "Delete".
 */
export const CONSOLE_CSP_HEADER = [...CSP_DIRECTIVES, "frame-ancestors 'none'"].join('; ');

const LOGO = `<svg width="26" height="26" viewBox="0 0 24 24" aria-hidden="true" focusable="false" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round"><path d="M3 8c2-2 4-2 6 0s4 2 6 0 4-2 6 0"/><path d="M3 13c2-2 4-2 6 0s4 2 6 0 4-2 6 0"/><path d="M3 18c2-2 4-2 6 0s4 2 6 0 4-2 6 0"/></svg>`;

const UPLOAD_ICON = `<svg width="34" height="34" viewBox="0 0 24 24" aria-hidden="true" focusable="false" fill="none" stroke="currentColor" stroke-width="1.8" stroke-linecap="round" stroke-linejoin="round"><path d="M12 16V4"/><path d="m7 9 5-5 5 5"/><path d="M4 16v3a1 1 0 0 0 1 1h14a1 1 0 0 0 1-1v-3"/></svg>`;
