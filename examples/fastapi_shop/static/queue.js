// The snippet's pre-load queue (docs/snippet.md), as a file: the page's CSP allows no inline script.
window.msclkid = window.msclkid || function () { (msclkid.q = msclkid.q || []).push(arguments); };
