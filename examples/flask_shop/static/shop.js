// The shop's only script (loaded with the page's CSP nonce; nothing inline).
(function () {
  'use strict';
  // The snippet's pre-load queue: calls made before /_msclkid.js has loaded are replayed by it.
  window.msclkid = window.msclkid || function () { (window.msclkid.q = window.msclkid.q || []).push(arguments); };
  // UET's queue. The real UET tag (bat.js) is not loaded in the demo: nothing may reach Microsoft from here.
  window.uetq = window.uetq || [];

  var optIn = document.body.getAttribute('data-consent-flavour') === 'opt-in';
  var banner = document.getElementById('consent-banner');
  if (optIn && banner) {
    // Opt-in and not asked yet: UET stores nothing either until the visitor says yes.
    window.uetq.push('consent', 'default', { ad_storage: 'denied' });
  }

  function text(id, value) {
    var node = document.getElementById(id);
    if (node) { node.textContent = value; }
  }

  var WORDS = { granted: 'you accepted', denied: 'you declined: nothing is stored or sent' };

  // The footer shows what the server sees: ask it until it agrees with the choice (the snippet's capture
  // request may still be on its way), then show its answer, whatever it is.
  function refreshFooter(choice, tries) {
    fetch('/consent/status', { credentials: 'same-origin', cache: 'no-store' })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (seen) {
        if (!seen) { return; }
        var pendingClick = choice === 'granted' && window.msclkid && window.msclkid.clickId;
        if ((seen.consent !== choice || (pendingClick && !seen.click)) && tries > 0) {
          setTimeout(function () { refreshFooter(choice, tries - 1); }, 150);
          return;
        }
        text('click-id', seen.click || 'none');
        text('click-detail', seen.click ? '(kept after your answer)' : '');
        text('consent-state', seen.consent || 'unknown');
        text('consent-basis', seen.basis || '-');
        text('consent-words', WORDS[choice]);
        document.documentElement.setAttribute('data-footer', 'current');
      })
      .catch(function () {});
  }

  if (banner) {
    banner.addEventListener('submit', function (event) {
      var choice = event.submitter && event.submitter.value;
      if (choice !== 'granted' && choice !== 'denied') { return; }
      event.preventDefault();
      // The site's consent cookie (the server's ConsentPolicy reads it on every request) ...
      document.cookie = 'shop_consent=' + choice + '; Path=/; Max-Age=15552000; SameSite=Lax';
      // ... and the snippet (a grant posts the landing click, a refusal makes the server delete its cookie) and UET.
      window.msclkid('consent', choice);
      window.uetq.push('consent', 'update', { ad_storage: choice });
      banner.hidden = true;
      document.documentElement.setAttribute('data-consent', choice);
      text('consent-state', choice);
      text('consent-basis', 'cookie');
      text('consent-words', WORDS[choice]);
      if (choice === 'denied') { text('click-id', 'none'); text('click-detail', ''); }
      refreshFooter(choice, 20);
    });
  }

  var checkout = document.getElementById('checkout');
  if (checkout) {
    checkout.addEventListener('submit', function () {
      var m = window.msclkid;
      if (m && typeof m.eventId === 'function') {
        checkout.elements.event_id.value = m.eventId('checkout_complete');
        checkout.elements.page_load_id.value = m.pageLoadId || '';
      }
    });
  }

  var done = document.getElementById('order-confirmed');
  if (done) {
    // The browser's half of the deduplicated pair: same event name and event_id as the server's CAPI event.
    window.uetq.push('event', 'checkout_complete', {
      event_id: done.getAttribute('data-event-id'),
      revenue_value: parseFloat(done.getAttribute('data-value')),
      currency: done.getAttribute('data-currency'),
      transaction_id: done.getAttribute('data-order-id')
    });
  }
})();
