// The shop's only script (loaded with the page's CSP nonce; nothing inline).
(function () {
  'use strict';
  // The snippet's pre-load queue: calls made before /_msclkid.js has loaded are replayed by it.
  window.msclkid = window.msclkid || function () { (window.msclkid.q = window.msclkid.q || []).push(arguments); };
  // UET's queue. The real UET tag (bat.js) is not loaded in the demo: nothing may reach Microsoft from here.
  window.uetq = window.uetq || [];

  var banner = document.getElementById('consent-banner');
  if (banner) {
    banner.addEventListener('submit', function (event) {
      var choice = event.submitter && event.submitter.value;
      if (choice !== 'granted' && choice !== 'denied') { return; }
      event.preventDefault();
      // The site's consent cookie (the server's ConsentPolicy reads it on every request) ...
      document.cookie = 'shop_consent=' + choice + '; Path=/; Max-Age=15552000; SameSite=Lax';
      // ... and the snippet (a refusal also makes the server delete its click cookie) and UET.
      window.msclkid('consent', choice);
      window.uetq.push('consent', 'update', { ad_storage: choice });
      banner.hidden = true;
      document.documentElement.setAttribute('data-consent', choice);
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
