"""The Django app of the adapter: add ``"msclkid_middleware.djangoapp"`` to ``INSTALLED_APPS``.

It brings what Django finds only in an installed app: the system checks (``manage.py check``), the
``manage.py msclkid ...`` commands and the ``{% load msclkid %}`` template tags.  The middleware itself is
:class:`msclkid_middleware.django.MsclkidMiddleware`.
"""
