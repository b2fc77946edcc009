/* msclkid-middleware UET ID-sync script (MIT licence). The middleware serves it at /_msclkid-sync.js.
 *
 * Microsoft needs the anonymousId of server-side UET events (Conversions API) to be synced from the browser:
 *   https://c.bing.com/c.gif?Red3=BACID_<customer ID>&vid=<anonymousId>
 * fired client-side, at least once per session (docs/uet.md). This script fires it at most once per browser
 * session. The server renders its tag only when consent allows and the visitor has an anonymous ID
 * (msclkid_middleware.uet_pages.render_page_tags):
 *   <script src="/_msclkid-sync.js" data-cid="<customer ID>" data-vid="<32 hex>" async></script>
 * Optional: data-uid (an anonymised signed-in user ID, sent as uid), data-pixel (another pixel URL, for tests).
 *
 * No inline code and no eval: works under a strict Content-Security-Policy (img-src must allow c.bing.com).
 */
(function (document) {
  var script = document.currentScript || document.querySelector('script[src*=msclkid-sync]');
  var data = (script && script.dataset) || {};
  var vid = data.vid;
  var cid = data.cid;
  // Both are rendered by the server; anything else is not ours to send (the vid is 32 hex, the CID a number).
  if (!/^[0-9a-fA-F]{32}$/.test(vid) || !/^\d{1,20}$/.test(cid)) return;
  // A session cookie (no Max-Age: gone when the browser session ends) remembers the vid already synced; a new
  // vid in the same session (UET's tag arrived and set _uetvid) is synced again.
  var marker = 'msclkid_sync=' + vid;
  if (('; ' + document.cookie + ';').indexOf('; ' + marker + ';') >= 0) return;
  document.cookie = marker + ';Path=/;SameSite=Lax' + (location.protocol == 'https:' ? ';Secure' : '');
  var url = (data.pixel || 'https://c.bing.com/c.gif') + '?Red3=BACID_' + cid + '&vid=' + vid;
  if (data.uid) url += '&uid=' + encodeURIComponent(data.uid);
  new Image(1, 1).src = url;
})(document);
