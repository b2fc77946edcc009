"""A small real Django shop using the Django adapter (issue 18 item 4): ``python -m examples.django_shop``.

- ``settings.py``: ``MsclkidMiddleware`` in ``MIDDLEWARE``, the app ``msclkid_middleware.djangoapp`` in
  ``INSTALLED_APPS`` (checks, ``manage.py msclkid``, template tags), the ``MSCLKID_*`` / ``MSADS_*`` settings;
- ``views.py``: an ad landing that redirects (the click survives it), product pages, a consent banner, and two
  checkouts recording the sale as an offline conversion: a sync view with ``tracker.record_offline`` and an async
  view with ``await tracker.arecord_offline`` (the durable write runs off the event loop);
- ``templates/``: ``{% msclkid_page_tags %}`` and ``{% msclkid_snippet %}`` in the page head.

``python -m examples.django_shop`` runs it on http://127.0.0.1:8001/ with the Microsoft Ads emulator and a
delivery thread (``__main__.py``); any other arguments are ``manage.py``'s (``check``, ``msclkid status``, ...).
No database: orders live in the outbox only, which is all a conversion needs.
"""
