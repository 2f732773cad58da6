/**
 * The console's browser code, inline in the page and hashed into its Content-Security-Policy.
 * Plain ES2020 for any current browser, no build step, no dependency.
 *
 * Rules it keeps: every value from the server reaches the DOM through textContent or a property,
 * never as HTML; the API key the user types stays in this tab's sessionStorage and travels only as
 * `Authorization: Bearer` to the node that served the page. It contains no backtick and no
 * dollar-brace, so it can live in a template literal untouched.
 */
export const CONSOLE_SCRIPT = String.raw`
'use strict';
(() => {
  const KEY_STORE = 'shoal-api-key';
  const CLUSTER_EVERY_MS = 2000;
  const HISTORY_POINTS = 90;
  const UPLOADS_AT_ONCE = 2;
  const $ = (id) => document.getElementById(id);

  const state = {
    key: sessionStorage.getItem(KEY_STORE) || '',
    pageSize: 25,
    cursors: [''],
    next: null,
    clusterTimer: 0,
    clusterBusy: false,
    nodeStates: new Map(),
    history: [],
    replicas: null,
    afterKey: null,
    keyDeclined: false,
    filesSeq: 0,
  };

  // ---------------------------------------------------------------------------------------
  // Small helpers

  function el(tag, props, children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(props || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name === 'text') node.textContent = String(value);
      else if (name === 'class') node.className = value;
      else if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
      else if (name.startsWith('aria-') || name.startsWith('data-') || name === 'role' || name === 'scope' || name === 'colspan') node.setAttribute(name, String(value));
      else node[name] = value;
    }
    for (const child of [].concat(children || [])) {
      if (child === null || child === undefined || child === false) continue;
      node.append(typeof child === 'string' ? document.createTextNode(child) : child);
    }
    return node;
  }

  const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  function formatBytes(n) {
    if (typeof n !== 'number' || !isFinite(n) || n < 0) return '\u2014';
    let value = n;
    let unit = 0;
    while (value >= 1024 && unit < UNITS.length - 1) { value /= 1024; unit++; }
    return unit === 0 ? value + ' B' : value.toFixed(value < 10 ? 1 : 0) + ' ' + UNITS[unit];
  }
  const count = (n) => (typeof n === 'number' && isFinite(n) ? n.toLocaleString() : '\u2014');
  const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
  function formatDate(iso) {
    const d = new Date(iso);
    return isNaN(d.getTime()) ? String(iso) : dateFormat.format(d);
  }
  function unknown() {
    return el('span', {}, [el('span', { 'aria-hidden': 'true', text: '\u2014' }), el('span', { class: 'visually-hidden', text: 'unknown' })]);
  }
  function badge(value) {
    return el('span', { class: 'badge ' + String(value).replace(/[^a-z]/g, ''), text: value });
  }

  let toastTimer = 0;
  function toast(message, isError) {
    const box = $('toast');
    box.textContent = message;
    box.classList.toggle('error', Boolean(isError));
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { box.textContent = ''; }, isError ? 8000 : 4000);
  }

  // ---------------------------------------------------------------------------------------
  // The API, with the key the user gave us

  class ApiError extends Error {
    constructor(status, code, message) { super(message); this.status = status; this.code = code; }
  }
  function authHeaders() { return state.key ? { Authorization: 'Bearer ' + state.key } : {}; }

  function errorFromBody(status, text) {
    let code = 'http_' + status;
    let message = 'the node answered ' + status;
    try {
      const body = JSON.parse(text);
      if (body && body.error) { code = String(body.error.code); message = String(body.error.message); }
    } catch (_) { /* not JSON: keep the status */ }
    if (status === 401 && !state.keyDeclined) askForKey(state.key ? 'The API key was not accepted. Enter another one.' : 'This cluster needs an API key.');
    return new ApiError(status, code, message);
  }

  async function api(path, init) {
    const options = init || {};
    let res;
    try {
      res = await fetch(path, Object.assign({}, options, {
        cache: 'no-store',
        headers: Object.assign({ Accept: 'application/json' }, authHeaders(), options.headers || {}),
      }));
    } catch (err) {
      throw new ApiError(0, 'network', 'the node could not be reached');
    }
    if (!res.ok) throw errorFromBody(res.status, await res.text());
    return res;
  }

  // ---------------------------------------------------------------------------------------
  // API key dialog: opened by the header button or by any 401

  function updateKeyButton() {
    $('key-button').textContent = state.key ? 'API key: set' : 'Set API key';
  }
  function askForKey(reason, then) {
    const dialog = $('key-dialog');
    if (then) state.afterKey = then;
    if (dialog.open) return;
    $('key-reason').textContent = reason || 'Requests from this tab will carry the key as a Bearer token.';
    $('key-input').value = '';
    $('key-forget').hidden = !state.key;
    dialog.showModal();
  }
  $('key-button').addEventListener('click', () => askForKey(''));
  $('key-dialog').addEventListener('close', () => {
    const choice = $('key-dialog').returnValue;
    const then = state.afterKey;
    state.afterKey = null;
    if (choice === 'save') {
      state.key = $('key-input').value.trim();
      sessionStorage.setItem(KEY_STORE, state.key);
    } else if (choice === 'forget') {
      state.key = '';
      sessionStorage.removeItem(KEY_STORE);
    } else {
      // Cancelled: stop asking on every refresh; the header button still opens the dialog.
      state.keyDeclined = true;
      return;
    }
    state.keyDeclined = false;
    $('key-input').value = '';
    updateKeyButton();
    toast(state.key ? 'API key saved for this tab' : 'API key forgotten');
    if (then) then();
    else showView();
  });

  // ---------------------------------------------------------------------------------------
  // Views: #files and #cluster

  function currentView() { return location.hash === '#cluster' ? 'cluster' : 'files'; }
  function showView(moveFocus) {
    const view = currentView();
    for (const name of ['files', 'cluster']) {
      $('view-' + name).hidden = name !== view;
      const link = $('nav-' + name);
      if (name === view) link.setAttribute('aria-current', 'page');
      else link.removeAttribute('aria-current');
    }
    document.title = (view === 'cluster' ? 'Cluster' : 'Files') + ' \u00b7 Shoal (' + document.body.dataset.node + ')';
    clearInterval(state.clusterTimer);
    if (view === 'cluster') {
      loadCluster();
      state.clusterTimer = setInterval(() => { if (!document.hidden) loadCluster(); }, CLUSTER_EVERY_MS);
    } else {
      loadFiles();
    }
    if (moveFocus) $(view + '-heading').focus();
  }
  window.addEventListener('hashchange', () => showView(true));

  // ---------------------------------------------------------------------------------------
  // File list, one page at a time (GET /files?limit&after)

  async function loadFiles() {
    const after = state.cursors[state.cursors.length - 1];
    const path = '/files?limit=' + state.pageSize + (after ? '&after=' + encodeURIComponent(after) : '');
    // Uploads finishing close together each ask for the list: only the newest answer is drawn.
    const seq = ++state.filesSeq;
    $('files-table').setAttribute('aria-busy', 'true');
    try {
      const page = await (await api(path)).json();
      if (seq !== state.filesSeq) return;
      if (page.files.length === 0 && state.cursors.length > 1) {
        // The last file of a later page was deleted: step back.
        state.cursors.pop();
        return loadFiles();
      }
      state.next = page.next;
      renderFiles(page.files);
      $('files-error').hidden = true;
    } catch (err) {
      if (seq !== state.filesSeq) return;
      $('files-error').textContent = 'Could not list files: ' + err.message;
      $('files-error').hidden = false;
    } finally {
      $('files-table').setAttribute('aria-busy', 'false');
    }
  }

  function renderFiles(files) {
    const body = $('files-body');
    body.replaceChildren();
    if (files.length === 0) {
      body.append(el('tr', {}, el('td', { colspan: 5, class: 'empty', text: 'No files yet. Drop some above or choose them with the button.' })));
    }
    files.forEach((file, i) => body.append(fileRow(file, i)));
    const pageNo = state.cursors.length;
    $('page-label').textContent = 'Page ' + pageNo;
    $('prev-page').disabled = pageNo === 1;
    $('next-page').disabled = !state.next;
  }

  function fileRow(file, index) {
    const detailId = 'detail-' + index;
    const link = el('a', {
      href: '/files/' + encodeURIComponent(file.id),
      download: file.name,
      class: 'file-name',
      text: file.name || '(no name)',
      onclick: (event) => {
        if (!state.key) return; // a plain link does it when the cluster has no keys
        event.preventDefault();
        downloadWithKey(file);
      },
    });
    const details = el('button', {
      type: 'button', class: 'link', text: 'Copies',
      'aria-expanded': 'false', 'aria-controls': detailId,
      'aria-label': 'Copies of ' + file.name,
    });
    details.addEventListener('click', () => toggleDetails(details, file, detailId));
    const remove = el('button', {
      type: 'button', class: 'danger', text: 'Delete', 'aria-label': 'Delete ' + file.name,
      onclick: () => confirmDelete(file),
    });
    const replicas = Array.isArray(file.replicas) ? file.replicas : [];
    return el('tr', { 'data-id': file.id }, [
      el('td', {}, [link, el('span', { class: 'file-id mono', text: file.id })]),
      el('td', { class: 'num', title: count(file.size) + ' bytes', text: formatBytes(file.size) }),
      el('td', {}, el('time', { dateTime: file.createdAt, text: formatDate(file.createdAt) })),
      el('td', {}, [el('span', { text: replicas.length + ' \u00b7 ' }), el('span', { class: 'mono', text: replicas.join(', ') })]),
      el('td', {}, el('div', { class: 'actions' }, [details, remove])),
    ]);
  }

  $('prev-page').addEventListener('click', () => { if (state.cursors.length > 1) { state.cursors.pop(); loadFiles(); } });
  $('next-page').addEventListener('click', () => { if (state.next) { state.cursors.push(state.next); loadFiles(); } });
  $('page-size').addEventListener('change', (event) => {
    state.pageSize = Number(event.target.value) || 25;
    state.cursors = [''];
    loadFiles();
  });
  $('refresh-files').addEventListener('click', () => loadFiles());

  // ---------------------------------------------------------------------------------------
  // Where the copies of a file are (GET /files/<id>/info)

  async function toggleDetails(button, file, detailId) {
    const row = button.closest('tr');
    const open = $(detailId);
    if (open) {
      open.remove();
      button.setAttribute('aria-expanded', 'false');
      return;
    }
    const cell = el('td', { colspan: 5 }, el('p', { class: 'muted', text: 'Asking every node\u2026' }));
    const detail = el('tr', { id: detailId, class: 'detail' }, cell);
    row.after(detail);
    button.setAttribute('aria-expanded', 'true');
    try {
      const info = await (await api('/files/' + encodeURIComponent(file.id) + '/info')).json();
      cell.replaceChildren(renderInfo(info));
    } catch (err) {
      cell.replaceChildren(el('p', { class: 'alert', role: 'alert', text: 'Could not get the copies: ' + err.message }));
    }
  }

  function renderInfo(info) {
    const copies = Array.isArray(info.replicas) ? info.replicas : [];
    const ok = copies.filter((c) => c.state === 'ok').length;
    const facts = el('dl', { class: 'facts' }, [
      el('dt', { text: 'Id' }), el('dd', { class: 'mono', text: info.id }),
      el('dt', { text: 'SHA-256' }), el('dd', { class: 'mono', text: info.sha256 }),
      el('dt', { text: 'Type' }), el('dd', { text: info.contentType }),
      el('dt', { text: 'Size' }), el('dd', { text: count(info.size) + ' bytes' }),
      el('dt', { text: 'Uploaded' }), el('dd', {}, el('time', { dateTime: info.createdAt, text: formatDate(info.createdAt) })),
    ]);
    const rows = copies.map((c) => el('tr', {}, [
      el('td', { class: 'mono', text: c.nodeId }),
      el('td', { class: 'mono', text: c.url }),
      el('td', {}, badge(c.state)),
    ]));
    const table = el('table', {}, [
      el('caption', { class: 'visually-hidden', text: 'Copies of ' + info.name }),
      el('thead', {}, el('tr', {}, [
        el('th', { scope: 'col', text: 'Node' }), el('th', { scope: 'col', text: 'URL' }), el('th', { scope: 'col', text: 'State' }),
      ])),
      el('tbody', {}, rows),
    ]);
    return el('div', { class: 'detail-grid' }, [
      el('div', {}, [el('h3', { text: 'File' }), facts]),
      el('div', {}, [el('h3', { text: ok + ' of ' + copies.length + ' copies healthy' }), table]),
    ]);
  }

  // ---------------------------------------------------------------------------------------
  // Download. Without keys a plain link does it. With keys a link cannot carry the header, so ask
  // the node for a signed link; a node without them gets a fetch into memory instead.

  async function downloadWithKey(file) {
    const base = '/files/' + encodeURIComponent(file.id);
    try {
      const res = await api(base + '/links', {
        method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ expiresInSeconds: 300 }),
      });
      const link = await res.json();
      if (link && typeof link.path === 'string' && link.path.startsWith('/files/')) return saveFrom(link.path, file.name);
    } catch (err) {
      if (err.status === 401) return;
      if (!(err.status === 404 && /route/.test(err.message))) { toast('Download failed: ' + err.message, true); return; }
    }
    try {
      const blob = await (await api(base)).blob();
      const url = URL.createObjectURL(blob);
      saveFrom(url, file.name);
      setTimeout(() => URL.revokeObjectURL(url), 60000);
    } catch (err) {
      if (err.status !== 401) toast('Download failed: ' + err.message, true);
    }
  }
  function saveFrom(href, name) {
    const a = el('a', { href: href, download: name, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
  }

  // ---------------------------------------------------------------------------------------
  // Delete, after a confirmation

  function confirmDelete(file) {
    const dialog = $('confirm-dialog');
    $('confirm-name').textContent = file.name;
    dialog.returnValue = '';
    dialog.addEventListener('close', async () => {
      if (dialog.returnValue !== 'delete') return;
      try {
        await api('/files/' + encodeURIComponent(file.id), { method: 'DELETE' });
        toast('Deleted ' + file.name);
      } catch (err) {
        toast('Could not delete ' + file.name + ': ' + err.message, true);
      }
      loadFiles();
    }, { once: true });
    dialog.showModal();
  }

  // ---------------------------------------------------------------------------------------
  // Upload: drag and drop or the picker; XMLHttpRequest, because fetch reports no upload progress

  const queue = [];
  let active = 0;

  function enqueue(fileList) {
    // Newest batch on top, each batch in the order it was chosen.
    const batch = Array.from(fileList).map(uploadItem);
    $('uploads').prepend(...batch.map((item) => item.li));
    queue.push(...batch);
    pump();
  }
  function pump() {
    while (active < UPLOADS_AT_ONCE && queue.length > 0) {
      const item = queue.shift();
      active++;
      send(item).then(() => { active--; pump(); });
    }
  }

  function uploadItem(file) {
    const progress = el('progress', { max: 100, value: 0, 'aria-label': 'Upload of ' + file.name });
    const status = el('div', { class: 'upload-status', text: 'Waiting\u2026' });
    const cancel = el('button', { type: 'button', text: 'Cancel', 'aria-label': 'Cancel upload of ' + file.name });
    const li = el('li', { class: 'upload' }, [
      el('div', { class: 'upload-head' }, [
        el('span', { class: 'upload-name', text: file.name }),
        el('span', { class: 'muted', text: formatBytes(file.size) }),
        cancel,
      ]),
      progress,
      status,
    ]);
    const item = { file, li, progress, status, cancel, xhr: null, cancelled: false };
    cancel.addEventListener('click', () => {
      item.cancelled = true;
      if (item.xhr) item.xhr.abort();
      else { queue.splice(queue.indexOf(item), 1); finish(item, 'failed', 'Cancelled'); }
    });
    return item;
  }

  function finish(item, outcome, message) {
    item.li.classList.add(outcome);
    item.status.textContent = message;
    item.cancel.remove();
    $('clear-uploads').hidden = false;
  }

  function send(item) {
    return new Promise((resolve) => {
      if (item.cancelled) return resolve();
      const xhr = new XMLHttpRequest();
      item.xhr = xhr;
      const started = performance.now();
      xhr.open('POST', '/files');
      for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value);
      xhr.setRequestHeader('Accept', 'application/json');
      item.status.textContent = 'Starting\u2026';
      xhr.upload.addEventListener('progress', (event) => {
        if (!event.lengthComputable) return;
        const pct = Math.min(100, Math.round((event.loaded / event.total) * 100));
        const seconds = (performance.now() - started) / 1000;
        const rate = seconds > 0.2 ? ' \u00b7 ' + formatBytes(event.loaded / seconds) + '/s' : '';
        item.progress.value = pct;
        item.status.textContent = pct + '% \u00b7 ' + formatBytes(event.loaded) + ' of ' + formatBytes(event.total) + rate;
      });
      xhr.upload.addEventListener('load', () => {
        item.progress.value = 100;
        item.status.textContent = 'Sent; waiting until the copies are durable\u2026';
      });
      xhr.addEventListener('load', () => {
        if (xhr.status === 201) {
          let stored = {};
          try { stored = JSON.parse(xhr.responseText); } catch (_) { /* keep going */ }
          const on = Array.isArray(stored.replicas) ? stored.replicas.join(', ') : '';
          item.progress.value = 100;
          finish(item, 'done', 'Stored' + (on ? ' on ' + on : ''));
          toast('Uploaded ' + item.file.name);
          loadFiles();
        } else {
          const err = errorFromBody(xhr.status, xhr.responseText);
          finish(item, 'failed', 'Failed: ' + err.message + ' (' + xhr.status + ')');
          toast('Upload of ' + item.file.name + ' failed: ' + err.message, true);
        }
        resolve();
      });
      xhr.addEventListener('error', () => {
        finish(item, 'failed', 'Failed: the node could not be reached');
        resolve();
      });
      xhr.addEventListener('abort', () => {
        finish(item, 'failed', 'Cancelled');
        resolve();
      });
      const form = new FormData();
      form.append('file', item.file, item.file.name);
      xhr.send(form);
    });
  }

  const zone = $('dropzone');
  const picker = $('picker');
  $('choose-files').addEventListener('click', () => picker.click());
  picker.addEventListener('change', () => {
    if (picker.files && picker.files.length > 0) enqueue(picker.files);
    picker.value = '';
  });
  // Dropping anywhere on the files view uploads; elsewhere the browser must not navigate away.
  let dragDepth = 0;
  const carriesFiles = (event) => event.dataTransfer && Array.from(event.dataTransfer.types).includes('Files');
  window.addEventListener('dragenter', (event) => {
    if (!carriesFiles(event) || currentView() !== 'files') return;
    dragDepth++;
    zone.classList.add('over');
  });
  window.addEventListener('dragleave', () => {
    dragDepth = Math.max(0, dragDepth - 1);
    if (dragDepth === 0) zone.classList.remove('over');
  });
  window.addEventListener('dragover', (event) => {
    if (!carriesFiles(event)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = currentView() === 'files' ? 'copy' : 'none';
  });
  window.addEventListener('drop', (event) => {
    if (!carriesFiles(event)) return;
    event.preventDefault();
    dragDepth = 0;
    zone.classList.remove('over');
    if (currentView() === 'files' && event.dataTransfer.files.length > 0) enqueue(event.dataTransfer.files);
  });
  $('clear-uploads').addEventListener('click', () => {
    for (const li of Array.from($('uploads').querySelectorAll('li.done, li.failed'))) li.remove();
    $('clear-uploads').hidden = true;
  });

  // ---------------------------------------------------------------------------------------
  // Cluster (GET /cluster every 2 s while the view is open)

  async function loadCluster() {
    if (state.clusterBusy) return;
    state.clusterBusy = true;
    try {
      const cluster = await (await api('/cluster')).json();
      renderCluster(cluster);
      $('cluster-error').hidden = true;
      $('cluster-view').classList.remove('stale');
      $('cluster-updated').textContent = 'Updated ' + new Date().toLocaleTimeString() + ', every 2 s';
    } catch (err) {
      $('cluster-error').textContent = 'Could not refresh: ' + err.message + '. Showing the last answer.';
      $('cluster-error').hidden = false;
      $('cluster-view').classList.add('stale');
    } finally {
      state.clusterBusy = false;
    }
  }

  function card(id, value, sub, tone) {
    const box = $(id);
    box.className = 'card' + (tone ? ' ' + tone : '');
    box.querySelector('.value').textContent = value;
    box.querySelector('.sub').textContent = sub;
  }

  function renderCluster(c) {
    const nodes = (Array.isArray(c.nodes) ? c.nodes : []).slice().sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    const tally = { alive: 0, suspect: 0, dead: 0 };
    for (const n of nodes) if (n.state in tally) tally[n.state]++;
    const under = typeof c.underReplicatedFiles === 'number' ? c.underReplicatedFiles : null;
    const pending = typeof c.pendingRepairBytes === 'number' ? c.pendingRepairBytes : null;

    const full = nodes.filter((n) => n.full === true).length;
    card('card-nodes', tally.alive + ' / ' + nodes.length,
      'alive \u00b7 ' + tally.suspect + ' suspect \u00b7 ' + tally.dead + ' dead' + (full ? ' \u00b7 ' + full + ' disk full' : ''),
      tally.dead > 0 ? 'bad' : tally.suspect > 0 || full > 0 ? 'warn' : 'good');
    // With fewer live nodes than N, "every file has N copies" cannot hold whatever the count says.
    const short = tally.alive < c.replicas;
    const underSub = under ? 'files short of copies, being repaired'
      : short ? 'only ' + tally.alive + ' nodes alive for ' + c.replicas + ' copies'
      : 'no file is short of copies';
    card('card-under', under === null ? '\u2014' : count(under), underSub,
      under === null ? '' : under > 0 || short ? 'warn' : 'good');
    card('card-pending', pending === null ? '\u2014' : formatBytes(pending), pending ? 'still to copy' : 'nothing to copy', pending ? 'warn' : 'good');
    card('card-policy', 'N ' + c.replicas + ' \u00b7 W ' + c.writeQuorum, 'copies kept \u00b7 copies before 201', '');

    state.history.push(under || 0);
    if (state.history.length > HISTORY_POINTS) state.history.shift();
    drawSpark();

    const body = $('nodes-body');
    body.replaceChildren(...nodes.map((n) => nodeRow(n, c.self)));

    const changes = [];
    for (const n of nodes) {
      const before = state.nodeStates.get(n.id);
      if (before !== undefined && before !== n.state) changes.push(n.id + ' is now ' + n.state);
      state.nodeStates.set(n.id, n.state);
    }
    if (changes.length > 0) $('cluster-announce').textContent = changes.join('. ') + '.';
  }

  function nodeRow(n, self) {
    const has = typeof n.files === 'number';
    const name = el('td', {}, [
      el('span', { class: 'mono', text: n.id }),
      n.id === self ? el('span', { class: 'tag', text: 'this node' }) : null,
      el('span', { class: 'node-url mono', text: n.url }),
    ]);
    let disk = unknown();
    if (typeof n.diskFreeBytes === 'number') {
      const parts = [el('span', { text: formatBytes(n.diskFreeBytes) + ' free' })];
      if (typeof n.diskTotalBytes === 'number' && n.diskTotalBytes > 0) {
        const used = Math.max(0, Math.min(100, 100 - (n.diskFreeBytes / n.diskTotalBytes) * 100));
        const fill = el('span');
        fill.style.width = used.toFixed(1) + '%';
        parts.push(el('span', { class: 'muted', text: ' of ' + formatBytes(n.diskTotalBytes) }));
        parts.push(el('div', { class: 'bar', role: 'img', 'aria-label': used.toFixed(0) + '% used' }, fill));
      }
      disk = el('div', { class: 'disk' }, parts);
    }
    if (n.full === true) {
      disk = el('div', {}, [disk, el('span', { class: 'badge dead', text: 'full: takes no new copies' })]);
    }
    const figure = (value, format) => el('td', { class: 'num' }, has ? format(value) : unknown());
    return el('tr', { 'data-node': n.id }, [
      name,
      el('td', {}, badge(n.state)),
      figure(n.files, count),
      figure(n.bytes, formatBytes),
      el('td', {}, disk),
      figure(n.repairBytesReceived, formatBytes),
      figure(n.copiesMade, count),
      figure(n.surplusDropped, count),
    ]);
  }

  function drawSpark() {
    const svg = $('spark');
    const points = state.history;
    const max = Math.max(1, ...points);
    const step = 100 / Math.max(1, HISTORY_POINTS - 1);
    const offset = (HISTORY_POINTS - points.length) * step;
    const coords = points.map((v, i) => (offset + i * step).toFixed(2) + ',' + (38 - (v / max) * 34).toFixed(2)).join(' ');
    $('spark-line').setAttribute('points', coords);
    svg.setAttribute('aria-label', 'Under-replicated files over the last ' + Math.round((points.length * CLUSTER_EVERY_MS) / 1000) + ' seconds; highest ' + Math.max(0, ...points));
  }

  // ---------------------------------------------------------------------------------------

  updateKeyButton();
  showView(false);
})();
`;
