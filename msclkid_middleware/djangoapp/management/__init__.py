"""``manage.py msclkid``: Django finds commands in ``<app>/management/commands/``."""
