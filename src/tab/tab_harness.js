// Runs src/tab/tab.js against stand-ins for the DOM, EventSource, fetch and
// BroadcastChannel, and checks what it does in each case. Started by
// src/tab/tests.rs as `node tab_harness.js tab.js`; exits non-zero with the
// failed expectation. Time is the stand-in's: timers run when a case says.
'use strict';
const assert = require('assert');
const fs = require('fs');
const vm = require('vm');

const code = fs.readFileSync(process.argv[2], 'utf8');
const REF = '0123456789ab';
const NEW = 'ba9876543210';

// One browser: tabs share its channel bus.
function browser() {
  return { bus: [] };
}

// One tab running tab.js; `answer` is what /_guise/session says.
function tab(b, opts) {
  opts = opts || {};
  const t = {
    sources: [],
    posted: [],
    shown: [],
    timers: [],
    reloads: 0,
    fetched: 0,
    answer: opts.answer || { status: 200, body: { session: REF } },
  };
  function element(tag) {
    const el = {
      tag,
      attrs: {},
      children: [],
      props: {},
      textContent: '',
      style: { setProperty(k, v, p) { el.props[k] = [v, p]; } },
      setAttribute(k, v) { el.attrs[k] = String(v); },
      getAttribute(k) { return k in el.attrs ? el.attrs[k] : null; },
      appendChild(c) { el.children.push(c); return c; },
      attachShadow(init) { el.shadowMode = init.mode; el.shadow = element('#shadow'); return el.shadow; },
    };
    return el;
  }
  const script = element('script');
  if (opts.session !== null) script.setAttribute('data-session', opts.session || REF);
  if (opts.user !== null) script.setAttribute('data-user', opts.user === undefined ? 'Ada' : opts.user);
  class EventSource {
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.listeners = {};
      this.closed = false;
      t.sources.push(this);
    }
    addEventListener(name, f) { (this.listeners[name] = this.listeners[name] || []).push(f); }
    close() { this.closed = true; this.readyState = 2; }
    emit(name, data) { (this.listeners[name] || []).forEach((f) => f({ data })); }
  }
  EventSource.CLOSED = 2;
  class BroadcastChannel {
    constructor(name) {
      assert.strictEqual(name, 'guise-tab');
      this.onmessage = null;
      b.bus.push(this);
    }
    postMessage(data) {
      t.posted.push(data); // from tab.js's realm: compare as JSON
      b.bus.filter((c) => c !== this).forEach((c) => c.onmessage && c.onmessage({ data }));
    }
    close() {}
  }
  const context = {
    document: {
      currentScript: script,
      querySelector: () => null,
      querySelectorAll: () => [],
      createElement: element,
      documentElement: { appendChild(el) { t.shown.push(el); return el; } },
    },
    window: { addEventListener() {} },
    location: { reload() { t.reloads += 1; } },
    setTimeout(f, ms) { t.timers.push({ f, ms }); },
    fetch(url, init) {
      assert.strictEqual(url, '/_guise/session');
      assert.strictEqual(init.credentials, 'same-origin');
      t.fetched += 1;
      const a = t.answer;
      if (a === 'network') return Promise.reject(new TypeError('offline'));
      return Promise.resolve({
        status: a.status,
        ok: a.status >= 200 && a.status < 300,
        json: () => Promise.resolve(a.body),
      });
    },
    EventSource,
    BroadcastChannel,
  };
  vm.createContext(context);
  vm.runInContext(code, context, { filename: 'tab.js' });
  t.source = () => t.sources[t.sources.length - 1];
  t.runTimers = () => {
    const due = t.timers.splice(0);
    due.forEach((x) => x.f());
    return due;
  };
  t.notice = () => {
    assert.strictEqual(t.shown.length, 1, 'exactly one notice');
    const n = t.shown[0];
    assert.strictEqual(n.tag, 'guise-notice');
    assert.strictEqual(n.shadowMode, 'closed');
    assert.deepStrictEqual(n.props.position, ['fixed', 'important']);
    assert.deepStrictEqual(n.props.all, ['initial', 'important']);
    assert.strictEqual(n.getAttribute('role'), 'alert');
    const text = n.shadow.children[0].textContent;
    assert.strictEqual(n.getAttribute('data-guise-notice'), text);
    return text;
  };
  // A notice, then a reload ~2.5 s later, and the stream closed.
  t.reloadsAfterNotice = () => {
    assert.strictEqual(t.reloads, 0, 'the notice shows before the reload');
    const due = t.runTimers();
    assert.ok(due.some((x) => x.ms >= 2000 && x.ms <= 3000), 'reload after about 2.5 s');
    assert.strictEqual(t.reloads, 1);
    t.sources.forEach((s) => assert.ok(s.closed, 'the stream is closed after a notice'));
  };
  return t;
}

