"""The stylesheet and script of the web pages, served from ``/_static/``.

They are served as files rather than inlined so the pages' Content-Security-
Policy can allow ``'self'`` and nothing inline.
"""

from __future__ import annotations

SITE_CSS = """\
:root {
  --fg: #1d2330; --muted: #5d6677; --line: #dde1e8; --bg: #f5f6f8; --panel: #fff;
  --accent: #2456c7; --warn-bg: #fff6db; --warn-line: #e8c55a; --err-bg: #fdecec; --err-line: #d9534f;
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
}
* { box-sizing: border-box; }
[hidden] { display: none !important; }
body { margin: 0; background: var(--bg); }
a { color: var(--accent); }
.card { max-width: 32rem; width: calc(100% - 2rem); margin: 12vh auto 0; padding: 2rem 2.25rem;
  background: var(--panel); border: 1px solid var(--line); border-radius: 10px; }
.card h1 { margin: 0 0 .75rem; font-size: 1.35rem; }
.card p { margin: .5rem 0; }
.card .muted { color: var(--muted); font-size: .9rem; }
button, .button { font: inherit; padding: .5rem 1.1rem; border-radius: 6px; border: 1px solid var(--accent);
  background: var(--accent); color: #fff; cursor: pointer; text-decoration: none; display: inline-block; }
button.secondary, .button.secondary { background: var(--panel); color: var(--accent); }
form.confirm { margin-top: 1.25rem; }

/* Preview */
.preview { display: flex; flex-direction: column; height: 100vh; }
.bar { display: flex; flex-wrap: wrap; gap: .5rem 1.25rem; align-items: center; padding: .6rem 1rem;
  background: var(--panel); border-bottom: 1px solid var(--line); }
.bar h1 { font-size: 1rem; margin: 0; white-space: nowrap; }
.bar h1 small { color: var(--muted); font-weight: normal; }
.bar form { display: flex; flex-wrap: wrap; gap: .5rem .9rem; align-items: center; margin: 0; }
.bar label { color: var(--muted); font-size: .85rem; display: flex; gap: .35rem; align-items: center; }
.bar select { font: inherit; font-size: .9rem; padding: .25rem .4rem; border: 1px solid var(--line);
  border-radius: 5px; background: #fff; color: var(--fg); max-width: 22rem; }
.views { display: inline-flex; border: 1px solid var(--line); border-radius: 6px; overflow: hidden; }
.views button { border: 0; border-radius: 0; background: #fff; color: var(--fg); padding: .25rem .75rem;
  font-size: .9rem; }
.views button + button { border-left: 1px solid var(--line); }
.views button[aria-pressed="true"] { background: var(--accent); color: #fff; }
.status { margin-left: auto; font-size: .8rem; color: var(--muted); white-space: nowrap; }
.status.down { color: var(--err-line); }
.meta { margin: 0; padding: .6rem 1rem; background: var(--panel); border-bottom: 1px solid var(--line);
  display: grid; grid-template-columns: max-content 1fr; gap: .15rem 1rem; font-size: .9rem; }
.meta dt { color: var(--muted); }
.meta dd { margin: 0; overflow-wrap: anywhere; }
.meta .subject { font-weight: 600; }
.notice { margin: .75rem 1rem 0; padding: .6rem .9rem; border-radius: 6px; border: 1px solid var(--line);
  background: var(--panel); }
.notice.warn { background: var(--warn-bg); border-color: var(--warn-line); }
.notice.error { background: var(--err-bg); border-color: var(--err-line); font-weight: 600; }
.notice.error code { display: block; margin-top: .3rem; font-weight: normal; white-space: pre-wrap; }
.notice ul { margin: .25rem 0 0; padding-left: 1.2rem; }

/* Sign-up and preferences */
.card.wide { max-width: 36rem; margin-top: 8vh; }
.card .notice { margin: .75rem 0; }
.notice.ok { background: #e9f7ee; border-color: #5cb27a; }
form.signup { display: flex; flex-direction: column; gap: .35rem; margin-top: 1rem; }
form.signup > label { font-weight: 600; margin-top: .5rem; }
form.signup input[type=email], form.signup input[type=text] { font: inherit; padding: .45rem .6rem;
  border: 1px solid var(--line); border-radius: 6px; }
form.signup button { align-self: flex-start; margin-top: 1rem; }
fieldset.themes { border: 1px solid var(--line); border-radius: 6px; margin: .75rem 0 0; padding: .5rem .9rem; }
fieldset.themes legend { font-weight: 600; padding: 0 .3rem; }
label.check, form.signup > label.check { display: flex; gap: .5rem; align-items: flex-start; font-weight: normal;
  margin: .3rem 0; }
label.check input { margin-top: .25rem; }
label.consent { margin-top: 1rem; }
form.confirm button + button { margin-left: .5rem; }
/* The honeypot: out of sight, out of the tab order; robots fill it in anyway. */
.hp { position: absolute; left: -10000px; width: 1px; height: 1px; overflow: hidden; }
.stage { flex: 1; min-height: 0; padding: 1rem; display: flex; }
.stage iframe { flex: 1; width: 100%; border: 1px solid var(--line); border-radius: 6px; background: #fff; }
.stage.text iframe, .stage.source iframe { background: #fcfcfd; }

/* Dashboard: inline SVG charts coloured by class (the CSP allows no inline style) */
.dash main { max-width: 68rem; margin: 0 auto; padding: 1rem; }
.dash .bar nav { margin-left: auto; font-size: .9rem; }
.bar .dashlink { font-size: .9rem; white-space: nowrap; }
.panel { background: var(--panel); border: 1px solid var(--line); border-radius: 8px; padding: .9rem 1.2rem 1rem;
  margin: 0 0 1rem; }
.panel h2 { font-size: 1.05rem; margin: 0 0 .5rem; }
.panel h3 { font-size: .9rem; margin: .25rem 0 .4rem; }
.panel h2 small, .panel h3 small { color: var(--muted); font-weight: normal; font-size: .85rem; margin-left: .35rem; }
.panel .empty, .panel .caption { color: var(--muted); font-size: .88rem; margin: .2rem 0 .5rem; }
.panel .caption strong { color: var(--fg); }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 1.5rem; }
.legend { list-style: none; display: flex; flex-wrap: wrap; gap: .3rem 1rem; margin: 0 0 .5rem; padding: 0;
  font-size: .8rem; color: var(--muted); }
.legend li { display: flex; align-items: center; gap: .35rem; }
.sw { display: inline-block; width: .8rem; height: .8rem; border-radius: 2px; }
svg.chart { display: block; height: auto; overflow: visible; }
svg.chart text { font: 13px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; fill: var(--fg); }
svg.chart text.tick { font-size: 11px; fill: var(--muted); }
svg.chart text.note { font-size: 12px; fill: var(--muted); }
svg.chart text.note.warn, svg.chart text.st-word-partly-failed { fill: #b3261e; font-weight: 600; }
svg.chart .axis { stroke: #9aa3b2; stroke-width: 1; }
svg.chart .grid { stroke: var(--line); stroke-width: 1; stroke-dasharray: 3 3; }
svg.chart .col { fill: var(--accent); }
svg.chart .source.alert .name { fill: #b3261e; font-weight: 600; }
.st-sent { fill: #2e7d4f; background: #2e7d4f; }
.st-pending { fill: #9aa5b8; background: #9aa5b8; }
.st-claimed { fill: #4f7fe0; background: #4f7fe0; }
.st-failed-temporary { fill: #d8912a; background: #d8912a; }
.st-failed-permanent { fill: #c0392b; background: #c0392b; }
.st-unknown { fill: #8a56b0; background: #8a56b0; }
.st-skipped { fill: #cdd3dd; background: #cdd3dd; }
.st-none { fill: var(--line); }
.fs-ok, .fs-ok rect { fill: #2e7d4f; background: #2e7d4f; }
.fs-not_modified, .fs-not_modified rect { fill: #6d9c86; background: #6d9c86; }
.fs-failed, .fs-failed rect { fill: #c0392b; background: #c0392b; }
.fs-broken, .fs-broken rect { fill: #6e1a14; background: #6e1a14; }
svg.chart .mark text { fill: #fff; font-size: 12px; font-weight: 600; }
svg.chart rect.mark.none { fill: none; stroke: var(--line); stroke-dasharray: 3 2; }
svg.chart .bar { fill: var(--accent); }
svg.chart .bar.status-active { fill: #2e7d4f; }
svg.chart .bar.status-unsubscribed { fill: #9aa5b8; }
svg.chart .bar.status-bounced, svg.chart .bar.status-complained { fill: #c0392b; }
svg.chart .bar.status-pending { fill: #d8912a; }
@media (max-width: 700px) { .pair { grid-template-columns: 1fr; } }
"""

