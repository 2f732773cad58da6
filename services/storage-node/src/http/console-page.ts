/**
 * A minimal, dependency-free console: the cluster view and the file list, with an upload form.
 * Everything is same-origin; nothing is loaded from elsewhere.
 */
export function consoleHtml(nodeId: string): string {
  const safeId = nodeId.replace(/[^A-Za-z0-9._-]/g, '');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Shoal console (${safeId})</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 2rem; color: #1b1f24; }
  table { border-collapse: collapse; margin-bottom: 2rem; }
  th, td { text-align: left; padding: .3rem .8rem; border-bottom: 1px solid #ddd; }
  .alive { color: #1a7f37; } .suspect { color: #9a6700; } .dead { color: #cf222e; }
</style>
</head>
<body>
<main>
<h1>Shoal</h1>
<p>Answering: <strong>${safeId}</strong></p>
<section aria-labelledby="nodes-h"><h2 id="nodes-h">Nodes</h2>
<table><thead><tr><th scope="col">Node</th><th scope="col">URL</th><th scope="col">State</th></tr></thead><tbody id="nodes"></tbody></table>
</section>
<section aria-labelledby="upload-h"><h2 id="upload-h">Upload</h2>
<form id="upload"><label for="file">File</label> <input id="file" name="file" type="file" required> <button type="submit">Upload</button> <output id="upload-status"></output></form>
</section>
<section aria-labelledby="files-h"><h2 id="files-h">Files</h2>
<table><thead><tr><th scope="col">Name</th><th scope="col">Size</th><th scope="col">Created</th><th scope="col">Copies</th></tr></thead><tbody id="files"></tbody></table>
</section>
</main>
<script>
const key = sessionStorage.getItem('shoal-key');
const headers = key ? { authorization: 'Bearer ' + key } : {};
async function api(path, init) {
  const res = await fetch(path, { ...init, headers: { ...headers, ...(init && init.headers) } });
  if (res.status === 401) { const k = prompt('API key'); if (k) { sessionStorage.setItem('shoal-key', k); location.reload(); } }
  return res;
}
function cell(row, text) { const td = document.createElement('td'); td.textContent = text; row.appendChild(td); return td; }
async function refresh() {
  const cluster = await (await api('/cluster')).json();
  const nodes = document.getElementById('nodes'); nodes.replaceChildren();
  for (const n of cluster.nodes) { const tr = document.createElement('tr'); cell(tr, n.id); cell(tr, n.url); cell(tr, n.state).className = n.state; nodes.appendChild(tr); }
  const list = await (await api('/files?limit=100')).json();
  const files = document.getElementById('files'); files.replaceChildren();
  for (const f of list.files) {
    const tr = document.createElement('tr');
    const a = document.createElement('a'); a.href = '/files/' + f.id; a.textContent = f.name;
    const td = document.createElement('td'); td.appendChild(a); tr.appendChild(td);
    cell(tr, String(f.size)); cell(tr, f.createdAt); cell(tr, f.replicas.join(', ')); files.appendChild(tr);
  }
}
document.getElementById('upload').addEventListener('submit', async (e) => {
  e.preventDefault();
  const out = document.getElementById('upload-status');
  out.textContent = 'uploading...';
  const res = await api('/files', { method: 'POST', body: new FormData(e.target) });
  out.textContent = res.ok ? 'stored' : 'failed: ' + (await res.text());
  refresh();
});
refresh(); setInterval(refresh, 2000);
</script>
</body>
</html>`;
}
