// The consent banner: store the visitor's choice in the site's consent cookie (the server's consent policy reads
// it) and tell the snippet, which then posts a click held in memory to the capture endpoint, or forgets it.
(function () {
  var banner = document.getElementById('consent-banner');
  if (!banner) { return; }
  function answer(event, choice) {
    event.preventDefault();
    document.cookie = 'shop_consent=' + choice + '; path=/; max-age=15552000; samesite=lax';
    window.msclkid('consent', choice);
    banner.remove();
    var state = document.getElementById('consent-state');
    if (state) { state.textContent = choice; }
  }
  document.getElementById('accept').addEventListener('click', function (e) { answer(e, 'granted'); });
  document.getElementById('decline').addEventListener('click', function (e) { answer(e, 'denied'); });
})();
