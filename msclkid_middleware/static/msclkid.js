/* msclkid-middleware browser snippet (MIT licence). This is the readable source. Pages load msclkid.min.js,
 * which the middleware serves at /_msclkid.js; regenerate it after every change (tests check the two agree):
 *   npx --yes --package=terser@5.51.4 -- terser msclkid.js --ecma 2017 -c passes=3,unsafe -m -o msclkid.min.js
 * Budget: 1,024 bytes minified and gzipped (tests/test_snippet_files.py), which is why some code below is terse.
 *
 * Include it on landing pages, as early as possible in <head> (see docs/snippet.md):
 *   <script src="/_msclkid.js" data-consent="pending" async nonce="..."></script>
 *
 * What it does, in order:
 *   1. reads the Microsoft click ID from the page URL (query and hash, name case-insensitive) and validates it
 *      exactly like the server (^[A-Za-z0-9_-]{1,64}$ after percent-decoding, case kept);
 *   2. keeps it in memory while consent is pending; posts it to the capture endpoint (same origin) once consent
 *      allows, so the server sets its signed, HttpOnly, 90-day cookie; on denial it forgets the click and asks
 *      the server to delete its cookie;
 *   3. fills empty <input name="msclkid"> fields of forms (lead forms posting to other systems);
 *   4. exposes msclkid.pageLoadId and msclkid.eventId(prefix) for UET browser/server deduplication.
 *
 * ES2017, no dependencies, no eval, no inline code: works under a strict Content-Security-Policy.
 */
