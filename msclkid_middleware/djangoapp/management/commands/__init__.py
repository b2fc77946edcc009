"""The ``msclkid`` management command."""
