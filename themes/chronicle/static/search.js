// Chronicle search: a progressive enhancement. Without JavaScript the site is whole;
// with it, a search box appears in the header and queries search.json in the browser.
// Load with: <script src="…/static/search.js" data-index="…/search.json" defer></script>
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || !window.fetch || !document.querySelector) return;
  var indexUrl = new URL(script.dataset.index || "../search.json", script.src).href;
  var records = null;

  function words(text) {
    return (text.toLowerCase().match(/[\p{L}\p{N}_]+(?:[-.'][\p{L}\p{N}_]+)*/gu) || []);
  }

  // Every query word must prefix-match a title, tag or index word; titles weigh most.
  function score(record, terms) {
    var title = words(record.title), tags = words(record.tags.join(" ")), total = 0;
    for (var i = 0; i < terms.length; i++) {
      var t = terms[i], best = 0;
      var hit = function (w) { return w.indexOf(t) === 0; };
      if (title.some(hit)) best = 3;
      else if (tags.some(hit)) best = 2;
      else if (record.words.some(hit)) best = 1;
      if (!best) return 0;
      total += best;
    }
    return total;
  }

  function search(query) {
    var terms = words(query);
    if (!terms.length || !records) return [];
    return records
      .map(function (r) { return { r: r, s: score(r, terms) }; })
      .filter(function (x) { return x.s > 0; })
      .sort(function (a, b) {
        return b.s - a.s || String(b.r.date || "").localeCompare(String(a.r.date || ""));
      })
      .slice(0, 20)
      .map(function (x) { return x.r; });
  }

  function show(list, found, query) {
    list.textContent = "";
    if (!query.trim()) { list.hidden = true; return; }
    list.hidden = false;
    if (!found.length) {
      var none = document.createElement("li");
      none.textContent = records ? "No posts match." : "Loading…";
      list.appendChild(none);
      return;
    }
    found.forEach(function (r) {
      var li = document.createElement("li"), a = document.createElement("a");
      a.href = new URL(r.url, indexUrl).href;
      a.textContent = r.title;
      li.appendChild(a);
      if (r.date) {
        var date = document.createElement("small");
        date.textContent = " " + r.date;
        li.appendChild(date);
      }
      var p = document.createElement("p");
      p.textContent = r.summary || r.excerpt;
      li.appendChild(p);
      list.appendChild(li);
    });
  }

  // Styled here, not in the theme's CSS: without this script there is nothing to style.
  var STYLE = ".search{position:relative;font:0.95rem/1.4 var(--sans,sans-serif)}" +
    ".search input{font:inherit;padding:0.2rem 0.5rem;width:12rem;max-width:100%}" +
    ".search-results{position:absolute;right:0;z-index:10;width:min(28rem,90vw);margin:0.3rem 0;" +
    "padding:0.4rem 0.8rem;list-style:none;background:var(--bg,#fff);color:var(--fg,#111);" +
    "border:1px solid var(--rule,#ccc);max-height:70vh;overflow:auto}" +
    ".search-results li{margin:0.4rem 0}.search-results p{margin:0.1rem 0;color:var(--muted,#555)}";

  function install() {
    var style = document.createElement("style");
    style.textContent = STYLE;
    document.head.appendChild(style);
    var host = document.querySelector(".site-header .wrap") || document.body;
    var form = document.createElement("form");
    form.className = "search";
    form.setAttribute("role", "search");
    var input = document.createElement("input");
    input.type = "search";
    input.placeholder = "Search";
    input.setAttribute("aria-label", "Search posts");
    var list = document.createElement("ul");
    list.className = "search-results";
    list.hidden = true;
    list.setAttribute("aria-live", "polite");
    form.appendChild(input);
    form.appendChild(list);
    host.appendChild(form);
    form.addEventListener("submit", function (e) { e.preventDefault(); });
    var load = function () {
      if (records) return Promise.resolve();
      return fetch(indexUrl).then(function (r) { return r.json(); })
        .then(function (data) { records = data.entries || []; });
    };
    input.addEventListener("focus", load, { once: true });
    input.addEventListener("input", function () {
      load().then(function () { show(list, search(input.value), input.value); });
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", install);
  else install();
})();
