// guise tab script (served as /_guise/tab.js; see src/tab.rs).
//
// Every tab of a browser shares the session cookie. This page was rendered
// for the session named in its script tag (data-session); when the browser's
// session changes under it (an admin started impersonating in another tab,
// or signed out there), the page is stale: this script says so and reloads
// the tab. It learns of it three ways:
//   - the other tabs: on load each page posts its session on the
//     BroadcastChannel "guise-tab";
//   - the gateway's event stream /_guise/events: "hello" names the session
//     the cookie holds now, "ended" says this one was revoked, and why;
//   - /_guise/session, asked when one of the above is not conclusive.
// No framework, no inline code, no eval: an app's CSP with script-src 'self'
// runs it.
(function () {
  'use strict';

  // document.currentScript is only set while this file's top level runs
  // (deferred included), never in the callbacks below: read it now.
  var me = document.currentScript;
  if (!me || !me.getAttribute('data-session')) {
    me = document.querySelector('script[data-session][src$="/_guise/tab.js"]');
  }
  if (!me || window.__guiseTab) return;
  window.__guiseTab = true;

  var REF = me.getAttribute('data-session');
  var WHO = me.getAttribute('data-user') || '';
  var SHOW_MS = 2500;
  var ANOTHER = 'another tab signed in as someone else';
  var SIGNED_OUT = 'you were signed out';
  var RETRY_MS = 10000;

  var noticed = false;
  var source = null;
  var channel = null;

  function parse(text) {
    try {
      return JSON.parse(text);
    } catch (e) {
      return null;
    }
  }

  function setStyles(style, props) {
    for (var i = 0; i < props.length; i++) {
      // CSSOM, not a style attribute: a CSP without 'unsafe-inline' allows it.
      style.setProperty(props[i][0], props[i][1], 'important');
    }
  }

  // `all` first: it resets every property, the rest then set their own.
  var HOST = [
    ['all', 'initial'], ['display', 'flex'], ['position', 'fixed'],
    ['top', '0'], ['left', '0'], ['right', '0'], ['bottom', '0'],
    ['z-index', '2147483647'], ['align-items', 'center'],
    ['justify-content', 'center'], ['background', 'rgba(20, 24, 33, 0.55)'],
    ['visibility', 'visible'], ['opacity', '1'], ['pointer-events', 'auto'],
    ['transform', 'none'], ['margin', '0']
  ];
  var BOX = [
    ['max-width', '32em'], ['margin', '1em'], ['padding', '1.25em 1.5em'],
    ['background', '#ffffff'], ['color', '#1d2330'], ['border-radius', '8px'],
    ['border-top', '4px solid #b3261e'],
    ['box-shadow', '0 8px 32px rgba(0, 0, 0, 0.35)'],
    ['font', '16px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif'],
    ['text-align', 'left']
  ];

  // A fixed overlay the app's CSS cannot hide: important inline host styles
  // (set through CSSOM) and its text in a closed shadow root. On <html>, not
  // <body>, which the app may have transformed or hidden.
  function show(text) {
    var host = document.createElement('guise-notice');
    host.setAttribute('data-guise-notice', text);
    host.setAttribute('role', 'alert');
    setStyles(host.style, HOST);
    var root = host.attachShadow ? host.attachShadow({ mode: 'closed' }) : host;
    var box = document.createElement('div');
    setStyles(box.style, BOX);
    box.textContent = text;
    root.appendChild(box);
    (document.documentElement || document.body).appendChild(host);
  }

  // Say why this tab is stale, then reload it; once.
  function notice(reason) {
    if (noticed) return;
    noticed = true;
    if (source) {
      source.close();
      source = null;
    }
    reason = String(reason || SIGNED_OUT).replace(/[.\s]+$/, '');
    show('You were signed out' + (WHO ? ' as ' + WHO : '') + ' in this tab: ' + reason + '.');
    setTimeout(function () {
      location.reload();
    }, SHOW_MS);
  }

  // Ask the gateway which session the cookie holds. `unsure` is what to do
  // when it cannot tell (network error, 5xx).
  function verify(reason, unsure) {
    fetch('/_guise/session', {
      credentials: 'same-origin',
      cache: 'no-store',
      headers: { Accept: 'application/json' }
    }).then(function (r) {
      if (r.status === 401) return notice(SIGNED_OUT);
      if (!r.ok) return unsure();
      return r.json().then(function (d) {
        if (!d || d.session !== REF) notice(reason);
      });
    }).catch(function () {
      unsure();
    });
  }

  function connect() {
    if (noticed || source || typeof EventSource !== 'function') return;
    var es = new EventSource('/_guise/events?session=' + encodeURIComponent(REF));
    source = es;
    es.addEventListener('hello', function (e) {
      var d = parse(e.data);
      if (d && typeof d.session === 'string' && d.session !== REF) notice(ANOTHER);
    });
    es.addEventListener('ended', function (e) {
      var d = parse(e.data);
      notice(d && typeof d.reason === 'string' && d.reason ? d.reason : SIGNED_OUT);
    });
    es.addEventListener('error', function () {
      // The browser retries a dropped stream by itself, but not one that was
      // refused (401 once the session is gone): it is CLOSED then, and
      // /_guise/session tells why.
      if (es.readyState !== EventSource.CLOSED || source !== es) return;
      source = null;
      verify(SIGNED_OUT, function () {
        setTimeout(connect, RETRY_MS);
      });
    });
  }

  // Browsers without declarative shadow DOM keep the banner's template as a
  // child: attach its content as the parser would have.
  function upgradeBanner() {
    var hosts = document.querySelectorAll('guise-banner[data-guise-banner]');
    for (var i = 0; i < hosts.length; i++) {
      var t = hosts[i].querySelector('template[shadowrootmode]');
      if (t && t.parentNode === hosts[i] && hosts[i].attachShadow) {
        try {
          hosts[i].attachShadow({ mode: 'closed' }).appendChild(t.content);
          t.parentNode.removeChild(t);
        } catch (e) {
          // Already has a shadow root: nothing to do.
        }
      }
    }
  }

  upgradeBanner();

  if (typeof BroadcastChannel === 'function') {
    channel = new BroadcastChannel('guise-tab');
    channel.onmessage = function (e) {
      var d = e.data;
      if (noticed || !d || typeof d.session !== 'string' || d.session === REF) return;
      // Another tab shows another session. It is usually the newer one, but
      // a page restored from the history may be the stale one: ask.
      verify(ANOTHER, function () {
        notice(ANOTHER);
      });
    };
    channel.postMessage({ session: REF });
  }

  connect();

  // Leave the back/forward cache usable: no open stream in a hidden page;
  // a restored page asks again (its "hello" tells whether it is stale).
  window.addEventListener('pagehide', function () {
    if (source) {
      source.close();
      source = null;
    }
  });
  window.addEventListener('pageshow', function (e) {
    if (e.persisted) connect();
  });
})();