const settle = () => new Promise((r) => setImmediate(r));

const cases = {
  async 'on load it posts its session and opens the stream with it'() {
    const t = tab(browser());
    assert.strictEqual(JSON.stringify(t.posted), JSON.stringify([{ session: REF }]));
    assert.strictEqual(t.sources.length, 1);
    assert.strictEqual(t.source().url, '/_guise/events?session=' + REF);
  },

  async 'a hello for its own session changes nothing'() {
    const t = tab(browser());
    t.source().emit('hello', JSON.stringify({ session: REF }));
    assert.strictEqual(t.shown.length, 0);
    assert.strictEqual(t.timers.length, 0);
  },

  async 'a hello for another session shows the notice and reloads'() {
    const t = tab(browser());
    t.source().emit('hello', JSON.stringify({ session: NEW }));
    assert.strictEqual(
      t.notice(),
      'You were signed out as Ada in this tab: another tab signed in as someone else.',
    );
    t.reloadsAfterNotice();
  },

  async 'ended shows its reason and reloads, once'() {
    const t = tab(browser());
    t.source().emit('ended', JSON.stringify({ reason: 'impersonation started in another tab' }));
    t.source().emit('hello', JSON.stringify({ session: NEW }));
    assert.strictEqual(
      t.notice(),
      'You were signed out as Ada in this tab: impersonation started in another tab.',
    );
    t.reloadsAfterNotice();
  },

  async 'ended without a reason says signed out'() {
    const t = tab(browser(), { user: null });
    t.source().emit('ended', 'not json');
    assert.strictEqual(t.notice(), 'You were signed out in this tab: you were signed out.');
  },

  async 'a newer tab of another session makes the stale one reload'() {
    const b = browser();
    const stale = tab(b);
    stale.answer = { status: 200, body: { session: NEW } };
    tab(b, { session: NEW, answer: { status: 200, body: { session: NEW } } });
    await settle();
    assert.strictEqual(stale.fetched, 1);
    assert.strictEqual(
      stale.notice(),
      'You were signed out as Ada in this tab: another tab signed in as someone else.',
    );
    stale.reloadsAfterNotice();
  },

  async 'a stale page announcing its old session does not unsettle the current tab'() {
    const b = browser();
    const current = tab(b);
    tab(b, { session: NEW });
    await settle();
    assert.strictEqual(current.fetched, 1, 'the current tab asked the gateway');
    assert.strictEqual(current.shown.length, 0);
    assert.strictEqual(current.reloads, 0);
  },

  async 'a refused stream is read as signed out when the session is gone'() {
    const t = tab(browser(), { answer: { status: 401, body: {} } });
    const es = t.source();
    es.readyState = 2;
    es.emit('error');
    await settle();
    assert.strictEqual(t.notice(), 'You were signed out as Ada in this tab: you were signed out.');
  },

  async 'a refused stream while the gateway cannot tell is tried again later'() {
    const t = tab(browser(), { answer: { status: 503, body: {} } });
    const es = t.source();
    es.emit('error');
    assert.strictEqual(t.fetched, 0, 'a dropped stream is the browser\'s to retry');
    es.readyState = 2;
    es.emit('error');
    await settle();
    assert.strictEqual(t.shown.length, 0);
    t.runTimers();
    assert.strictEqual(t.sources.length, 2, 'a new stream after the delay');
  },

  async 'without a session reference it does nothing'() {
    const t = tab(browser(), { session: null });
    assert.strictEqual(t.sources.length, 0);
    assert.strictEqual(t.posted.length, 0);
  },
};

(async () => {
  let n = 0;
  for (const [name, f] of Object.entries(cases)) {
    try {
      await f();
      n += 1;
    } catch (e) {
      console.error('FAILED: ' + name + '\n' + (e && e.stack ? e.stack : e));
      process.exit(1);
    }
  }
  console.log('ok ' + n + ' cases');
})();