PREVIEW_JS = """\
"use strict";
(function () {
  var body = document.body;
  var shown = body.getAttribute("data-fingerprint");
  var form = document.getElementById("switcher");
  var frame = document.getElementById("mail");
  var status = document.getElementById("status");
  var scrollKey = "digest-preview-scroll:" + location.search;

  // Switching a select shows the new choice at once; the button is for no-JS use.
  if (form) {
    form.querySelectorAll("select").forEach(function (el) {
      el.addEventListener("change", function () { form.submit(); });
    });
    var go = form.querySelector(".go");
    if (go) { go.hidden = true; }
  }

  // Keep the reader's place in the message across automatic reloads.
  if (frame) {
    frame.addEventListener("load", function () {
      var y = sessionStorage.getItem(scrollKey);
      if (y === null) { return; }
      sessionStorage.removeItem(scrollKey);
      try { frame.contentWindow.scrollTo(0, Number(y)); } catch (e) { /* cross-origin */ }
    });
  }

  function reload() {
    if (frame) {
      try {
        sessionStorage.setItem(scrollKey, String(frame.contentWindow.scrollY));
      } catch (e) { /* cross-origin */ }
    }
    location.reload();
  }

  function setStatus(text, down) {
    if (!status) { return; }
    status.textContent = text;
    status.classList.toggle("down", down);
  }

  function poll() {
    fetch("/_fingerprint", { cache: "no-store" }).then(function (r) {
      if (!r.ok) { throw new Error(String(r.status)); }
      return r.text();
    }).then(function (now) {
      if (now.trim() !== shown) { setStatus("Reloading\\u2026", false); reload(); return; }
      setStatus("Live: reloads on changes", false);
      setTimeout(poll, 1000);
    }).catch(function () {
      setStatus("Server unreachable, retrying\\u2026", true);
      setTimeout(poll, 1000);
    });
  }
  setTimeout(poll, 1000);
})();
"""
