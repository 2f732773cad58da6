/**
 * The console's style sheet. Inline in the page (the machine running a node may have no internet,
 * and the page must be one response), and hashed into the page's Content-Security-Policy.
 * Colours keep WCAG AA contrast in both schemes; state is always shown as text too, never by
 * colour alone.
 */
export const CONSOLE_CSS = String.raw`
:root {
  color-scheme: light dark;
  --bg: #f6f7f9; --panel: #ffffff; --text: #1b1f24; --muted: #57606a; --line: #d8dee4;
  --accent: #0b6e79; --accent-text: #ffffff; --accent-soft: #e0f2f3; --focus: #0969da;
  --ok: #1a7f37; --ok-soft: #dafbe1; --warn: #8a5a00; --warn-soft: #fff1c2;
  --bad: #b3261e; --bad-soft: #ffe2df; --track: #e6e9ed;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", sans-serif;
  font-size: 15px; line-height: 1.45;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #0f1419; --panel: #171d24; --text: #e6edf3; --muted: #9aa7b4; --line: #2e3843;
    --accent: #3fb6c2; --accent-text: #06262a; --accent-soft: #113a3f; --focus: #58a6ff;
    --ok: #4ac26b; --ok-soft: #12311c; --warn: #e3b341; --warn-soft: #3a2d0b;
    --bad: #ff7b72; --bad-soft: #3d1614; --track: #2a333d;
  }
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--text); }
a { color: var(--accent); }
:focus-visible { outline: 3px solid var(--focus); outline-offset: 2px; }
.visually-hidden {
  position: absolute !important; width: 1px; height: 1px; padding: 0; margin: -1px;
  overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; border: 0;
}
.skip { position: absolute; left: -999px; top: 0; background: var(--panel); padding: .5rem 1rem; z-index: 10; }
.skip:focus { left: 1rem; }

header.top {
  display: flex; flex-wrap: wrap; align-items: center; gap: .5rem 1.5rem;
  padding: .6rem 1.5rem; background: var(--panel); border-bottom: 1px solid var(--line);
}
.brand { display: flex; align-items: center; gap: .5rem; font-weight: 700; font-size: 1.15rem; color: var(--text); text-decoration: none; }
.brand svg { color: var(--accent); }
header nav ul { display: flex; gap: .25rem; list-style: none; margin: 0; padding: 0; }
header nav a {
  display: block; padding: .35rem .8rem; border-radius: 6px; color: var(--text); text-decoration: none; font-weight: 500;
}
header nav a:hover { background: var(--accent-soft); }
header nav a[aria-current="page"] { background: var(--accent); color: var(--accent-text); }
.served { margin-left: auto; display: flex; align-items: center; gap: .75rem; color: var(--muted); font-size: .9rem; }
.served strong { color: var(--text); font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-weight: 600; }

main { max-width: 1180px; margin: 0 auto; padding: 1.25rem 1.5rem 3rem; }
h1 { font-size: 1.5rem; margin: .25rem 0 1rem; }
h1:focus { outline: none; }
h2 { font-size: 1.1rem; margin: 0; }
.panel { background: var(--panel); border: 1px solid var(--line); border-radius: 10px; padding: 1rem 1.25rem; margin-bottom: 1.25rem; }
.panel-head { display: flex; flex-wrap: wrap; align-items: center; gap: .5rem 1rem; margin-bottom: .75rem; }
.panel-head .spacer { flex: 1; }
.muted { color: var(--muted); }
.mono { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: .85em; overflow-wrap: anywhere; }

button, .button {
  font: inherit; font-size: .9rem; font-weight: 500; cursor: pointer; border-radius: 6px;
  border: 1px solid var(--line); background: var(--panel); color: var(--text); padding: .35rem .8rem;
}
button:hover { border-color: var(--muted); }
button.primary { background: var(--accent); border-color: var(--accent); color: var(--accent-text); }
button.danger { color: var(--bad); }
button.danger.primary { background: var(--bad); border-color: var(--bad); color: #fff; }
button.link { border: none; background: none; padding: .1rem .2rem; color: var(--accent); text-decoration: underline; }
button:disabled { opacity: .5; cursor: default; }
select { font: inherit; font-size: .9rem; padding: .25rem; border-radius: 6px; border: 1px solid var(--line); background: var(--panel); color: var(--text); }

.drop {
  border: 2px dashed var(--line); border-radius: 10px; padding: 1.6rem 1rem; text-align: center;
  background: var(--bg); transition: border-color .15s, background .15s;
}
.drop.over { border-color: var(--accent); background: var(--accent-soft); }
.drop p { margin: 0 0 .6rem; }
.drop svg { color: var(--accent); display: block; margin: 0 auto .5rem; }

.uploads { list-style: none; margin: .75rem 0 0; padding: 0; display: grid; gap: .5rem; }
.uploads:empty { display: none; }
.upload { border: 1px solid var(--line); border-radius: 8px; padding: .55rem .75rem; }
.upload-head { display: flex; gap: .75rem; align-items: baseline; }
.upload-name { font-weight: 600; overflow-wrap: anywhere; flex: 1; }
.upload-status { font-size: .85rem; color: var(--muted); margin-top: .2rem; }
.upload.done .upload-status { color: var(--ok); }
.upload.failed .upload-status { color: var(--bad); }
progress { width: 100%; height: .55rem; margin-top: .35rem; appearance: none; -webkit-appearance: none; border: none; border-radius: 99px; background: var(--track); overflow: hidden; display: block; }
progress::-webkit-progress-bar { background: var(--track); border-radius: 99px; }
progress::-webkit-progress-value { background: var(--accent); border-radius: 99px; transition: width .2s; }
progress::-moz-progress-bar { background: var(--accent); border-radius: 99px; }
.upload.done progress::-webkit-progress-value { background: var(--ok); }
.upload.done progress::-moz-progress-bar { background: var(--ok); }
.upload.failed progress::-webkit-progress-value { background: var(--bad); }
.upload.failed progress::-moz-progress-bar { background: var(--bad); }

.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .5rem .6rem; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-size: .8rem; font-weight: 600; color: var(--muted); text-transform: uppercase; letter-spacing: .03em; white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tbody tr:hover td { background: color-mix(in srgb, var(--accent-soft) 45%, transparent); }
tr.detail > td { background: var(--bg); }
tr.detail:hover td { background: var(--bg); }
.file-name { font-weight: 600; overflow-wrap: anywhere; }
.file-id { display: block; color: var(--muted); }
.actions { display: flex; gap: .4rem; justify-content: flex-end; white-space: nowrap; }
.empty { text-align: center; color: var(--muted); padding: 1.5rem; }
.pager { display: flex; align-items: center; gap: .6rem; justify-content: flex-end; margin-top: .75rem; }

.detail-grid { display: grid; grid-template-columns: minmax(14rem, 1fr) 2fr; gap: 1rem 2rem; }
@media (max-width: 760px) { .detail-grid { grid-template-columns: 1fr; } }
dl.facts { display: grid; grid-template-columns: auto 1fr; gap: .25rem .8rem; margin: 0; font-size: .9rem; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; }
.detail h3 { font-size: .95rem; margin: 0 0 .4rem; }
.detail table th, .detail table td { padding: .3rem .5rem; }

.badge {
  display: inline-flex; align-items: center; gap: .35rem; font-size: .8rem; font-weight: 600;
  padding: .1rem .55rem; border-radius: 99px; white-space: nowrap;
}
.badge::before { content: ""; width: .5rem; height: .5rem; border-radius: 50%; background: currentColor; }
.badge.alive, .badge.ok { color: var(--ok); background: var(--ok-soft); }
.badge.suspect, .badge.missing { color: var(--warn); background: var(--warn-soft); }
.badge.dead, .badge.unreachable { color: var(--bad); background: var(--bad-soft); }
.tag { font-size: .75rem; border: 1px solid var(--line); border-radius: 4px; padding: 0 .35rem; color: var(--muted); margin-left: .35rem; }

.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(12.5rem, 1fr)); gap: 1rem; margin-bottom: 1.25rem; }
.card { background: var(--panel); border: 1px solid var(--line); border-radius: 10px; padding: .85rem 1rem; border-top: 4px solid var(--line); }
.card.good { border-top-color: var(--ok); }
.card.warn { border-top-color: var(--warn); }
.card.bad { border-top-color: var(--bad); }
.card .label { font-size: .8rem; color: var(--muted); text-transform: uppercase; letter-spacing: .03em; font-weight: 600; }
.card .value { font-size: 1.7rem; font-weight: 700; font-variant-numeric: tabular-nums; line-height: 1.2; margin-top: .15rem; }
.card .sub { font-size: .85rem; color: var(--muted); }
.spark { width: 100%; height: 2.6rem; display: block; margin-top: .35rem; }
.spark polyline { fill: none; stroke: var(--accent); stroke-width: 2; vector-effect: non-scaling-stroke; }
.spark line { stroke: var(--line); stroke-width: 1; vector-effect: non-scaling-stroke; }

.disk { min-width: 8rem; }
.disk .bar { height: .35rem; background: var(--track); border-radius: 99px; overflow: hidden; margin-top: .2rem; }
.disk .bar span { display: block; height: 100%; background: var(--accent); }
.node-url { display: block; color: var(--muted); }
.stale { opacity: .55; }
.alert { border: 1px solid var(--bad); background: var(--bad-soft); color: var(--text); border-radius: 8px; padding: .6rem .9rem; margin-bottom: 1rem; }

dialog { border: 1px solid var(--line); border-radius: 12px; padding: 1.25rem 1.5rem; max-width: min(30rem, 92vw); background: var(--panel); color: var(--text); }
dialog::backdrop { background: rgb(0 0 0 / .45); }
dialog h2 { margin-bottom: .5rem; }
dialog p { margin: .25rem 0 .9rem; }
dialog label { display: block; font-weight: 600; margin-bottom: .3rem; }
dialog input { width: 100%; font: inherit; padding: .45rem .6rem; border: 1px solid var(--line); border-radius: 6px; background: var(--bg); color: var(--text); }
dialog .buttons { display: flex; gap: .5rem; justify-content: flex-end; margin-top: 1rem; }
dialog .buttons .left { margin-right: auto; }

.toast {
  position: fixed; bottom: 1.25rem; left: 50%; transform: translateX(-50%); background: var(--text); color: var(--bg);
  padding: .55rem 1rem; border-radius: 8px; font-size: .9rem; max-width: 90vw; box-shadow: 0 4px 16px rgb(0 0 0 / .2);
}
.toast:empty { display: none; }
.toast.error { background: var(--bad); color: #fff; }
`;