(function (window, document) {
  var existing = window.msclkid;
  // Loaded twice (say by a tag manager and by the template): the first copy stays in charge.
  if (existing && existing.eventId) return;

  var VALID = /^[\w-]{1,64}$/; // \w is [A-Za-z0-9_]: the server's rule, character for character

  // Our own <script> element carries the configuration. document.currentScript is set while a classic
  // script (async or not) first runs; the lookup by src covers loaders that run it some other way.
  var script = document.currentScript || document.querySelector('script[src*=msclkid]');
  var endpoint = script.dataset.endpoint || '/_msclkid';
  // The consent state reported to the server: 'granted' | 'denied' | 'pending', or undefined without a
  // data-consent attribute: report nothing and let the server's ConsentPolicy decide, as for a URL capture.
  var state = script.dataset.consent;
  var tcString; // the TCF v2.2 TC string once the CMP has one; the server decodes it (strictly), not us
  var started; // falsy while the pre-load queue is replayed and a synchronous CMP answer comes in
  var denial; // the visitor (not the page's default) refused: msclkid('consent', 'denied')
  var counter = 0;

  /** The first valid msclkid in a URL: UET's [?&]msclkid=([^&#]*) with the i flag, plus '#msclkid='. */
  function fromUrl(url) {
    var re = /[?&#]msclkid=([^&#]*)/gi;
    var match;
    var value;
    while ((match = re.exec(url))) {
      try {
        // decodeURIComponent throws on malformed escapes: that value is ignored, as on the server
        if (VALID.test((value = decodeURIComponent(match[1])))) return value;
      } catch (e) {}
    }
  }

  /** The fallback cookie, set only when the endpoint was unreachable (see post). Not the server's cookie:
   *  that one is HttpOnly, signed and lives 90 days; a script-set cookie lives 7 days at most in Safari
   *  (ITP), 24 hours after a landing from a decorated link, so it only bridges an outage. */
  function setCookie(value, maxAge) {
    document.cookie =
      'msclkid_js=' + value + ';Max-Age=' + maxAge + ';Path=/;SameSite=Lax' +
      (location.protocol == 'https:' ? ';Secure' : '');
  }

  // The landing click. An SPA router may have stripped the query with history.replaceState before this
  // async script runs, so the URL the document was loaded from (the navigation entry) is read as well.
  var fromCookie;
  var click =
    fromUrl(location) /* its href */ ||
    fromUrl((performance.getEntriesByType('navigation')[0] || {}).name) ||
    (fromCookie = (document.cookie.match(/(^|; )msclkid_js=([\w-]{1,64})(;|$)/) || [])[2]);

  /** Fills empty msclkid inputs of the document or of the form being submitted (SPA forms rendered later).
   *  A value the page or the visitor put there is never overwritten. Only when consent allows: a grant,
   *  or no browser-side consent management at all (no data-consent); a TC string alone is the server's call. */
  function fill(event) {
    if (click && (!state || state == 'granted'))
      ((event && event.target) || document).querySelectorAll('input[name=msclkid]').forEach((input) => {
        input.value = input.value || click;
      });
  }

  function post(body) {
    var json = JSON.stringify(body);
    // fetch missing (it throws), failed, or nothing (proper) answers at the path (404, 405, 5xx; 400 and 403
    // are the endpoint's own refusals): try sendBeacon, which sends a string as text/plain (the endpoint reads
    // it as JSON, and no preflight is needed). The endpoint may be unreachable, and a beacon's fate is
    // unknowable, so keep the click in the fallback cookie for a later page to post: granted consent only.
    var failed = () => {
      try {
        navigator.sendBeacon(endpoint, json);
      } catch (e) {}
      if (body.msclkid && state == 'granted') setCookie(body.msclkid, 7776e3); // 90 days
    };
    try {
      fetch(endpoint, {
        method: 'POST',
        credentials: 'same-origin',
        keepalive: true, // the request survives the visitor moving on before the answer comes back
        headers: { 'Content-Type': 'application/json' },
        body: json,
      }).then((response) => {
        // Taken: the server holds the click now, the fallback cookie has done its job.
        if (response.ok) fromCookie && setCookie('', 0);
        else if (response.status > 403) failed();
      }, failed);
    } catch (e) {
      failed();
    }
  }

  /** Brings the server in line with the current consent state: at start and after every change. */
  function sync() {
    if (!started) return;
    if (state == 'denied') {
      // Forget the click (and our fallback cookie). Ask the server to delete its cookie when the visitor
      // has just said no, or when there was a click, so an older stored click does not outlive the refusal.
      if (denial || click) post({ consent: 'denied' });
      click = api.clickId = null;
      setCookie('', 0);
    } else if (click && (state != 'pending' || tcString)) {
      // Pending keeps the click in this page's memory only, unless a TC string lets the server decide.
      post({
        msclkid: click,
        consent: state == 'pending' ? undefined : state, // JSON.stringify leaves undefined fields out
        tcf: tcString,
      });
      fill();
    }
  }

  /** msclkid('consent', 'granted' | 'denied'): the call shape of uetq.push('consent', ...). */
  function api(command, value) {
    if (command == 'consent' && (value == 'granted' || value == 'denied')) {
      denial = value == 'denied';
      state = value;
      sync();
    }
  }

  // A v4 UUID per page view. A server-rendered <meta name="msclkid-page-load-id" content="..."> wins, so the
  // server's own events for this page view carry the same pageLoadId. crypto.randomUUID (CSPRNG-backed) exists
  // in every secure context (https, localhost) of current browsers; a hand-rolled getRandomValues fallback for
  // plain-http hosts would cost a twelfth of the size budget, so those pages render the meta tag instead.
  var meta = document.querySelector('meta[name=msclkid-page-load-id]');
  api.pageLoadId = meta && VALID.test(meta.content) ? meta.content : crypto.randomUUID && crypto.randomUUID();
  api.clickId = click || null;
  /** A new ID on every call, "<prefix>-<pageLoadId>-<n>": push it to UET as event_id and record the same
   *  value server-side as the conversion's event ID (UET CAPI eventId) so Microsoft deduplicates them. */
  api.eventId = (prefix) => (prefix ? prefix + '-' : '') + api.pageLoadId + '-' + ++counter;
  window.msclkid = api;

  // A TCF v2.2 CMP, when there is one: forward the TC string once the visitor's choice is known.
  if (window.__tcfapi)
    __tcfapi('addEventListener', 2, (data, success) => {
      // eventStatus is 'tcloaded', 'cmpuishown' or 'useractioncomplete': only the first and last are choices.
      if (success && data.eventStatus != 'cmpuishown') {
        tcString = data.tcString || undefined;
        sync();
      }
    });

  // Calls made before the snippet loaded: window.msclkid = window.msclkid || function () {...push(arguments)}.
  ((existing && existing.q) || []).forEach((args) => api(...args));
  started = 1;
  sync();

  // Forms present now were filled by sync(); forms parsed later, and forms an SPA renders (when submitted).
  ['DOMContentLoaded', 'submit'].forEach((type) => document.addEventListener(type, fill, true));
})(window, document);
